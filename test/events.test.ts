/**
 * The event path as a user sees it, against real Azurite (blob and queue) and s3rver: the events
 * endpoint queues, the queue worker mirrors, the CLI reconciles inline.
 *
 * The Functions host's queue loop is not available here: test/support/queue-host.ts plays it over the
 * real Azurite queue (base64 decoding, dequeue count, delete on success, retry on throw, poison queue
 * after host.json's maxDequeueCount of 5), and the handlers are called as the host calls them.
 */
import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import { QueueServiceClient } from '@azure/storage-queue';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { createEventService } from '../src/events.ts';
import { EVENTS_BODY_LIMIT_BYTES } from '../src/functions/events-http.ts';
import { objectQueueHandler } from '../src/functions/object-queue.ts';
import type { ReconcileReport } from '../src/core/reconcile.ts';
import { runCli, runJson, targetOf } from './support/cli-run.ts';
import { uniqueName } from './support/emulators.ts';
import { callEvents, loggedEvents } from './support/functions-invocation.ts';
import { HOST_MAX_DEQUEUE_COUNT, drainQueue } from './support/queue-host.ts';
import { eventBridgeEvent, notificationRecord, testEvent, type EventKind } from './support/s3-event-documents.ts';
import { createScenario, mirrorDifferences, putSource, readAll, readContainer, readBucket, type Scenario } from './support/scenario.ts';

const emulators = inject('emulators');
const scenarios: Scenario[] = [];
afterAll(() => {
  for (const scenario of scenarios) scenario.s3.destroy();
});

const ODD_KEYS = ['dir/with space.txt', 'c++/a+b.zip', '100%/done 50%.txt', 'ünïcødé/日本語 ファイル.bin'];

/** A scenario whose host storage is Azurite, with a queue of its own. */
async function eventScenario(extra: Record<string, string> = {}): Promise<Scenario & { queueName: string }> {
  const queueName = uniqueName('events');
  const created = await createScenario(emulators, 'events', { AzureWebJobsStorage: emulators.azurite.connectionString, SYNC_QUEUE_NAME: queueName, ...extra });
  scenarios.push(created);
  return { ...created, queueName };
}

function queues(queueName: string) {
  const service = QueueServiceClient.fromConnectionString(emulators.azurite.connectionString);
  return { queue: service.getQueueClient(queueName), poison: service.getQueueClient(`${queueName}-poison`) };
}

/** Posts `document` to the events endpoint, then lets the worker drain the queue as the host would. */
async function postAndDrain(s: Scenario & { queueName: string }, document: unknown) {
  const service = createEventService(s.settings);
  const posted = await callEvents(service, JSON.stringify(document));
  expect(posted.status).toBe(202);
  const { queue, poison } = queues(s.queueName);
  return drainQueue(queue, poison, objectQueueHandler(service));
}

async function expectExactMirrors(s: Scenario): Promise<void> {
  const state = await readAll(s);
  expect(mirrorDifferences(state.source, state.azure)).toEqual([]);
  expect(mirrorDifferences(state.source, state.oci)).toEqual([]);
}

async function deleteSource(s: Scenario, key: string): Promise<void> {
  await s.s3.send(new DeleteObjectCommand({ Bucket: s.sourceBucket, Key: key }));
}

const events = (s: Scenario, keys: readonly string[], kind: EventKind) => keys.map((key) => eventBridgeEvent(s.sourceBucket, key, kind));

