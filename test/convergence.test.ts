/**
 * Every run converges and says the truth (issue 11): archived source objects, a slow first pull, an
 * object too large for one run, a throttling target, a lost lock.
 *
 * Stores are the emulators behind the protocol-level stand-ins of test/support:
 * - the S3 stand-in (s3-stand-in.ts) plays S3's archived objects, which s3rver has no notion of: it lists
 *   a key with `<StorageClass>GLACIER</StorageClass>` (or INTELLIGENT_TIERING, whose archive tiers a
 *   listing does not show) and answers its GetObject `403 InvalidObjectState`, as S3 does; in front of
 *   OCI it plays real OCI's atomic PutObject, ListMultipartUploads and ListParts;
 * - the copy-from-URL proxy (copy-from-URL-proxy.ts) plays Azure's pull from a presigned URL, which
 *   Azurite lacks, and maps a source's 403 to `403 CannotVerifyCopySource` as Azure does;
 * - the counting proxies (http-proxy.ts) count the bytes each store received and play a throttling
 *   service (`503` with `Retry-After`).
 */
import { describe, expect, inject, it } from 'vitest';
import { createSyncService } from '../src/sync.ts';
import { deadlineAfter, type RunEvent } from '../src/core/run.ts';
import { DeadlineError } from '../src/core/errors.ts';
import { runCli, runJson, targetOf } from './support/cli-run.ts';
import { blobServiceClientFor } from './support/emulators.ts';
import type { ProxiedRequest } from './support/http-proxy.ts';
import { createProxiedScenario } from './support/proxied-scenario.ts';
import { createStandInScenario, type StandInScenario } from './support/stand-in-scenario.ts';
import { mirrorDifferences, pseudoRandomBytes, putBlob, putS3Object, putSource, readAll } from './support/scenario.ts';

const emulators = inject('emulators');
const MIB = 1024 * 1024;

async function withStandIns(options: Parameters<typeof createStandInScenario>[1], test: (s: StandInScenario) => Promise<void>): Promise<void> {
  const s = await createStandInScenario(emulators, options);
  try {
    await test(s);
  } finally {
    await s.close();
  }
}

const bytesOf = (requests: readonly ProxiedRequest[], operations: readonly string[], direction: 'requestBytes' | 'responseBytes'): number =>
  requests.filter((request) => operations.includes(request.operation)).reduce((sum, request) => sum + request[direction], 0);

