/**
 * Faults: every store behind a fault-injecting proxy (./support/http-proxy.ts). Transient faults at 5%
 * of requests are retried to an exact mirror; a target that stays down fails the run fast, deletes
 * nothing there and leaves the other target mirrored; wrong credentials name the store.
 */
import { afterAll, describe, expect, inject, it } from 'vitest';
import { runJson, targetOf } from './support/cli-run.ts';
import type { FaultKind, HttpProxy, ProxiedRequest } from './support/http-proxy.ts';
import { createProxiedScenario, type ProxiedScenario } from './support/proxied-scenario.ts';
import { mirrorDifferences, pseudoRandomBytes, putBlob, putS3Object, putSource, readAll, type Scenario } from './support/scenario.ts';

const emulators = inject('emulators');
const MIB = 1024 * 1024;
const closers: (() => Promise<void>)[] = [];
afterAll(async () => {
  await Promise.all(closers.map((close) => close()));
});

async function proxiedScenario(prefix: string, settings: Record<string, string> = {}): Promise<ProxiedScenario> {
  const s = await createProxiedScenario(emulators, { prefix, settings });
  closers.push(() => s.close());
  return s;
}

/** Keys and MD5s of one target. */
async function holdings(s: Scenario, name: 'azure' | 'oci'): Promise<Record<string, string>> {
  const state = await readAll(s);
  return Object.fromEntries([...state[name]].map(([key, object]) => [key, object.md5]));
}

async function expectExactMirror(s: Scenario, name: 'azure' | 'oci'): Promise<void> {
  const state = await readAll(s);
  expect(mirrorDifferences(state.source, state[name]), name).toEqual([]);
}

/** A source of small objects (and, with `big`, two multi-part ones); each target holds stale copies of two and two extras. */
async function seed(s: Scenario, smallCount: number, big = false): Promise<void> {
  for (let index = 0; index < smallCount; index += 1) await putSource(s, `small/${String(index).padStart(3, '0')}.bin`, pseudoRandomBytes(1000 + index * 997, index + 1));
  await putSource(s, 'big/one.bin', pseudoRandomBytes(big ? 11 * MIB + 5 : 5000, 501));
  await putSource(s, 'big/two.bin', pseudoRandomBytes(big ? 6 * MIB + 7 : 6000, 502));
  for (const [key, body] of [['small/000.bin', 'stale'], ['big/two.bin', 'stale'], ['extra/a.txt', 'extra'], ['extra/b.txt', 'extra']] as const) {
    await putBlob(s, key, body);
    await putS3Object(s, s.ociBucket, key, body);
  }
}

function faultCounts(proxy: HttpProxy): { requests: number; faults: Partial<Record<FaultKind, number>> } {
  const faults: Partial<Record<FaultKind, number>> = {};
  const requests = proxy.requests();
  for (const request of requests) if (request.fault !== null && request.fault !== 'down') faults[request.fault] = (faults[request.fault] ?? 0) + 1;
  return { requests: requests.length, faults };
}