describe('POST /api/events/s3', () => {
  it('answers 202 to 500 records in one request and queues one message per record', async () => {
    const s = await eventScenario();
    const keys = Array.from({ length: 500 }, (_, index) => `burst/${String(index).padStart(3, '0')} file+${index}.bin`);
    const call = await callEvents(createEventService(s.settings), JSON.stringify({ Records: keys.map((key) => notificationRecord(s.sourceBucket, key, 'created')) }));

    expect(call.status).toBe(202);
    expect(call.body).toMatchObject({ queued: 500, ignored: 0 });
    const { queue } = queues(s.queueName);
    const queued: string[] = [];
    for (;;) {
      const { receivedMessageItems } = await queue.receiveMessages({ numberOfMessages: 32, visibilityTimeout: 300 });
      if (receivedMessageItems.length === 0) break;
      for (const item of receivedMessageItems) queued.push((JSON.parse(Buffer.from(item.messageText, 'base64').toString('utf8')) as { key: string }).key);
    }
    expect(queued.sort()).toEqual([...keys].sort());
  });

  it('answers 400 naming the other bucket, and queues nothing of the document', async () => {
    const s = await eventScenario();
    const call = await callEvents(createEventService(s.settings), JSON.stringify([eventBridgeEvent(s.sourceBucket, 'ours.txt', 'created'), eventBridgeEvent('someone-else', 'theirs.txt', 'created')]));

    expect(call.status).toBe(400);
    expect(call.body['error']).toBe(`event [1] detail.bucket.name is "someone-else", not the source bucket "${s.sourceBucket}": events of other buckets are refused`);
    expect((await queues(s.queueName).queue.exists())).toBe(false);
  });

  it('answers 400 to a malformed body and 413 to one over the limit, queueing nothing; a test event is 202 with nothing queued', async () => {
    const s = await eventScenario();
    const service = createEventService(s.settings);

    expect((await callEvents(service, '{"detail-type":')).status).toBe(400);
    const large = await callEvents(service, JSON.stringify({ Records: [notificationRecord(s.sourceBucket, 'x'.repeat(EVENTS_BODY_LIMIT_BYTES), 'created')] }));
    expect(large.status).toBe(413);
    expect(large.body['error']).toBe(`the body is larger than ${EVENTS_BODY_LIMIT_BYTES} bytes: send fewer events per request`);
    const test = await callEvents(service, JSON.stringify(testEvent(s.sourceBucket)));
    expect(test.status).toBe(202);
    expect(test.body).toMatchObject({ queued: 0, ignored: 1 });
    expect((await queues(s.queueName).queue.exists())).toBe(false);
  });
});