describe('archived source objects', () => {
  it('are reported, never transferred nor deleted; every ordinary object is mirrored, Azure keeps pulling, and deletions are done', () =>
    withStandIns({ prefix: 'archived', serverSideCopy: true }, async (s) => {
      // Largest first: the archived objects are the first transfers a run would try.
      await putSource(s, 'releases/2019/huge.iso', pseudoRandomBytes(3 * MIB, 1));
      await putSource(s, 'releases/2020/tiered.iso', pseudoRandomBytes(2 * MIB, 2));
      await putSource(s, 'releases/2018/kept.iso', pseudoRandomBytes(100_000, 3));
      for (let index = 0; index < 6; index += 1) await putSource(s, `current/${index}.zip`, pseudoRandomBytes(10_000 + index, 10 + index));
      // The targets already hold an archived object (a copy made before it was archived), and keys gone from the source.
      await putBlob(s, 'releases/2018/kept.iso', pseudoRandomBytes(100_000, 3));
      await putS3Object(s, s.ociBucket, 'releases/2018/kept.iso', pseudoRandomBytes(100_000, 3));
      await putBlob(s, 'gone/old.zip', 'old');
      await putS3Object(s, s.ociBucket, 'gone/old.zip', 'old');
      s.sourceStandIn.setArchived({ 'releases/2019/huge.iso': 'GLACIER', 'releases/2018/kept.iso': 'DEEP_ARCHIVE', 'releases/2020/tiered.iso': 'INTELLIGENT_TIERING' });

      const { exitCode, report, stderr } = await runJson('all', s.settings);

      expect(exitCode, stderr).toBe(0);
      for (const name of ['azure', 'oci'] as const) {
        const target = targetOf(report, name);
        // GLACIER from the listing; the Intelligent-Tiering one when it was read (or pulled) and answered InvalidObjectState.
        // OCI's kept.iso was not written by a run of ours (no copy record covers it), so it cannot be taken as
        // current: it is reported archived (not mirrored) too, and kept, as the source cannot serve the bytes.
        const archived = ['releases/2019/huge.iso', 'releases/2020/tiered.iso', ...(name === 'oci' ? ['releases/2018/kept.iso'] : [])];
        expect(target.archived, name).toEqual({ count: archived.length, keys: expect.arrayContaining(archived) });
        expect(target, name).toMatchObject({ copied: 6, deleted: 1, failed: 0, failures: [], complete: true });
      }
      // Azure's pull of the Intelligent-Tiering object was refused (403 CannotVerifyCopySource) because the
      // source cannot serve it: that is the source's problem, so Azure kept pulling.
      expect(targetOf(report, 'azure').mode).toBe('server-side');
      expect(targetOf(report, 'azure').notes.filter((note) => note.includes('refused to pull'))).toEqual([]);
      expect(s.copyProxy!.pulls().filter((pull) => pull.path.endsWith('huge.iso'))).toEqual([]);
      // The next run copies nothing and says the same, in the text report too.
      expect((await runCli(['all'], s.settings)).stdout).toContain('ARCHIVED at the source, not mirrored: 2 object(s)');

      const stored = await readAll(s);
      for (const [name, held] of [['azure', stored.azure], ['oci', stored.oci]] as const) {
        expect([...held.keys()].sort(), name).toEqual([...[...Array(6).keys()].map((index) => `current/${index}.zip`), 'releases/2018/kept.iso'].sort());
        const ordinary = new Map([...stored.source].filter(([key]) => key.startsWith('current/')));
        expect(mirrorDifferences(ordinary, new Map([...held].filter(([key]) => key.startsWith('current/')))), name).toEqual([]);
      }
    }));

  it('fail the run with SYNC_FAIL_ON_ARCHIVED=true, naming the setting', () =>
    withStandIns({ prefix: 'archived-fail', settings: { SYNC_FAIL_ON_ARCHIVED: 'true', SYNC_TRANSFER_MODE: 'streaming' } }, async (s) => {
      await putSource(s, 'cold.bin', pseudoRandomBytes(50_000, 1));
      await putSource(s, 'warm.bin', pseudoRandomBytes(40_000, 2));
      s.sourceStandIn.setArchived({ 'cold.bin': 'GLACIER' });

      const { exitCode, report } = await runJson('oci', s.settings);

      expect(exitCode).toBe(1);
      const oci = targetOf(report, 'oci');
      expect(oci).toMatchObject({ copied: 1, complete: false, archived: { count: 1, keys: ['cold.bin'] } });
      expect(oci.failures.map((failure) => failure.message)).toEqual([expect.stringContaining('SYNC_FAIL_ON_ARCHIVED')]);
    }));
});

describe('the pull probe', () => {
  it('is a small object: while the first (largest) object is still being pulled, the small ones are copied', () =>
    withStandIns({ prefix: 'probe', serverSideCopy: true }, async (s) => {
      await putSource(s, 'big/first.bin', pseudoRandomBytes(4 * MIB, 1));
      const small = Array.from({ length: 8 }, (_, index) => `small/${index}.txt`);
      for (const [index, key] of small.entries()) await putSource(s, key, `small object ${index}`);
      // Azure's pull of the big object reaches the source and is held there, as a pull that takes its time.
      const held = s.sourceStandIn.holdNext('GetObject', (path) => path.endsWith('/big/first.bin'));
      const order: string[] = [];
      const run = createSyncService(s.settings).sync({
        provider: 'azure',
        onEvent: (event: RunEvent) => {
          if (event.event === 'transferred') order.push(event.key);
        },
      });
      const request = await held;
      // Released once every small object is in, or after 15 s (then the order below shows they waited).
      for (let waited = 0; waited < 15_000 && !small.every((key) => order.includes(key)); waited += 50) await new Promise((resolve) => setTimeout(resolve, 50));
      request.release();
      const report = await run;

      expect(report.complete).toBe(true);
      expect(order.at(-1)).toBe('big/first.bin');
      expect(order.slice(0, -1).sort()).toEqual(small);
      expect(targetOf(report, 'azure')).toMatchObject({ mode: 'server-side', copied: 9 });
    }));
});

