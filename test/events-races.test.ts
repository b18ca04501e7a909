/**
 * Races between event workers and full runs, made deterministic: the source is the real s3rver bucket,
 * wrapped (not mocked) so that another writer acts at the worst moment: between a worker's read and
 * its write, or between a full run's listing and its deletions.
 */
import { afterAll, describe, expect, inject, it } from 'vitest';
import { inProcessDeletionWindow } from '../src/core/delete-window.ts';
import { reconcileKeys, type KeyToReconcile, type ReconcileReport } from '../src/core/reconcile.ts';
import { runMirror, type MirrorTarget } from '../src/core/run.ts';
import { DEFAULT_TRANSFER_TUNING } from '../src/core/transfer.ts';
import { DEFAULT_DELETE_LIMITS } from '../src/core/plan.ts';
import { azureBlobStore } from '../src/stores/azure-blob.ts';
import { s3Store } from '../src/stores/s3.ts';
import type { ObjectInfo } from '../src/core/types.ts';
import type { SourceStore } from '../src/stores/store.ts';
import { targetOf } from './support/cli-run.ts';
import { createScenario, putSource, readAll, type Scenario } from './support/scenario.ts';

const emulators = inject('emulators');
const scenarios: Scenario[] = [];
afterAll(() => {
  for (const scenario of scenarios) scenario.s3.destroy();
});

async function stores(prefix: string): Promise<{ s: Scenario; source: SourceStore; targets: MirrorTarget[] }> {
  const s = await createScenario(emulators, prefix);
  scenarios.push(s);
  const s3 = { region: emulators.s3.region, endpoint: emulators.s3.endpoint, credentials: { accessKeyId: emulators.s3.accessKeyId, secretAccessKey: emulators.s3.secretAccessKey } };
  return {
    s,
    source: s3Store({ label: `s3://${s.sourceBucket}`, bucket: s.sourceBucket, ...s3 }),
    targets: [
      { name: 'azure', store: azureBlobStore({ container: s.container, connectionString: emulators.azurite.connectionString }) },
      { name: 'oci', store: s3Store({ label: `oci://${s.ociBucket}`, bucket: s.ociBucket, ...s3 }) },
    ],
  };
}

function reconcile(source: SourceStore, targets: readonly MirrorTarget[], keys: readonly KeyToReconcile[]): Promise<ReconcileReport> {
  return reconcileKeys(source, targets, keys, {
    provider: 'all',
    tuning: DEFAULT_TRANSFER_TUNING,
    memoryBudget: 64 * 1024 * 1024,
    // Both targets read from the source through this process, where the race is staged.
    transferMode: 'streaming',
    deletionWindow: inProcessDeletionWindow({ limit: 1000, windowMs: 3_600_000 }, '1000 per target', 'SYNC_MAX_DELETE_COUNT'),
  });
}

async function bytesAt(s: Scenario): Promise<{ azure: number | undefined; oci: number | undefined }> {
  const state = await readAll(s);
  return { azure: state.azure.get('race.bin')?.size, oci: state.oci.get('race.bin')?.size };
}

describe('event workers racing each other and full runs', () => {
  it('two workers on one key: the one that writes an older version last looks again and writes the current one', async () => {
    const { s, source, targets } = await stores('race-workers');
    await putSource(s, 'race.bin', 'version one');
    let staged = false;
    // Worker A reads version one; before A writes, the source gets version two and worker B mirrors it in full.
    const slowReader: SourceStore = {
      ...source,
      async read(key, options) {
        const read = await source.read(key, options);
        if (staged) return read;
        staged = true;
        const chunks: Uint8Array[] = [];
        for await (const chunk of read.body) chunks.push(chunk);
        await putSource(s, 'race.bin', 'version two, longer');
        const workerB = await reconcile(source, targets, [{ key: 'race.bin' }]);
        expect(workerB.complete).toBe(true);
        expect(await bytesAt(s)).toEqual({ azure: 19, oci: 19 });
        return { ...read, body: (async function* () { yield* chunks; })() };
      },
    };

    const workerA = await reconcile(slowReader, targets, [{ key: 'race.bin' }]);

    expect(staged).toBe(true);
    expect(workerA.complete).toBe(true);
    // A wrote version one (copy), then found the source moved on and replaced it with version two.
    expect(targetOf(workerA, 'azure')).toMatchObject({ copied: 1, replaced: 1 });
    expect(await bytesAt(s)).toEqual({ azure: 19, oci: 19 });
  });

  it('a full run whose listing predates a worker\'s copy does not delete that copy: each deletion is confirmed at the source first', async () => {
    const { s, source, targets } = await stores('race-full');
    await putSource(s, 'old.bin', 'old');
    await putSource(s, 'race.bin', 'uploaded after the listing');
    expect((await reconcile(source, targets, [{ key: 'race.bin' }, { key: 'old.bin' }])).complete).toBe(true);
    // The full run's source listing was taken before race.bin was uploaded; the worker has copied it since.
    const earlyListing: SourceStore = {
      ...source,
      async *listPages(signal) {
        for await (const page of source.listPages(signal)) yield page.filter((object: ObjectInfo) => object.key !== 'race.bin');
      },
    };

    const report = await runMirror(earlyListing, targets, { provider: 'all', tuning: DEFAULT_TRANSFER_TUNING, memoryBudget: 64 * 1024 * 1024, deleteLimits: DEFAULT_DELETE_LIMITS });

    expect(targetOf(report, 'azure')).toMatchObject({ planned: { delete: 1 }, deleted: 0 });
    expect(targetOf(report, 'azure').notes).toContain('each deletion is confirmed at the source right before it (the key may have come back since the listing): 0 deletion(s) confirmed at the source, 1 kept because the source has them');
    expect(await bytesAt(s)).toEqual({ azure: 26, oci: 26 });
  });
});