describe('transient faults', () => {
  it('with 5% of requests failing at every store (500, 503, resets, cut bodies, stalls), a run, or at most a second, ends with the exact mirror', async () => {
    const s = await proxiedScenario('faults', { SYNC_REQUEST_TIMEOUT_SECONDS: '2', SYNC_PART_SIZE_MB: '5' });
    await seed(s, 40, true);
    const kinds: FaultKind[] = ['500', '503', 'reset', 'reset-mid-body', 'stall'];
    const seeds = { source: 101, azure: 202, oci: 303 };
    s.sourceProxy.setFaults({ rate: 0.05, kinds, seed: seeds.source, stallMs: 30_000 });
    s.ociProxy.setFaults({ rate: 0.05, kinds, seed: seeds.oci, stallMs: 30_000 });
    // Azure's stalls are slow answers (3 s), not hangs: the Azure client abandons no request (see the known gap below).
    s.azureProxy.setFaults({ rate: 0.05, kinds, seed: seeds.azure, stallMs: 3_000 });

    const runs: { exitCode: number; seconds: number; failures: string[] }[] = [];
    for (let attempt = 0; attempt < 2; attempt += 1) {
      const started = performance.now();
      const { exitCode, report } = await runJson('all', s.settings);
      runs.push({ exitCode, seconds: Math.round((performance.now() - started) / 100) / 10, failures: [...report.failures, ...report.targets.flatMap((target) => target.failures)].map((failure) => `${failure.target} ${failure.operation} ${failure.key ?? ''}: ${failure.message}`) });
      if (exitCode === 0) break;
    }
    const summary = {
      seeds,
      rate: 0.05,
      kinds,
      source: faultCounts(s.sourceProxy),
      azure: faultCounts(s.azureProxy),
      oci: faultCounts(s.ociProxy),
      runs,
    };
    console.log(`faults: ${JSON.stringify(summary)}`);

    expect(runs.at(-1)?.exitCode).toBe(0);
    // A stalled S3 request is given up after SYNC_REQUEST_TIMEOUT_SECONDS (2 s), not after the 30 s stall.
    for (const run of runs) expect(run.seconds).toBeLessThan(30);
    for (const proxy of [s.sourceProxy, s.azureProxy, s.ociProxy]) proxy.setFaults(null);
    await expectExactMirror(s, 'azure');
    await expectExactMirror(s, 'oci');
    for (const proxy of [summary.source, summary.azure, summary.oci]) expect(Object.values(proxy.faults).reduce((sum, count) => sum + count, 0)).toBeGreaterThan(0);
  }, 180_000);

  // PutObject and UploadPart leave the S3 store outside the SDK's middleware stack (src/stores/s3-direct-requests.ts), with the SDK's retry middleware.
  it.each(['PutObject', 'UploadPart'] as const)('a %s answered 500 or 503 twice is sent again, and the run ends with the exact mirror', async (operation) => {
    const s = await proxiedScenario('retry-writes', { SYNC_PART_SIZE_MB: '5', SYNC_SINGLE_REQUEST_MAX_MB: '5' });
    await putSource(s, 'small.bin', pseudoRandomBytes(300_000, 11));
    await putSource(s, 'large.bin', pseudoRandomBytes(11 * MIB, 12));
    s.ociProxy.setFaults({ rate: 1, kinds: ['500', '503'], seed: 7, onlyOperations: [operation], maxFaults: 2 });

    const { exitCode, report } = await runJson('oci', s.settings);

    expect(exitCode, JSON.stringify(targetOf(report, 'oci').failures)).toBe(0);
    const sent = s.ociProxy.requests().filter((request) => request.operation === operation);
    expect(sent.filter((request) => request.fault !== null).map((request) => request.status)).toEqual([expect.toBeOneOf([500, 503]), expect.toBeOneOf([500, 503])]);
    // One PutObject (small.bin) or three parts (large.bin) written, after the two refused attempts.
    expect(sent.filter((request) => request.status === 200)).toHaveLength(operation === 'PutObject' ? 1 : 3);
    expect(sent).toHaveLength((operation === 'PutObject' ? 1 : 3) + 2);
    s.ociProxy.setFaults(null);
    await expectExactMirror(s, 'oci');
  });

  it('a stalled S3 request (source read, OCI write) is abandoned after SYNC_REQUEST_TIMEOUT_SECONDS and retried', async () => {
    const s = await proxiedScenario('stall-s3', { SYNC_REQUEST_TIMEOUT_SECONDS: '2' });
    await putSource(s, 'a.txt', 'a');
    s.sourceProxy.setFaults({ rate: 1, kinds: ['stall'], stallMs: 20_000, onlyOperations: ['GetObject'], maxFaults: 1 });
    s.ociProxy.setFaults({ rate: 1, kinds: ['stall'], stallMs: 20_000, onlyOperations: ['PutObject'], maxFaults: 1 });

    const started = performance.now();
    const { exitCode } = await runJson('oci', s.settings);

    expect(exitCode).toBe(0);
    expect((performance.now() - started) / 1000).toBeLessThan(12);
    for (const proxy of [s.sourceProxy, s.ociProxy]) expect(proxy.requests().filter((request) => request.fault === 'stall')).toHaveLength(1);
    await expectExactMirror(s, 'oci');
  });

  // @azure/storage-blob's own `tryTimeoutInMs` is only a server-side `timeout` parameter: the Azure store bounds each
  // attempt itself (withAttemptTimeout), so a stalled listing page or write is abandoned and tried again.
  it.each(['ListBlobs', 'PutBlob'] as const)('a stalled Azure request (%s) is abandoned after SYNC_REQUEST_TIMEOUT_SECONDS and retried', async (operation) => {
    const s = await proxiedScenario('stall-azure', { SYNC_REQUEST_TIMEOUT_SECONDS: '2', SYNC_TRANSFER_MODE: 'streaming' });
    await putSource(s, 'a.txt', 'a');
    s.azureProxy.setFaults({ rate: 1, kinds: ['stall'], stallMs: 8_000, onlyOperations: [operation], maxFaults: 1 });

    const started = performance.now();
    const { exitCode } = await runJson('azure', s.settings);

    expect(exitCode).toBe(0);
    expect((performance.now() - started) / 1000).toBeLessThan(6);
  });
});