describe('an object too large for one run', () => {
  it('converges over a few runs of 3 s, moving its bytes about once; deletions of other keys are not held back', () =>
    withStandIns({ prefix: 'resume', settings: { SYNC_TRANSFER_MODE: 'streaming', SYNC_DEADLINE_SECONDS: '3', SYNC_MAX_DEFERRED_RUNS: '60', SYNC_MAX_DELETE_PERCENT: '100' } }, async (s) => {
      const size = 200 * MIB;
      await putSource(s, 'images/big.img', pseudoRandomBytes(size, 7));
      await putSource(s, 'small.txt', 'small');
      await putBlob(s, 'stale/gone.txt', 'gone');
      await putS3Object(s, s.ociBucket, 'stale/gone.txt', 'gone');
      for (const proxy of [s.sourceProxy, s.ociProxy, s.azureProxy]) proxy.reset();

      const runs: { exitCode: number; deferredBy: object[]; bytes: number; notes: string[] }[] = [];
      let complete = false;
      // Under load a run's 3 s may end before it has planned (no deletion yet): the assertions hold for the runs that did.
      let deletedWhileIncomplete = 0;
      let cutByDeadline = 0;
      for (let attempt = 0; attempt < 40 && !complete; attempt += 1) {
        const { exitCode, report, stderr } = await runJson('all', s.settings);
        runs.push({ exitCode, deferredBy: report.targets.map((target) => target.deferredBy), bytes: report.targets.reduce((sum, target) => sum + target.bytesStreamed, 0), notes: report.targets.flatMap((target) => target.notes.map((note) => `${target.target}: ${note}`)) });
        complete = report.complete;
        if (complete) break;
        // A run that stops early says why: the deadline, never a failure.
        expect(report.stoppedBy, stderr).toBe('deadline');
        cutByDeadline += 1;
        for (const target of report.targets) expect(target.failures, stderr).toEqual([]);
        // The stale keys go in the first run that plans, although the large object is still on its way.
        if (['azure', 'oci'].every((name) => targetOf(report, name as 'azure' | 'oci').deleted === 1)) deletedWhileIncomplete += 1;
      }
      expect(cutByDeadline).toBeGreaterThan(0);
      expect(deletedWhileIncomplete).toBe(1);
      const moved = {
        sourceRead: bytesOf(s.sourceProxy.requests(), ['GetObject'], 'responseBytes'),
        oci: bytesOf(s.ociProxy.requests(), ['UploadPart', 'PutObject'], 'requestBytes'),
        azure: bytesOf(s.azureProxy.requests(), ['PutBlock', 'PutBlob'], 'requestBytes'),
      };
      console.log(`resume: 200 MiB object, 3 s deadline per run: ${runs.length} runs; bytes moved over all runs: ` +
        `read from the source ${(moved.sourceRead / MIB).toFixed(1)} MiB, sent to OCI ${(moved.oci / MIB).toFixed(1)} MiB, to Azure ${(moved.azure / MIB).toFixed(1)} MiB ` +
        `(${(moved.sourceRead / size).toFixed(3)}x, ${(moved.oci / size).toFixed(3)}x, ${(moved.azure / size).toFixed(3)}x the object)`);

      expect(complete).toBe(true);
      expect(runs.length).toBeGreaterThan(1);
      // On failure, each run's notes say whether an upload was continued, and why not.
      for (const bytes of Object.values(moved)) expect(bytes, JSON.stringify(runs)).toBeLessThan(1.2 * size);
      const stored = await readAll(s);
      expect(mirrorDifferences(stored.source, stored.azure)).toEqual([]);
      expect(mirrorDifferences(stored.source, stored.oci)).toEqual([]);
      expect(s.ociStandIn.uploads(s.ociBucket).filter((upload) => upload.state === 'in-progress')).toEqual([]);
    }), 300_000);
});

describe('a throttling target', () => {
  it('answering 503 with Retry-After for 20 s is waited out, and the run completes', async () => {
    const s = await createProxiedScenario(emulators, { prefix: 'throttle' });
    try {
      for (let index = 0; index < 4; index += 1) await putSource(s, `t/${index}.txt`, `throttled ${index}`);
      await s.ociProxy.setDown('503', { retryAfterSeconds: 5 });
      const back = new Promise<void>((resolve) => setTimeout(() => void s.ociProxy.setDown(null).then(resolve), 20_000));

      const { exitCode, report, stderr } = await runJson('oci', s.settings);
      await back;

      expect(exitCode, stderr).toBe(0);
      expect(targetOf(report, 'oci')).toMatchObject({ copied: 4, complete: true, failures: [] });
      // It was throttled (and waited), not merely lucky.
      expect(s.ociProxy.requests().filter((request) => request.fault === 'down').length).toBeGreaterThan(0);
      const stored = await readAll(s);
      expect(mirrorDifferences(stored.source, stored.oci)).toEqual([]);
    } finally {
      await s.close();
    }
  }, 120_000);
});