describe('the queue worker, driven the way the Functions host drives it', () => {
  it('mirrors created objects with odd keys (spaces, +, %, unicode) from each event format, and logs each key\'s lag per target', async () => {
    const s = await eventScenario();
    for (const key of ODD_KEYS) await putSource(s, key, `bytes of ${key}`, 'text/plain');

    const eventBridge = await postAndDrain(s, events(s, ODD_KEYS.slice(0, 2), 'created'));
    const notification = await postAndDrain(s, { Records: ODD_KEYS.slice(2).map((key) => notificationRecord(s.sourceBucket, key, 'created')) });

    // "c++/a+b.zip" is also looked at as "c  /a b.zip" (EventBridge's encoding is not pinned down): that key is nowhere, so nothing happens to it.
    expect(eventBridge).toMatchObject({ succeeded: 3, failed: 0, poisoned: 0 });
    expect(notification).toMatchObject({ succeeded: 2, failed: 0, poisoned: 0 });
    await expectExactMirrors(s);
    const mirrored = loggedEvents([...eventBridge.lines, ...notification.lines]).filter((line) => line['event'] === 'key-mirrored' && line['outcome'] === 'copy');
    expect(mirrored.map((line) => `${String(line['target'])} ${String(line['key'])}`).sort()).toEqual(ODD_KEYS.flatMap((key) => [`azure ${key}`, `oci ${key}`]).sort());
    expect(mirrored.every((line) => typeof line['lagMs'] === 'number' && line['lagMs'] >= 0)).toBe(true);
  });

  it('a "deleted" event for a key the source has again deletes nothing; once the source has deleted it, the key goes', async () => {
    const s = await eventScenario();
    await putSource(s, 'release/app.zip', 'version 1');
    await postAndDrain(s, events(s, ['release/app.zip'], 'created'));

    const stale = await postAndDrain(s, events(s, ['release/app.zip'], 'deleted'));
    expect(stale).toMatchObject({ succeeded: 1, failed: 0 });
    expect((await readContainer(s)).has('release/app.zip')).toBe(true);
    expect((await readBucket(s, s.ociBucket)).has('release/app.zip')).toBe(true);

    await deleteSource(s, 'release/app.zip');
    await postAndDrain(s, events(s, ['release/app.zip'], 'deleted'));
    expect((await readContainer(s)).size).toBe(0);
    expect((await readBucket(s, s.ociBucket)).size).toBe(0);
  });

  it('duplicate and reversed events end in the source\'s current state', async () => {
    const s = await eventScenario();
    await putSource(s, 'a.txt', 'first');
    await putSource(s, 'a.txt', 'second, longer');
    await putSource(s, 'b.txt', 'b');
    await deleteSource(s, 'b.txt');
    const t0 = Date.now();
    const at = (offset: number) => new Date(t0 + offset);
    // Newest first, each twice, and a stale "created" for the deleted key after its "deleted".
    const reversed = [
      eventBridgeEvent(s.sourceBucket, 'b.txt', 'deleted', at(3)), eventBridgeEvent(s.sourceBucket, 'a.txt', 'created', at(2)),
      eventBridgeEvent(s.sourceBucket, 'b.txt', 'created', at(1)), eventBridgeEvent(s.sourceBucket, 'a.txt', 'created', at(0)),
    ];
    const drained = await postAndDrain(s, [...reversed, ...reversed]);

    expect(drained).toMatchObject({ succeeded: 8, failed: 0, poisoned: 0 });
    await expectExactMirrors(s);
    expect((await readContainer(s)).get('a.txt')?.size).toBe('second, longer'.length);
  });

  it(`a message that keeps failing is retried, then moved to the poison queue after ${HOST_MAX_DEQUEUE_COUNT} attempts`, async () => {
    const s = await eventScenario();
    const { queue, poison } = queues(s.queueName);
    await queue.create();
    await queue.sendMessage(Buffer.from('{"v":1,"key":"k","kind":"renamed"}').toString('base64'));

    const drained = await drainQueue(queue, poison, objectQueueHandler(createEventService(s.settings)));

    expect(drained).toMatchObject({ succeeded: 0, failed: HOST_MAX_DEQUEUE_COUNT, poisoned: 1 });
    expect(drained.errors[0]).toContain('the queue message is not an event message');
    expect(loggedEvents(drained.lines).filter((line) => line['event'] === 'message-poisoned').map((line) => line['dequeueCount'])).toEqual([HOST_MAX_DEQUEUE_COUNT]);
    const { receivedMessageItems } = await poison.receiveMessages();
    expect(Buffer.from(receivedMessageItems[0]!.messageText, 'base64').toString('utf8')).toBe('{"v":1,"key":"k","kind":"renamed"}');
  });

  it('a burst of deletion events beyond the window deletes SYNC_MAX_DELETE_COUNT keys, holds the rest and says which, across invocations', async () => {
    const s = await eventScenario({ SYNC_MAX_DELETE_COUNT: '3' });
    const keys = Array.from({ length: 8 }, (_, index) => `old/${index}.txt`);
    for (const key of keys) await putSource(s, key, key);
    await postAndDrain(s, events(s, keys, 'created'));
    for (const key of keys) await deleteSource(s, key);

    // Each message is its own invocation: the window in the host storage counts across them.
    const drained = await postAndDrain(s, events(s, keys, 'deleted'));

    expect(drained.errors).toEqual([]);
    expect(drained).toMatchObject({ succeeded: 8, failed: 0, poisoned: 0 });
    expect((await readContainer(s)).size).toBe(5);
    expect((await readBucket(s, s.ociBucket)).size).toBe(5);
    const held = loggedEvents(drained.lines).filter((line) => line['event'] === 'event-deletion-held');
    expect(held.length).toBe(10);
    // Each target has its own window, and concurrent messages reach them in any order: compare per target.
    const heldAt = (target: string) => new Set(held.filter((line) => line['target'] === target).map((line) => line['key']));
    expect(heldAt('azure')).toEqual(new Set((await readContainer(s)).keys()));
    expect(heldAt('oci')).toEqual(new Set((await readBucket(s, s.ociBucket)).keys()));
  });

  it('a full run and workers on the same keys at the same time leave exact mirrors', async () => {
    const s = await eventScenario();
    const keys = Array.from({ length: 24 }, (_, index) => `mixed/${index}.bin`);
    for (const key of keys) await putSource(s, key, `v1 ${key}`);
    expect((await runJson('all', s.settings)).exitCode).toBe(0);
    // A third changes, a third goes, a third is new; events for all of it race a full run.
    for (const key of keys.slice(0, 8)) await putSource(s, key, `v2, longer: ${key}`);
    for (const key of keys.slice(8, 16)) await deleteSource(s, key);
    const added = Array.from({ length: 8 }, (_, index) => `mixed/new-${index}.bin`);
    for (const key of added) await putSource(s, key, `new ${key}`);
    const document = [...events(s, keys.slice(0, 8), 'created'), ...events(s, keys.slice(8, 16), 'deleted'), ...events(s, added, 'created')];

    const [full, drained] = await Promise.all([runJson('all', s.settings), postAndDrain(s, [...document, ...document])]);

    expect(drained.failed).toBe(0);
    expect(full.exitCode).toBe(0);
    await expectExactMirrors(s);
  });
});

