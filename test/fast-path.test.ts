/**
 * The fast path: Azure pulls objects from S3 itself, and an object streamed to both targets is read once.
 * Azurite does not implement Put Blob From URL / Put Block From URL, so Azure is reached through the
 * copy-from-URL stand-in (test/support/copy-from-url-proxy.ts), which serves those calls by fetching
 * the presigned URL itself, as Azure does; counting proxies show what the process itself read.
 */
import { describe, expect, inject, it } from 'vitest';
import { DEFAULT_TRANSFER_TUNING } from '../src/core/transfer.ts';
import { runJson } from './support/cli-run.ts';
import { withProxiedScenario, type ProxiedScenario, type ProxiedScenarioOptions } from './support/proxied-scenario.ts';
import { mirrorDifferences, pseudoRandomBytes, putSource, readAll } from './support/scenario.ts';

const emulators = inject('emulators');
const MIB = 1024 * 1024;

/** Object bytes the process itself received from the source (GETs), not counting Azure's pulls. */
function bytesReadByProcess(s: ProxiedScenario): number {
  return s.sourceProxy
    .requests()
    .filter((request) => request.operation === 'GetObject' && request.client === 'app')
    .reduce((sum, request) => sum + request.responseBytes, 0);
}

const withScenario = (options: ProxiedScenarioOptions, test: (s: ProxiedScenario) => Promise<void>): Promise<void> => withProxiedScenario(emulators, options, test);

describe('server-side copy to Azure', () => {
  it('lets Azure pull every object from a presigned S3 URL: no object byte passes through the process', () =>
    withScenario({ prefix: 'pull', serverSideCopy: true, settings: { SYNC_SERVER_SIDE_SINGLE_MAX_MB: '1' } }, async (s) => {
      await putSource(s, 'small/a.txt', 'hello', 'text/plain');
      await putSource(s, 'small/b.zip', pseudoRandomBytes(300_000, 1), 'application/zip');
      // Above the 1 MiB single-pull limit: pulled as 1 MiB blocks with source ranges, then one block list.
      await putSource(s, 'large/installer.bin', pseudoRandomBytes(5 * MIB + 123, 2), 'application/octet-stream');

      const { exitCode, report } = await runJson('azure', s.settings);
      expect(exitCode).toBe(0);
      const azure = report.targets[0]!;
      expect(azure).toMatchObject({ mode: 'server-side', copied: 3, bytesStreamed: 0, bytesCopiedServerSide: 5 * MIB + 123 + 300_005 });
      expect(bytesReadByProcess(s)).toBe(0);
      expect(s.sourceProxy.countBy('GetObject', 'app')).toBe(0);

      const pulls = s.copyProxy!.pulls();
      expect(pulls.filter((pull) => pull.operation === 'PutBlobFromURL')).toHaveLength(2);
      const blockPulls = pulls.filter((pull) => pull.operation === 'PutBlockFromURL');
      expect(blockPulls).toHaveLength(6);
      expect(blockPulls.map((pull) => pull.range).sort()).toContain(`bytes=${5 * MIB}-${5 * MIB + 122}`);

      const state = await readAll(s);
      expect(mirrorDifferences(state.source, state.azure)).toEqual([]);
      const properties = await s.blobs.getBlobClient('small/b.zip').getProperties();
      expect(properties.contentType).toBe('application/zip');
      expect(properties.metadata?.['source_etag']).toMatch(/^[0-9a-f]{32}$/);
      // The next run sees the recorded ETags: nothing to do.
      expect((await runJson('azure', s.settings)).report.targets[0]!.unchanged).toBe(3);
    }));

  it('falls back to streaming when Azure refuses to pull, says so once, and asks only once', () =>
    withScenario({ prefix: 'refuse', serverSideCopy: true }, async (s) => {
      for (let index = 0; index < 30; index += 1) await putSource(s, `file-${index}.txt`, `content ${index}`);
      s.copyProxy!.setRefuse(true);
      const { exitCode, report } = await runJson('azure', s.settings);
      expect(exitCode).toBe(0);
      const azure = report.targets[0]!;
      expect(azure).toMatchObject({ mode: 'streaming', copied: 30, bytesCopiedServerSide: 0 });
      expect(azure.notes.filter((note) => note.includes('refused to pull'))).toEqual([
        expect.stringContaining('(CannotVerifyCopySource); streaming through this process instead'),
      ]);
      expect(s.azureProxy.countBy('PutBlobFromURL')).toBe(1);
      const state = await readAll(s);
      expect(mirrorDifferences(state.source, state.azure)).toEqual([]);
    }));

  it('never pulls when SYNC_TRANSFER_MODE=streaming', () =>
    withScenario({ prefix: 'nopull', serverSideCopy: true, settings: { SYNC_TRANSFER_MODE: 'streaming' } }, async (s) => {
      await putSource(s, 'a.bin', pseudoRandomBytes(1000, 3));
      const { report } = await runJson('azure', s.settings);
      expect(report.targets[0]).toMatchObject({ mode: 'streaming', copied: 1, bytesStreamed: 1000 });
      expect(s.copyProxy!.pulls()).toEqual([]);
    }));

  it('fails each object instead of streaming when SYNC_TRANSFER_MODE=server-side and Azure refuses', () =>
    withScenario({ prefix: 'forced', serverSideCopy: true, settings: { SYNC_TRANSFER_MODE: 'server-side' } }, async (s) => {
      await putSource(s, 'a.bin', 'a');
      s.copyProxy!.setRefuse(true);
      const { exitCode, report } = await runJson('azure', s.settings);
      expect(exitCode).toBe(1);
      expect(report.targets[0]).toMatchObject({ failed: 1, bytesStreamed: 0 });
      expect(report.targets[0]!.failures[0]!.message).toContain('CannotVerifyCopySource');
      expect(bytesReadByProcess(s)).toBe(0);
    }));
});