describe('a lost lock', () => {
  it.each(['GetObject', 'ListObjectsV2'] as const)('while the run waits on the source (%s) fails the run, naming the lost lock', (operation) =>
    withStandIns({ prefix: `lost-${operation.toLowerCase()}`, settings: { SYNC_LOCK_LEASE_SECONDS: '15', SYNC_TRANSFER_MODE: 'streaming' } }, async (s) => {
      await putSource(s, 'a.bin', pseudoRandomBytes(1000, 1));
      await putSource(s, 'b.bin', pseudoRandomBytes(1000, 2));
      // A listing of one key per page, held at its second page: the lock is taken once a first page is in.
      s.sourceStandIn.setListing({ pageSize: 1 });
      const held = s.sourceStandIn.holdNext(operation, (_path, query) => operation !== 'ListObjectsV2' || query['continuation-token'] !== undefined);
      const run = runJson('oci', s.settings);
      const request = await held;
      // Another party breaks the lease (as an operator would, or as if it expired while the process stalled): renewals fail.
      const lock = blobServiceClientFor(emulators.azurite).getContainerClient('artifacts-sync-locks').getBlobClient(`oci/${new URL(s.settings['OCI_S3_ENDPOINT']!).host}/${s.ociBucket}.lock`);
      // Taken: leased, and its holder written (the lock is not taken until then).
      for (let waited = 0; waited < 10_000; waited += 50) {
        const properties = await lock.getProperties().catch(() => undefined);
        if (properties?.leaseState === 'leased' && properties.metadata?.['holder'] !== undefined) break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      await lock.getBlobLeaseClient().breakLease(0);
      const { exitCode, report } = await run;
      request.release();

      expect(exitCode).toBe(1);
      expect(report.stoppedBy).toBe('lock-lost');
      expect(report.complete).toBe(false);
      expect(targetOf(report, 'oci').failures).toContainEqual(expect.objectContaining({ operation: 'lock', message: expect.stringContaining('lost the run lock') }));
      expect(report.failures.filter((failure) => failure.operation === 'list')).toEqual([]);
    }), 60_000);
});

describe('the deadline covers every step', () => {
  it('a lock request that never answers ends the run at its deadline, naming the deadline', async () => {
    const s = await createProxiedScenario(emulators, { prefix: 'lock-stall' });
    try {
      await putSource(s, 'a.txt', 'a');
      // Every lease request is held (far longer than this test may take): only the deadline can end the run.
      s.azureProxy.setFaults({ rate: 1, kinds: ['stall'], stallMs: 600_000, onlyOperations: ['Lease'] });
      const outcome = await createSyncService(s.settings)
        .sync({ provider: 'azure', deadline: deadlineAfter(Date.now(), 3000) })
        .then(() => 'finished', (error: unknown) => error);

      expect(outcome).toBeInstanceOf(DeadlineError);
      expect(s.azureProxy.requests().filter((request) => request.operation === 'Lease').length).toBeGreaterThan(0);
      expect((await readAll(s)).azure.size).toBe(0);
    } finally {
      s.azureProxy.setFaults(null);
      await s.close();
    }
  }, 30_000);
});

describe('an object that keeps being deferred', () => {
  it('fails the run once it has been deferred SYNC_MAX_DEFERRED_RUNS runs in a row, naming it, the count and the reason', async () => {
    const s = await createProxiedScenario(emulators, { prefix: 'deferred-n', settings: { SYNC_MAX_DEFERRED_RUNS: '3' } });
    try {
      await putSource(s, 'never/arrives.bin', pseudoRandomBytes(1000, 1));
      const service = createSyncService(s.settings);
      // Each run's deadline has passed for new transfers before the run starts: the object is deferred every time.
      const late = () => ({ stopStartingAt: Date.now() - 1, abortAt: Date.now() + 30_000 });
      const reports = [];
      for (let run = 0; run < 3; run += 1) reports.push(await service.sync({ provider: 'oci', deadline: late() }));

      for (const report of reports.slice(0, 2)) expect(targetOf(report, 'oci')).toMatchObject({ deferredBy: { deadline: 1 }, failures: [] });
      expect(targetOf(reports[2]!, 'oci').failures).toEqual([
        expect.objectContaining({ key: 'never/arrives.bin', message: expect.stringMatching(/^deferred in 3 runs in a row \(this time: deadline\).*SYNC_MAX_DEFERRED_RUNS is 3$/) }),
      ]);
      // Without the deadline it arrives.
      expect((await service.sync({ provider: 'oci' })).complete).toBe(true);
    } finally {
      await s.close();
    }
  }, 60_000);
});
