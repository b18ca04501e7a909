/**
 * Fan-out of full runs onto the object queue, as a user sees it: `artifacts-sync <provider> --enqueue`
 * (or a plan over the thresholds) puts the transfers on the queue, `artifacts-sync work` drains it
 * (several at once), `artifacts-sync status <run-id>` follows the run to its end. Real Azurite (blob
 * for the targets and the run records, queue) and s3rver.
 *
 * The CLI worker plays the Functions host's queue loop (src/queue-worker.ts) around the queue
 * function's own handler; the Functions host itself is not available here.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { QueueServiceClient } from '@azure/storage-queue';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { FanOut, MAX_MESSAGE_JSON_BYTES, readRunPiece, type RunPieceMessage } from '../src/core/fan-out.ts';
import { planWhileListing, type Listing } from '../src/core/listings.ts';
import { DEFAULT_DELETE_LIMITS } from '../src/core/plan.ts';
import { claimRun, newRunRecord, recordPiece, recordPlanning, releaseRun, type PieceOutcome } from '../src/core/run-record.ts';
import type { ObjectInfo, TargetName, TransferAction } from '../src/core/types.ts';
import { runCli, runJson, targetOf } from './support/cli-run.ts';
import { uniqueName } from './support/emulators.ts';
import { createScenario, mirrorDifferences, pseudoRandomBytes, putSource, readAll, readContainer, type Scenario } from './support/scenario.ts';

const emulators = inject('emulators');
const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const scenarios: Scenario[] = [];
afterAll(() => {
  for (const scenario of scenarios) scenario.s3.destroy();
});

const copy = (key: string, size = 1): TransferAction => ({ kind: 'copy', key, source: { key, size, lastModifiedMs: 0, etag: 'e' } });
const SETTINGS = { minTransfers: 10, minBytes: 1024 ** 4, keysPerMessage: 100, bytesPerMessage: 1024 ** 3 };

/** A FanOut whose queue is an array. */
function fanOutInto(sent: RunPieceMessage[], settings = SETTINGS, always = false): FanOut<TargetName> {
  return new FanOut<TargetName>(settings, { open: async () => ({ id: 'run-1' }), send: async (messages) => void sent.push(...messages) }, { always });
}