// These wait mostly on retry back-offs: run them side by side.
describe.concurrent('a target that stays down', () => {
  it.each(['refuse', '503'] as const)('OCI down (%s) fails the run fast naming oci://, deletes nothing there, and Azure is still mirrored', async (mode) => {
    // A small retry budget: a target that stays down is given up on within a second or two of trying (the default rides out a minute of 503s).
    const s = await proxiedScenario('down-oci', { SYNC_RETRY_BUDGET_SECONDS: '1' });
    await seed(s, 8);
    const before = await holdings(s, 'oci');
    await s.ociProxy.setDown(mode);

    const started = performance.now();
    const { exitCode, report, stderr } = await runJson('all', s.settings);
    const seconds = (performance.now() - started) / 1000;
    await s.ociProxy.setDown(null);
    console.log(`down: OCI ${mode} from the start, the run ended after ${seconds.toFixed(1)} s`);

    expect(exitCode).toBe(1);
    expect(seconds).toBeLessThan(20);
    const oci = targetOf(report, 'oci');
    expect(oci).toMatchObject({ copied: 0, deleted: 0, complete: false });
    expect(oci.failures).toEqual([expect.objectContaining({ target: 'oci', operation: 'list' })]);
    expect(oci.failures[0]!.message).toContain(`list failed on oci://${s.ociBucket}`);
    expect(stderr).toContain(`[oci] FAILED list: list failed on oci://${s.ociBucket}`);
    expect(await holdings(s, 'oci')).toEqual(before);
    expect(targetOf(report, 'azure')).toMatchObject({ complete: true, deleted: 2 });
    await expectExactMirror(s, 'azure');
  });

  it.each(['503'] as const)('Azure going down (%s) after its listing fails the run fast naming azure://, deletes nothing there, and OCI is still mirrored', async (mode) => {
    const s = await proxiedScenario('down-azure', { SYNC_RETRY_BUDGET_SECONDS: '1' });
    await seed(s, 8);
    const before = await holdings(s, 'azure');
    const listing = `/${emulators.azurite.accountName}/${s.container}`;

    const run = runJson('all', s.settings);
    // The container is listed and the lock (in the same account) taken; then Azure goes away for good.
    const answered = (matches: (request: ProxiedRequest) => boolean): number => s.azureProxy.requests().filter((request) => matches(request) && request.status !== null && request.status < 300).length;
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        const listed = answered((request) => request.operation === 'ListBlobs' && request.path === listing) > 0;
        // Each of the two locks (azure, oci) ends by naming its holder in its lock blob's metadata.
        const locked = answered((request) => request.path.includes('/artifacts-sync-locks/') && request.query['comp'] === 'metadata') === 2;
        if (!listed || !locked) return;
        clearInterval(timer);
        void s.azureProxy.setDown(mode).then(resolve);
      }, 1);
    });
    const downAt = performance.now();
    const { exitCode, report } = await run;
    const seconds = (performance.now() - downAt) / 1000;
    await s.azureProxy.setDown(null);
    console.log(`down: Azure ${mode} after its listing, the run ended ${seconds.toFixed(1)} s after Azure went down`);

    expect(exitCode).toBe(1);
    expect(seconds).toBeLessThan(20);
    const azure = targetOf(report, 'azure');
    expect(azure).toMatchObject({ deleted: 0, complete: false });
    expect(azure.failures.length).toBeGreaterThanOrEqual(5);
    for (const failure of azure.failures) expect(failure.message).toContain(`azure://${emulators.azurite.accountName}/${s.container}`);
    expect(azure.notes).toContainEqual(expect.stringMatching(new RegExp(`^stopped using azure://${emulators.azurite.accountName}/${s.container}: .*; nothing was deleted$`)));
    // Once down, no deletion was even attempted there, and the report says why they were deferred.
    expect(s.azureProxy.countBy('BlobBatch')).toBe(0);
    expect(azure.deferredBy['target-down']).toBeGreaterThanOrEqual(2);
    expect(await holdings(s, 'azure')).toEqual(before);
    expect(targetOf(report, 'oci')).toMatchObject({ complete: true, deleted: 2 });
    await expectExactMirror(s, 'oci');
  });

  it.each(['refuse'] as const)('Azure down (%s) from the start stops the run before any change, naming the account that holds the lock', async (mode) => {
    const s = await proxiedScenario('down-lock', { SYNC_RETRY_BUDGET_SECONDS: '1' });
    await seed(s, 3);
    const before = { azure: await holdings(s, 'azure'), oci: await holdings(s, 'oci') };
    await s.azureProxy.setDown(mode);

    const started = performance.now();
    const result = await runJson('all', s.settings).catch((error: unknown) => error);
    const seconds = (performance.now() - started) / 1000;
    await s.azureProxy.setDown(null);
    console.log(`down: Azure ${mode} from the start, the run ended after ${seconds.toFixed(1)} s`);

    // No report: the run could not take its lock. The CLI says why on stderr and exits 1.
    expect(String(result)).toMatch(/no JSON report \(exit 1\)/);
    expect(String(result)).toContain(`artifacts-sync: lock failed on azure://${emulators.azurite.accountName}/artifacts-sync-locks`);
    expect(seconds).toBeLessThan(20);
    expect({ azure: await holdings(s, 'azure'), oci: await holdings(s, 'oci') }).toEqual(before);
  });
});

