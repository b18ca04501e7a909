/**
 * Async HTTP runs (the async request-reply pattern): with the host storage, `POST /api/sync/{provider}`
 * opens the run's record and puts the run on the object queue; a queue invocation runs it. The
 * trigger answers with the report when the run ends within SYNC_HTTP_REPLY_WITHIN_MS, else 202 with
 * `Location: /api/runs/{id}`; `GET /api/runs/{id}` follows the run to its end, `GET /api/status` names
 * the last complete run per target. Handlers are called as the host calls them (the host is not
 * available here): the host's queue loop is played by test/support/queue-host.ts, or the CLI worker
 * runs the queue function's own handler. Azurite (blob, queue) and s3rver are real.
 */
import { QueueServiceClient } from '@azure/storage-queue';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { createEventService } from '../src/events.ts';
import { objectQueueHandler } from '../src/functions/object-queue.ts';
import { createSyncRunner } from '../src/functions/run-sync.ts';
import { acquireRunLock } from '../src/lock.ts';
import { createRunService } from '../src/runs.ts';
import { serviceClient } from '../src/stores/azure-blob.ts';
import { runCli } from './support/cli-run.ts';
import { uniqueName } from './support/emulators.ts';
import { callHttp, callRuns, loggedEvents, type LoggedLine } from './support/functions-invocation.ts';
import { HOST_MAX_DEQUEUE_COUNT, drainQueue, type DrainResult } from './support/queue-host.ts';
import { createScenario, mirrorDifferences, putSource, readAll, type Scenario } from './support/scenario.ts';

const emulators = inject('emulators');
const scenarios: Scenario[] = [];
afterAll(() => {
  for (const scenario of scenarios) scenario.s3.destroy();
});

async function queueScenario(extra: Record<string, string> = {}): Promise<Scenario> {
  const created = await createScenario(emulators, 'runshttp', { AzureWebJobsStorage: emulators.azurite.connectionString, SYNC_QUEUE_NAME: uniqueName('runs'), ...extra });
  scenarios.push(created);
  return created;
}

function queues(s: Scenario) {
  const service = QueueServiceClient.fromConnectionString(emulators.azurite.connectionString);
  const name = s.settings['SYNC_QUEUE_NAME'] ?? '';
  return { queue: service.getQueueClient(name), poison: service.getQueueClient(`${name}-poison`) };
}

/** The host's queue loop over the scenario's queue, once through (until the queue is empty). */
async function drain(s: Scenario): Promise<DrainResult> {
  const { queue, poison } = queues(s);
  await queue.createIfNotExists();
  return drainQueue(queue, poison, objectQueueHandler(createEventService(s.settings), s.settings, createSyncRunner({ settings: s.settings })));
}