describe('streaming', () => {
  it('reads an object once from S3 when it streams to both targets', () =>
    withScenario({ prefix: 'once', settings: { SYNC_TRANSFER_MODE: 'streaming', SYNC_SINGLE_REQUEST_MAX_MB: '5' } }, async (s) => {
      const size = 20 * MIB + 7;
      await putSource(s, 'big.bin', pseudoRandomBytes(size, 4));
      const { exitCode, report } = await runJson('all', s.settings);
      expect(exitCode).toBe(0);
      expect(report.targets.map((target) => target.bytesStreamed)).toEqual([size, size]);
      expect(s.sourceProxy.countBy('GetObject')).toBe(1);
      expect(bytesReadByProcess(s)).toBe(size);
      // The same parts to both: as many blocks at Azure as parts at OCI.
      const parts = Math.ceil(size / DEFAULT_TRANSFER_TUNING.partSize);
      expect(parts).toBeGreaterThan(1);
      expect(s.azureProxy.countBy('PutBlock')).toBe(parts);
      expect(s.ociProxy.countBy('UploadPart')).toBe(parts);
      const state = await readAll(s);
      expect(mirrorDifferences(state.source, state.azure)).toEqual([]);
      expect(mirrorDifferences(state.source, state.oci)).toEqual([]);
    }));

  it('resumes a source read that breaks mid-object from where it stopped', () =>
    withScenario({ prefix: 'resume', settings: { SYNC_TRANSFER_MODE: 'streaming' } }, async (s) => {
      const size = 12 * MIB;
      await putSource(s, 'big.bin', pseudoRandomBytes(size, 5));
      // The reset comes 300 ms after the 3 MiB: time for the run to read them (a reset discards what the client has not read).
      s.sourceProxy.setFaults({ rate: 1, kinds: ['reset-mid-body'], onlyOperations: ['GetObject'], resetAfterBytes: 3 * MIB, resetDelayMs: 300, maxFaults: 1 });
      const { exitCode } = await runJson('oci', s.settings);
      expect(exitCode).toBe(0);
      const gets = s.sourceProxy.requests().filter((request) => request.operation === 'GetObject');
      expect(gets).toHaveLength(2);
      // The second read asked only for the rest (a 206 range answer), not the whole object again.
      expect(gets[1]!.status).toBe(206);
      expect(gets[1]!.responseBytes).toBeLessThan(size);
      const state = await readAll(s);
      expect(mirrorDifferences(state.source, state.oci)).toEqual([]);
    }));
});