describe('the fan-out of a plan', () => {
  it('keeps a plan under the thresholds inline and enqueues nothing', async () => {
    const sent: RunPieceMessage[] = [];
    const fanOut = fanOutInto(sent);
    await fanOut.take('azure', Array.from({ length: 9 }, (_, index) => copy(`k${index}`)));

    expect(await fanOut.finish()).toBeUndefined();
    expect(fanOut.inline('azure').map((action) => action.key)).toHaveLength(9);
    expect(sent).toEqual([]);
  });

  it('enqueues every transfer of a plan over the thresholds, in messages within the keys, bytes and 64 KB limits', async () => {
    const sent: RunPieceMessage[] = [];
    const fanOut = fanOutInto(sent, { ...SETTINGS, keysPerMessage: 50, bytesPerMessage: 1000 });
    const longKeys = Array.from({ length: 200 }, (_, index) => `long/${String(index).padStart(4, '0')}/${'ü'.repeat(500)}`);
    await fanOut.take('oci', longKeys.map((key) => copy(key)));
    await fanOut.take('azure', [copy('big-1', 900), copy('big-2', 900), copy('big-3', 5000)]);
    expect(await fanOut.finish()).toBe('run-1');

    expect(fanOut.inline('oci')).toEqual([]);
    const ociKeys = sent.filter((message) => message.target === 'oci').flatMap((message) => message.keys);
    expect(ociKeys).toEqual(longKeys);
    for (const message of sent) {
      const encoded = Buffer.from(JSON.stringify(message)).toString('base64');
      expect(encoded.length).toBeLessThanOrEqual(64 * 1024);
      expect(Buffer.byteLength(JSON.stringify(message))).toBeLessThanOrEqual(MAX_MESSAGE_JSON_BYTES);
      expect(message.keys.length).toBeLessThanOrEqual(50);
    }
    // 1000 bytes per message: each big object alone (the one over the limit still gets its message).
    expect(sent.filter((message) => message.target === 'azure').map((message) => message.keys)).toEqual([['big-1'], ['big-2'], ['big-3']]);
    expect(sent.map((message) => message.piece)).toEqual(sent.map((_, index) => index));
    expect(fanOut.enqueued.get('oci')).toMatchObject({ keys: 200 });
  });

  it('counts only the pieces that reached the queue, so a run whose sending failed waits for no piece that never came', async () => {
    let calls = 0;
    const fanOut = new FanOut<TargetName>({ ...SETTINGS, keysPerMessage: 1 }, {
      open: async () => ({ id: 'run-1' }),
      send: async () => {
        calls += 1;
        if (calls > 1) throw new Error('queue unreachable');
      },
    });
    await fanOut.take('azure', Array.from({ length: 40 }, (_, index) => copy(`k${index}`)));
    await expect(fanOut.take('azure', Array.from({ length: 40 }, (_, index) => copy(`m${index}`)))).rejects.toThrow('queue unreachable');

    // The first 40 keys: 39 messages sent, the 40th still being packed; the next batch never reached the queue.
    expect(fanOut.pieces).toBe(39);
  });

  it('reads a piece back from the queue entry, and tells an event message apart', () => {
    const piece: RunPieceMessage = { v: 1, run: 'r', piece: 3, target: 'oci', keys: ['a b', 'c+d'] };
    expect(readRunPiece(JSON.stringify(piece))).toEqual(piece);
    expect(readRunPiece({ v: 1, key: 'k', kind: 'created', eventTime: '2026-01-01T00:00:00Z' })).toBeUndefined();
    expect(() => readRunPiece({ v: 1, run: 'r', piece: 1, target: 'gcs', keys: ['a'] })).toThrow('is not a run piece');
  });

  it('hands the transfers of an all-missing target over while the source is still listing, holding about a page', async () => {
    const PAGE = 1000;
    const PAGES = 50;
    const source: Listing = {
      label: 's3://synthetic',
      async *pages() {
        for (let page = 0; page < PAGES; page += 1) {
          yield Array.from({ length: PAGE }, (_, index): ObjectInfo => ({ key: `k/${String(page * PAGE + index).padStart(8, '0')}`, size: 10, lastModifiedMs: 0, etag: 'e' }));
        }
      },
    };
    const empty: Listing = { label: 'oci://empty', async *pages() {} };
    let handedOver = 0;
    let largestHandOver = 0;
    const listed = await planWhileListing(source, [{ ...empty, name: 'oci' as const }], DEFAULT_DELETE_LIMITS, {
      transferSink: {
        async take(_target, actions) {
          handedOver += actions.length;
          largestHandOver = Math.max(largestHandOver, actions.length);
        },
      },
    });

    // About a page at a time: the planner never held the plan.
    expect(largestHandOver).toBeLessThanOrEqual(2 * PAGE);
    expect(handedOver).toBe(PAGE * PAGES);
    expect(listed.plans.get('oci')?.transfers).toEqual([]);
    expect(listed.peakUnmatched).toBeLessThanOrEqual(2 * PAGE);
  });
});