/** Plays the host's queue loop until `until` settles, as the host keeps doing while an HTTP request waits. */
async function drainWhile(s: Scenario, until: Promise<unknown>): Promise<LoggedLine[]> {
  let settled = false;
  void until.finally(() => (settled = true)).catch(() => undefined);
  const lines: LoggedLine[] = [];
  while (!settled) {
    lines.push(...(await drain(s)).lines);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return lines;
}

/** The logged events named `event`. */
function events(lines: readonly LoggedLine[], event: string): Record<string, unknown>[] {
  return loggedEvents(lines).filter((line) => line['event'] === event);
}

/** Reads `GET /api/runs/{id}` until `done` says so; a bounded number of looks, no time asserted. */
async function pollRun(s: Scenario, id: string, done: (body: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
  for (let look = 0; look < 300; look += 1) {
    const call = await callRuns(s.settings, id);
    expect(call.status).toBe(200);
    if (done(call.body)) return call.body;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`run ${id} did not get there`);
}

/** `POST /api/sync/{provider}` as the Functions app answers it, reading the scenario's settings. */
function post(s: Scenario, provider: string, replyWithinMs: number) {
  const settings = { ...s.settings, SYNC_HTTP_REPLY_WITHIN_MS: String(replyWithinMs) };
  return callHttp(createSyncRunner({ settings }), `/api/sync/${provider}`, { settings });
}

describe('async HTTP runs', () => {
  it('a small run is answered 200 with its report and run id, run by the queue worker while the request waits', async () => {
    const s = await queueScenario();
    await putSource(s, 'small/one.txt', 'one');
    const posting = post(s, 'azure', 10_000);
    const workerLines = await drainWhile(s, posting);
    const call = await posting;

    expect(call.status).toBe(200);
    expect(call.body).toMatchObject({ complete: true, runId: expect.stringMatching(/^\d{8}T\d{6}Z-[0-9a-f]{8}$/), targets: [{ target: 'azure', copied: 1 }] });
    // The HTTP invocation only enqueued the run; a queue invocation ran it.
    expect(events(call.lines, 'run-enqueued')).toHaveLength(1);
    expect(events(call.lines, 'invocation-start')).toEqual([]);
    expect(events(workerLines, 'invocation-start')).toMatchObject([{ trigger: 'queue', provider: 'azure' }]);
    const run = await callRuns(s.settings, call.body['runId'] as string);
    expect(run.body).toMatchObject({ state: 'complete', trigger: 'http', targets: { azure: { copied: 1, failed: 0 } }, report: { complete: true } });
    expect((await readAll(s)).azure.get('small/one.txt')).toBeDefined();
  });

  it('a large run is answered 202 with Location: /api/runs/{id}, and that URL reaches complete once the workers are done', async () => {
    const s = await queueScenario({ SYNC_FAN_OUT_MIN_TRANSFERS: '10', SYNC_FAN_OUT_KEYS_PER_MESSAGE: '5' });
    for (let index = 0; index < 30; index += 1) await putSource(s, `large/${String(index).padStart(2, '0')}.txt`, `large ${index}`);
    const call = await post(s, 'all', 0);

    expect(call.status).toBe(202);
    const id = call.body['runId'] as string;
    expect(call.headers.get('location')).toBe(`/api/runs/${id}`);
    expect(call.headers.get('retry-after')).toBe('10');
    expect(call.body).toMatchObject({ state: 'running', statusUrl: `/api/runs/${id}` });
    // Nothing runs after the answer: until a worker takes the queued run, its record is untouched.
    expect((await callRuns(s.settings, id)).body).toMatchObject({ state: 'running', planning: { done: false }, targets: {} });
    expect((await readAll(s)).azure.size).toBe(0);

    // The CLI worker runs the queue function's handler: the queued run, then the pieces it fanned out.
    expect((await runCli(['work', '--until-empty'], s.settings)).exitCode).toBe(0);
    const ended = await pollRun(s, id, (body) => body['state'] !== 'running');

    expect(ended).toMatchObject({ state: 'complete', pieces: { enqueued: 12, finished: 12, pending: 0 }, targets: { azure: { enqueued: 30, copied: 30 }, oci: { enqueued: 30, copied: 30 } } });
    const state = await readAll(s);
    expect(mirrorDifferences(state.source, state.azure)).toEqual([]);
    expect(mirrorDifferences(state.source, state.oci)).toEqual([]);
    const status = await callRuns(s.settings);
    expect(status.body).toMatchObject({ targets: { azure: { lastCompleteRun: { id } }, oci: { lastCompleteRun: { id } } }, queue: { pending: 0, poisoned: 0 } });
  });

  it('a queued run whose message is delivered twice runs the mirror once', async () => {
    const s = await queueScenario();
    for (const key of ['twice/a.txt', 'twice/b.txt', 'twice/c.txt']) await putSource(s, key, key);
    const call = await post(s, 'azure', 0);
    expect(call.status).toBe(202);
    const id = call.body['runId'] as string;
    // A second copy of the message, as an at-least-once queue may deliver it; both are handed out in one batch.
    const { queue } = queues(s);
    const [message] = (await queue.peekMessages({ numberOfMessages: 1 })).peekedMessageItems;
    await queue.sendMessage(message?.messageText ?? '');
    const drained = await drain(s);

    expect(drained.failed).toBe(0);
    expect(events(drained.lines, 'invocation-start')).toHaveLength(1);
    expect(events(drained.lines, 'queued-run-skipped')).toMatchObject([{ run: id }]);
    const run = await callRuns(s.settings, id);
    expect(run.body).toMatchObject({ state: 'complete', targets: { azure: { copied: 3, unchanged: 0, failed: 0 } } });
  });

  it('a queued run that fails on every attempt goes to the poison queue and its record ends incomplete, not running', async () => {
    const s = await queueScenario();
    await putSource(s, 'held/a.txt', 'a');
    // Another run holds the target's lock through every attempt: each one stops before its first change.
    const held = await acquireRunLock([{ target: 'azure', blobName: `azure/devstoreaccount1/${s.container}.lock` }], { service: serviceClient({ connectionString: emulators.azurite.connectionString }), container: 'artifacts-sync-locks', holder: 'host test pid 1 run other', leaseSeconds: 60 });
    let drained: DrainResult;
    let call: Awaited<ReturnType<typeof post>>;
    try {
      call = await post(s, 'azure', 0);
      expect(call.status).toBe(202);
      drained = await drain(s);
    } finally {
      await held.release();
    }
    const id = call.body['runId'] as string;

    expect(drained).toMatchObject({ succeeded: 0, failed: HOST_MAX_DEQUEUE_COUNT, poisoned: 1 });
    // Between attempts the record stays open, so the next delivery runs it again.
    expect(events(drained.lines, 'invocation-start')).toHaveLength(HOST_MAX_DEQUEUE_COUNT);
    expect(events(drained.lines, 'message-poisoned')).toHaveLength(1);
    const run = await callRuns(s.settings, id);
    expect(run.body).toMatchObject({ state: 'incomplete', planning: { done: true, error: expect.stringContaining('host test pid 1 run other') } });
    expect((await readAll(s)).azure.size).toBe(0);
    expect((await callRuns(s.settings)).body).toMatchObject({ queue: { pending: 0, poisoned: 1 } });
  });

  it('a run left running with no progress for over an hour is reported stalled, not running', async () => {
    const s = await queueScenario();
    // A record opened 61 minutes ago whose run never reported (its invocation was lost).
    const id = await createRunService(s.settings, () => Date.now() - 61 * 60_000).open('azure', 'http');

    const run = await callRuns(s.settings, id);
    expect(run.body).toMatchObject({ state: 'stalled', stalled: expect.stringContaining('no progress since') });
    expect((await runCli(['status', id], s.settings)).exitCode).toBe(1);
    const fresh = await createRunService(s.settings).open('azure', 'http');
    expect((await callRuns(s.settings, fresh)).body).toMatchObject({ state: 'running' });
    expect((await runCli(['status', fresh], s.settings)).exitCode).toBe(4);
  });

  it('GET /api/runs/{id} answers 404 for an unknown or malformed id', async () => {
    const s = await queueScenario();
    expect((await callRuns(s.settings, '20200101T000000Z-00000000')).status).toBe(404);
    const malformed = await callRuns(s.settings, '../etc/passwd');
    expect(malformed.status).toBe(404);
    expect(malformed.body['error']).toContain('run ids look like');
  });
});