describe.concurrent('wrong credentials', () => {
  it('a wrong OCI access key id fails OCI naming oci://, exit 1, nothing deleted there; Azure is still mirrored', async () => {
    const s = await proxiedScenario('creds-oci');
    await seed(s, 3);
    const before = await holdings(s, 'oci');

    const { exitCode, report } = await runJson('all', { ...s.settings, OCI_ACCESS_KEY_ID: 'NOSUCHKEYID0000000000' });

    expect(exitCode).toBe(1);
    const oci = targetOf(report, 'oci');
    expect(oci.failures).toEqual([expect.objectContaining({ target: 'oci', operation: 'list' })]);
    expect(oci.failures[0]!.message).toMatch(new RegExp(`^list failed on oci://${s.ociBucket} \\(403 InvalidAccessKeyId\\)`));
    expect(await holdings(s, 'oci')).toEqual(before);
    expect(targetOf(report, 'azure').complete).toBe(true);
  });

  it('a wrong Azure account key stops the run naming azure://, exit 1, nothing changed at either target', async () => {
    const s = await proxiedScenario('creds-azure');
    await seed(s, 3);
    const before = { azure: await holdings(s, 'azure'), oci: await holdings(s, 'oci') };
    const wrongKey = Buffer.from('not the account key, but well-formed base64 of 64 bytes........').toString('base64');
    const connectionString = s.settings['AZURE_STORAGE_CONNECTION_STRING']!.replace(/AccountKey=[^;]+/, `AccountKey=${wrongKey}`);

    const result = await runJson('all', { ...s.settings, AZURE_STORAGE_CONNECTION_STRING: connectionString }).catch((error: unknown) => error);

    expect(String(result)).toMatch(/no JSON report \(exit 1\)/);
    expect(String(result)).toContain(`artifacts-sync: lock failed on azure://${emulators.azurite.accountName}/artifacts-sync-locks (403): Server failed to authenticate the request`);
    expect(String(result)).not.toContain(wrongKey);
    expect({ azure: await holdings(s, 'azure'), oci: await holdings(s, 'oci') }).toEqual(before);
  });
});