describe('the run record', () => {
  const outcome = (piece: number, extra: Partial<PieceOutcome> = {}): PieceOutcome => ({
    piece,
    target: 'oci',
    poisoned: false,
    counts: { copied: 10, replaced: 0, deleted: 0, unchanged: 0, failed: 0, deferred: 0, bytes: 100 },
    failures: [],
    ...extra,
  });
  const planned = (record: ReturnType<typeof newRunRecord>) => recordPlanning(record, { pieces: 2, enqueued: new Map([['oci', { keys: 20, messages: 2 }]]) , report: {
    provider: 'oci', dryRun: false, source: { store: 's3://b', objects: 20, bytes: 200 }, startedAt: '', durationMs: 1, complete: false, failures: [],
    targets: [{ target: 'oci', store: 'oci://t', mode: 'streaming', planned: { copy: 0, replace: 0, delete: 0, unchanged: 0 }, copied: 0, replaced: 0, deleted: 0, unchanged: 0, failed: 0, deferred: 20, deferredBy: { enqueued: 20 }, archived: { count: 0, keys: [] }, bytesStreamed: 0, bytesCopiedServerSide: 0, durationMs: 1, deleteVerdict: { allowed: true }, complete: false, notes: [], failures: [] }],
  } }, 0);

  it('is complete once the planning run and every piece have ended, whatever the order, counting a piece delivered twice once', () => {
    let record = recordPiece(newRunRecord('r', 'oci', 'cli', 0), outcome(1), 0);
    record = recordPiece(record, outcome(1), 0);
    expect(record.state).toBe('running');
    record = planned(record);
    expect(record.state).toBe('running');
    record = recordPiece(record, outcome(0), 0);

    expect(record.state).toBe('complete');
    expect(record.targets.oci).toMatchObject({ enqueued: 20, messages: 2, copied: 20, deferred: 0, failed: 0 });
  });

  it('ends incomplete, never complete, when a piece was poisoned', () => {
    let record = planned(newRunRecord('r', 'oci', 'cli', 0));
    record = recordPiece(record, outcome(0), 0);
    record = recordPiece(record, outcome(1, { poisoned: true, failures: [{ target: 'oci', operation: 'head', key: 'bad key', message: 'refused' }] }), 0);

    expect(record.state).toBe('incomplete');
    expect(record.failures).toEqual([{ target: 'oci', operation: 'head', key: 'bad key', message: 'refused' }]);
  });

  it('of a queued run is claimed by one delivery: a copy of its message finds it held, a retry after a failed attempt runs it, a redelivery after a lost attempt abandons it', () => {
    const first = { message: 'm1', dequeueCount: 1, lastAttempt: false };
    const claimed = claimRun(newRunRecord('r', 'oci', 'http', 0), first, 0);
    expect(claimed.claim).toBe('start');
    expect(claimRun(claimed.record, { ...first, message: 'm2' }, 0).claim).toBe('held');
    // The attempt failed before enqueuing anything: the next delivery of the same message runs it again.
    expect(claimRun(releaseRun(claimed.record, 'lock held', 0), { ...first, dequeueCount: 2 }, 0).claim).toBe('start');
    // The attempt's instance stopped without a word: the redelivery does not run it a second time.
    expect(claimRun(claimed.record, { ...first, dequeueCount: 2 }, 0).claim).toBe('abandoned');
    expect(claimRun(planned(claimed.record), { ...first, message: 'm2' }, 0).claim).toBe('ended');
  });
});

/** A scenario whose host storage is Azurite, with a queue of its own. */
async function queueScenario(extra: Record<string, string> = {}): Promise<Scenario & { queueName: string }> {
  const queueName = uniqueName('fanout');
  const created = await createScenario(emulators, 'fanout', { AzureWebJobsStorage: emulators.azurite.connectionString, SYNC_QUEUE_NAME: queueName, SYNC_WORK_RETRY_SECONDS: '0', ...extra });
  scenarios.push(created);
  return { ...created, queueName };
}

async function statusOf(s: Scenario, runId: string): Promise<{ exitCode: number; run: Record<string, unknown> & { state: string; targets: Record<string, Record<string, number>>; failures: { key?: string }[] } }> {
  const result = await runCli(['status', runId, '--json'], s.settings);
  return { exitCode: result.exitCode, run: JSON.parse(result.stdout) as never };
}