describe('artifacts-sync --key and --events (inline, no queue)', () => {
  it('refuses --key without a value, --events twice, and --key with --events (exit 2)', async () => {
    const settings = { AWS_S3_BUCKET: 'unused' };
    expect(await runCli(['all', '--key'], settings)).toMatchObject({ exitCode: 2, stderr: expect.stringContaining('--key needs a value: --key <key> (repeat for more keys)') });
    expect(await runCli(['all', '--events', 'a.json', '--events', 'b.json'], settings)).toMatchObject({ exitCode: 2, stderr: expect.stringContaining('--events is given more than once') });
    expect(await runCli(['all', '--key', 'a', '--events', 'b.json'], settings)).toMatchObject({ exitCode: 2, stderr: expect.stringContaining('--key and --events do not go together') });
  });

  it('--key reconciles the named keys only, without listing, with the same report and exit code', async () => {
    const s = await createScenario(emulators, 'cli-key');
    scenarios.push(s);
    await putSource(s, 'one file.txt', '1');
    await putSource(s, 'two+two.txt', '22');
    await putSource(s, 'not named.txt', '333');

    const result = await runJson('all', s.settings, ['--key', 'one file.txt', '--key=two+two.txt']);
    const report = result.report as ReconcileReport;

    expect(result.exitCode).toBe(0);
    expect(report).toMatchObject({ keys: 2, complete: true, held: [] });
    expect(targetOf(report, 'azure')).toMatchObject({ copied: 2, complete: true });
    expect([...(await readContainer(s)).keys()].sort()).toEqual(['one file.txt', 'two+two.txt']);
    expect([...(await readBucket(s, s.ociBucket)).keys()].sort()).toEqual(['one file.txt', 'two+two.txt']);
    const dry = await runJson('oci', s.settings, ['--dry-run', '--key', 'not named.txt']);
    expect(dry.exitCode).toBe(0);
    expect(targetOf(dry.report, 'oci').plan).toEqual([{ action: 'copy', key: 'not named.txt', reason: 'copy missing', size: 3 }]);
  });

  it('--events reads a document and reconciles its keys; another bucket or a malformed document exits 2 with nothing changed', async () => {
    const s = await createScenario(emulators, 'cli-events');
    scenarios.push(s);
    for (const key of ODD_KEYS) await putSource(s, key, key);
    const dir = await mkdtemp(join(tmpdir(), 'artifacts-sync-events-'));
    const file = (name: string, document: unknown): Promise<string> => writeFile(join(dir, name), typeof document === 'string' ? document : JSON.stringify(document)).then(() => join(dir, name));

    const foreign = await runCli(['all', '--events', await file('foreign.json', { Records: [notificationRecord(s.sourceBucket, ODD_KEYS[0]!, 'created'), notificationRecord('other-bucket', 'x', 'created')] })], s.settings);
    expect(foreign.exitCode).toBe(2);
    expect(foreign.stderr).toContain('Records[1] s3.bucket.name is "other-bucket", not the source bucket');
    const malformed = await runCli(['all', '--events', await file('bad.json', '{"Records": [')], s.settings);
    expect(malformed.exitCode).toBe(2);
    expect((await readContainer(s)).size).toBe(0);

    const result = await runJson('all', s.settings, ['--events', await file('ok.json', { Records: ODD_KEYS.map((key) => notificationRecord(s.sourceBucket, key, 'created')) })]);
    expect(result.exitCode).toBe(0);
    await expectExactMirrors(s);
  });

  it('without AzureWebJobsStorage, deletions beyond SYNC_MAX_DELETE_COUNT in one invocation are held, listed, and exit 1', async () => {
    const s = await createScenario(emulators, 'cli-held', { SYNC_MAX_DELETE_COUNT: '2' });
    scenarios.push(s);
    const keys = ['x/1', 'x/2', 'x/3', 'x/4'];
    for (const key of keys) await putSource(s, key, key);
    expect((await runJson('all', s.settings)).exitCode).toBe(0);
    for (const key of keys) await deleteSource(s, key);

    const dry = await runCli(['azure', '--dry-run', ...keys.flatMap((key) => ['--key', key])], s.settings);
    expect(dry.exitCode).toBe(1);
    expect(dry.stdout).toContain('DELETIONS HELD BACK: 2 of 4 deletion(s) are beyond the event deletion window');
    const result = await runJson('azure', s.settings, keys.flatMap((key) => ['--key', key]));
    const report = result.report as ReconcileReport;

    expect(result.exitCode).toBe(1);
    expect(targetOf(report, 'azure')).toMatchObject({ deleted: 2, deferred: 2, complete: false, deleteVerdict: { allowed: false, setting: 'SYNC_MAX_DELETE_COUNT' } });
    expect(report.held.map((held) => held.key)).toEqual(['x/3', 'x/4']);
    expect([...(await readContainer(s)).keys()].sort()).toEqual(['x/3', 'x/4']);
  });
});
