/** One run per target at a time: Azure blob leases on Azurite, taken by the real CLI code path. */
import { afterAll, describe, expect, inject, it } from 'vitest';
import { acquireRunLock } from '../src/lock.ts';
import { serviceClient } from '../src/stores/azure-blob.ts';
import { runCli, runJson } from './support/cli-run.ts';
import { createScenario, putSource, readAll, type Scenario } from './support/scenario.ts';

const emulators = inject('emulators');
const scenarios: Scenario[] = [];
afterAll(() => {
  for (const scenario of scenarios) scenario.s3.destroy();
});
async function scenario(): Promise<Scenario> {
  const created = await createScenario(emulators, 'lock');
  scenarios.push(created);
  return created;
}
const service = serviceClient({ connectionString: emulators.azurite.connectionString });
const azureLock = (s: Scenario): { target: 'azure'; blobName: string } => ({ target: 'azure', blobName: `azure/devstoreaccount1/${s.container}.lock` });

describe('the run lock', () => {
  it('stops a second run at once with exit 3 and says who holds the lock, changing nothing', async () => {
    const s = await scenario();
    await putSource(s, 'a.txt', 'a');
    const first = await acquireRunLock([azureLock(s)], { service, container: 'artifacts-sync-locks', holder: 'host test pid 1 run first', leaseSeconds: 15 });
    try {
      const second = await runCli(['azure'], s.settings);
      expect(second.exitCode).toBe(3);
      expect(second.stderr).toContain('another run is mirroring azure right now (host test pid 1 run first, since');
      expect((await readAll(s)).azure.size).toBe(0);
    } finally {
      await first.release();
    }
    expect((await runJson('azure', s.settings)).exitCode).toBe(0);
  });

  it('locks each destination separately, so mirrors of different containers run side by side', async () => {
    const [one, two] = [await scenario(), await scenario()];
    await putSource(one, 'a.txt', 'a');
    await putSource(two, 'b.txt', 'b');
    const held = await acquireRunLock([azureLock(one)], { service, container: 'artifacts-sync-locks', holder: 'other', leaseSeconds: 15 });
    try {
      expect((await runJson('azure', two.settings)).exitCode).toBe(0);
    } finally {
      await held.release();
    }
  });

  it('takes no lock when an `all` run finds one target locked, leaving the other free', async () => {
    const s = await scenario();
    const ociOnly = { target: 'oci' as const, blobName: `oci/${new URL(s.settings['OCI_S3_ENDPOINT']!).host}/${s.ociBucket}.lock` };
    const held = await acquireRunLock([ociOnly], { service, container: 'artifacts-sync-locks', holder: 'other', leaseSeconds: 15 });
    try {
      expect((await runCli(['all'], s.settings)).exitCode).toBe(3);
      // The azure lock was released when the oci lock turned out to be held: an azure run goes ahead.
      expect((await runJson('azure', s.settings)).exitCode).toBe(0);
    } finally {
      await held.release();
    }
  });

  it("lets a new run in once a crashed run's lease expires", async () => {
    const s = await scenario();
    await putSource(s, 'a.txt', 'a');
    // What a crashed run leaves behind: a 15-second lease on its lock blob that nobody renews or releases.
    const lockBlob = service.getContainerClient('artifacts-sync-locks').getBlockBlobClient(azureLock(s).blobName);
    await service.getContainerClient('artifacts-sync-locks').createIfNotExists();
    await lockBlob.upload('', 0);
    await lockBlob.getBlobLeaseClient().acquireLease(15);
    expect((await runCli(['azure'], s.settings)).exitCode).toBe(3);
    await new Promise((resolve) => setTimeout(resolve, 16_000));
    expect((await runJson('azure', s.settings)).exitCode).toBe(0);
  }, 40_000);

  it('says in the report that no lock was taken when no Azure storage is configured', async () => {
    const s = await scenario();
    await putSource(s, 'a.txt', 'a');
    const { AZURE_STORAGE_CONNECTION_STRING: _unused, ...ociOnly } = s.settings;
    const { exitCode, report } = await runJson('oci', ociOnly);
    expect(exitCode).toBe(0);
    expect(report.targets[0]!.notes).toContain('no lock was taken: no Azure storage is configured to hold it (set AZURE_STORAGE_ACCOUNT_URL or AZURE_STORAGE_CONNECTION_STRING)');
  });
});