describe('artifacts-sync --enqueue, work and status', () => {
  it('refuses --enqueue, work and status without AzureWebJobsStorage, naming the setting, and --enqueue with --dry-run or --key', async () => {
    const s = await createScenario(emulators, 'fanout');
    scenarios.push(s);
    for (const args of [['all', '--enqueue'], ['work', '--until-empty'], ['status']]) {
      const result = await runCli(args, s.settings);
      expect(result.exitCode).toBe(2);
      expect(result.stderr).toContain('AzureWebJobsStorage is required');
    }
    expect((await runCli(['all', '--enqueue', '--dry-run'], s.settings)).stderr).toContain('--enqueue and --dry-run do not go together');
    expect((await runCli(['all', '--enqueue', '--key', 'a'], s.settings)).stderr).toContain('--enqueue goes with a full run only');
    expect((await runCli(['work', '--forever'], { ...s.settings, AzureWebJobsStorage: emulators.azurite.connectionString })).stderr).toContain('allowed is --until-empty');
    expect((await runCli(['all'], { ...s.settings, AzureWebJobsStorage: emulators.azurite.connectionString, SYNC_FAN_OUT_KEYS_PER_MESSAGE: '0' })).stderr).toContain('SYNC_FAN_OUT_KEYS_PER_MESSAGE "0" is not a whole number from 1 to 2000');
  });

  it('fans a few hundred objects out, three workers drain the queue, and the run ends complete with the right counts', async () => {
    const s = await queueScenario({ SYNC_FAN_OUT_KEYS_PER_MESSAGE: '20' });
    const keys = Array.from({ length: 300 }, (_, index) => `many/${String(index).padStart(3, '0')}.bin`);
    for (let start = 0; start < keys.length; start += 50) await Promise.all(keys.slice(start, start + 50).map((key, index) => putSource(s, key, pseudoRandomBytes(100 + index, start + index))));

    const enqueued = await runJson('all', s.settings, ['--enqueue']);
    expect(enqueued.exitCode).toBe(0);
    const runId = (enqueued.report as unknown as { runId: string }).runId;
    expect(runId).toMatch(/^\d{8}T\d{6}Z-[0-9a-f]{8}$/);
    expect(targetOf(enqueued.report, 'oci').notes.join(' ')).toContain('300 transfer(s) enqueued in 15 message(s)');
    expect((await statusOf(s, runId)).exitCode).toBe(4);

    const workers = await Promise.all([0, 1, 2].map(() => runCli(['work', '--until-empty'], s.settings)));
    for (const worker of workers) expect(worker.exitCode).toBe(0);
    expect(workers.map((worker) => (JSON.parse(worker.stdout) as { succeeded: number }).succeeded).reduce((a, b) => a + b, 0)).toBe(30);

    const state = await readAll(s);
    expect(mirrorDifferences(state.source, state.azure)).toEqual([]);
    expect(mirrorDifferences(state.source, state.oci)).toEqual([]);
    const status = await statusOf(s, runId);
    expect(status.exitCode).toBe(0);
    expect(status.run.state).toBe('complete');
    for (const target of ['azure', 'oci']) expect(status.run.targets[target]).toMatchObject({ enqueued: 300, messages: 15, copied: 300, failed: 0, deferred: 0 });
    const overview = JSON.parse((await runCli(['status', '--json'], s.settings)).stdout) as { targets: Record<string, { lastCompleteRun: { id: string } }>; queue: { pending: number } };
    expect(overview.targets['oci']?.lastCompleteRun.id).toBe(runId);
    expect(overview.queue.pending).toBe(0);
  });

  it('fans out on its own once a plan crosses SYNC_FAN_OUT_MIN_TRANSFERS, and runs a smaller plan inline', async () => {
    const s = await queueScenario({ SYNC_FAN_OUT_MIN_TRANSFERS: '20' });
    for (let index = 0; index < 10; index += 1) await putSource(s, `first/${index}.txt`, `first ${index}`);
    const small = await runJson('azure', s.settings);
    expect(small.exitCode).toBe(0);
    expect(small.report.complete).toBe(true);
    expect(targetOf(small.report, 'azure').copied).toBe(10);

    for (let index = 0; index < 30; index += 1) await putSource(s, `second/${index}.txt`, `second ${index}`);
    const large = await runJson('azure', s.settings);
    expect(targetOf(large.report, 'azure')).toMatchObject({ copied: 0, deferred: 30 });
    const runId = (large.report as unknown as { runId: string }).runId;
    expect((await runCli(['work', '--until-empty'], s.settings)).exitCode).toBe(0);

    expect(mirrorDifferences((await readAll(s)).source, await readContainer(s))).toEqual([]);
    expect((await statusOf(s, runId)).run.state).toBe('complete');
  });

  it('does not enqueue the same transfers again while an earlier fanned-out run to the target is still running', async () => {
    const s = await queueScenario();
    for (let index = 0; index < 5; index += 1) await putSource(s, `again/${index}.txt`, `again ${index}`);
    const first = await runJson('oci', s.settings, ['--enqueue']);
    const firstId = (first.report as unknown as { runId: string }).runId;
    const second = await runJson('oci', s.settings, ['--enqueue']);

    expect(second.exitCode).toBe(1);
    expect(targetOf(second.report, 'oci')).toMatchObject({ deferred: 5 });
    expect(targetOf(second.report, 'oci').notes.join(' ')).toContain(`5 transfer(s) not enqueued: run ${firstId} is still working through 1 queued piece(s)`);
    const worker = await runCli(['work', '--until-empty'], s.settings);
    expect(JSON.parse(worker.stdout)).toMatchObject({ succeeded: 1 });
    expect((await statusOf(s, firstId)).run.state).toBe('complete');
    expect((await runJson('oci', s.settings, ['--enqueue'])).exitCode).toBe(0);
  });

  it('reports a run whose piece keeps failing as incomplete with its keys, and moves the message to the poison queue', async () => {
    const s = await queueScenario({ AzureFunctionsJobHost__extensions__queues__maxDequeueCount: '2' });
    await putSource(s, 'doomed/one.txt', 'one');
    const enqueued = await runJson('oci', s.settings, ['--enqueue']);
    const runId = (enqueued.report as unknown as { runId: string }).runId;

    // The workers' OCI endpoint answers nothing: every attempt fails.
    const broken = { ...s.settings, OCI_S3_ENDPOINT: 'http://127.0.0.1:9', SYNC_RETRY_ATTEMPTS: '1' };
    const worker = await runCli(['work', '--until-empty'], broken);
    expect(worker.exitCode).toBe(1);
    expect(JSON.parse(worker.stdout)).toMatchObject({ failed: 2, poisoned: 1 });

    const status = await statusOf(s, runId);
    expect(status.exitCode).toBe(1);
    expect(status.run.state).toBe('incomplete');
    expect(status.run.failures.map((failure) => failure.key)).toContain('doomed/one.txt');
    const poison = QueueServiceClient.fromConnectionString(emulators.azurite.connectionString).getQueueClient(`${s.queueName}-poison`);
    expect((await poison.getProperties()).approximateMessagesCount).toBe(1);
  });

  it('hands the message of a worker killed mid-message to another worker after its visibility timeout; nothing partial is visible', async () => {
    const s = await queueScenario({ SYNC_WORK_VISIBILITY_SECONDS: '5', SYNC_TRANSFER_MODE: 'streaming', SYNC_PART_SIZE_MB: '5' });
    const big = pseudoRandomBytes(40 * 1024 * 1024, 7);
    await putSource(s, 'big/one.bin', big);
    const enqueued = await runJson('azure', s.settings, ['--enqueue']);
    const runId = (enqueued.report as unknown as { runId: string }).runId;

    const child = spawn(process.execPath, ['src/cli.ts', 'work'], { cwd: repoRoot, env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/tmp', ...s.settings }, stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    // Killed as soon as it has planned the key: the transfer has started, not ended.
    await new Promise<void>((resolve) => {
      let seen = '';
      child.stderr.on('data', (chunk: Buffer) => {
        seen += chunk.toString();
        if (seen.includes('"event":"plan"')) resolve();
      });
    });
    child.kill('SIGKILL');
    await exited;
    const afterKill = await readContainer(s);
    expect(afterKill.get('big/one.bin')?.size ?? big.length).toBe(big.length);
    expect((await statusOf(s, runId)).run.state).toBe('running');

    const survivor = await runCli(['work', '--until-empty'], s.settings);
    expect(JSON.parse(survivor.stdout)).toMatchObject({ succeeded: 1, poisoned: 0 });
    expect(mirrorDifferences((await readAll(s)).source, await readContainer(s))).toEqual([]);
    expect((await statusOf(s, runId)).run.state).toBe('complete');
  });
});
