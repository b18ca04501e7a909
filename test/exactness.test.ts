/**
 * Exact means exact: an overwrite in S3 is mirrored whatever its timing and size, on both targets.
 * OCI listings (S3 ListObjectsV2) carry no metadata, so OCI is decided by the copy record kept beside
 * the run lock (see docs/exactness.md, "How OCI stays exact"); Azure listings carry the recorded source ETag.
 */
import { createHash } from 'node:crypto';
import { CompleteMultipartUploadCommand, CreateMultipartUploadCommand, HeadObjectCommand, UploadPartCommand } from '@aws-sdk/client-s3';
import { describe, expect, inject, it } from 'vitest';
import { runJson, targetOf } from './support/cli-run.ts';
import { blobServiceClientFor } from './support/emulators.ts';
import { withProxiedScenario, type ProxiedScenario, type ProxiedScenarioOptions } from './support/proxied-scenario.ts';
import { md5Hex, mirrorDifferences, nextSecond, pseudoRandomBytes, putS3Object, putSource, readAll, readBucket, readContainer, type Scenario } from './support/scenario.ts';

const emulators = inject('emulators');
const MIB = 1024 * 1024;
/** The blob that holds OCI's copy record, beside its run lock. */
const recordBlobName = (s: Scenario): string => `oci/${new URL(s.settings['OCI_S3_ENDPOINT']!).host}/${s.ociBucket}.copies`;
const withProxied = (options: ProxiedScenarioOptions, test: (s: ProxiedScenario) => Promise<void>): Promise<void> => withProxiedScenario(emulators, options, test);
const headsAtOci = (s: ProxiedScenario): number => s.ociProxy.countBy('HeadObject');
const recordBlob = (s: Scenario) => blobServiceClientFor(emulators.azurite).getContainerClient('artifacts-sync-locks').getBlockBlobClient(recordBlobName(s));
const ociContentType = async (s: Scenario, key: string): Promise<string | undefined> => (await s.s3.send(new HeadObjectCommand({ Bucket: s.ociBucket, Key: key }))).ContentType;

/**
 * A metadata-only change at the source: on S3 a CopyObject onto itself with new headers keeps a
 * single-part object's ETag and moves its LastModified. s3rver's CopyObject onto itself keeps
 * LastModified, so the same change is made by writing the same bytes again with a new Content-Type.
 */
async function changeSourceMetadata(s: Scenario, key: string, body: Uint8Array, contentType: string): Promise<void> {
  const etag = async (): Promise<string | undefined> => (await s.s3.send(new HeadObjectCommand({ Bucket: s.sourceBucket, Key: key }))).ETag;
  const before = await etag();
  await nextSecond();
  await putSource(s, key, body, contentType);
  expect(await etag()).toBe(before);
}

describe('same-size overwrites', () => {
  it('20 same-size overwrites made right after a run are all mirrored by the next run, on both targets', () => withProxied({ prefix: 'overwrites' }, async (s) => {
    const keys = Array.from({ length: 20 }, (_, index) => `builds/${String(index).padStart(2, '0')}.bin`);
    for (const [index, key] of keys.entries()) await putSource(s, key, pseudoRandomBytes(2048, index + 1));
    expect((await runJson('all', s.settings)).exitCode).toBe(0);
    // Right away: most overwrites land in the same second as the copies (no waiting for a later second).
    for (const [index, key] of keys.entries()) await putSource(s, key, pseudoRandomBytes(2048, index + 101));

    const { exitCode, report } = await runJson('all', s.settings);
    expect(exitCode).toBe(0);
    expect(targetOf(report, 'azure')).toMatchObject({ replaced: 20, unchanged: 0 });
    expect(targetOf(report, 'oci')).toMatchObject({ replaced: 20, unchanged: 0 });
    const state = await readAll(s);
    expect(mirrorDifferences(state.source, state.azure)).toEqual([]);
    expect(mirrorDifferences(state.source, state.oci)).toEqual([]);
    const again = await runJson('all', s.settings);
    expect(again.report.targets.map((entry) => [entry.copied, entry.replaced, entry.unchanged])).toEqual([[0, 0, 20], [0, 0, 20]]);
    expect(headsAtOci(s)).toBe(0);
  }));
});

describe('overwrites during a transfer', () => {
  it('a same-size overwrite of a 24 MiB object while it is being written is mirrored by the next run, and no target ever holds a mix of versions', () =>
    withProxied({ prefix: 'during', standIns: true, settings: { SYNC_TRANSFER_MODE: 'streaming', SYNC_SINGLE_REQUEST_MAX_MB: '5' } }, async (s) => {
      const size = 24 * MIB;
      const first = pseudoRandomBytes(size, 1);
      const second = pseudoRandomBytes(size, 2);
      await putSource(s, 'big.bin', first);
      // OCI's CompleteMultipartUpload waits at the door (every part read and written); Azure's commit is held 2 s by the proxy.
      const held = s.ociStandIn!.holdNext('CompleteMultipartUpload');
      s.azureProxy.setFaults({ rate: 1, kinds: ['stall'], stallMs: 2000, onlyOperations: ['PutBlockList'], maxFaults: 1 });
      const running = runJson('all', s.settings);
      const commit = await held;
      // The overwrite lands after our read and before our commit: at OCI the copy is dated after the new version.
      await putSource(s, 'big.bin', second);
      commit.release();
      const { exitCode } = await running;
      expect(exitCode).toBe(0);
      await s.ociStandIn!.idle();
      const whole = [md5Hex(first), md5Hex(second)];
      const afterRun = { oci: (await readBucket(s, s.ociBucket)).get('big.bin'), azure: (await readContainer(s)).get('big.bin') };
      expect(whole).toContain(afterRun.oci?.md5);
      expect(whole).toContain(afterRun.azure?.md5);

      const next = await runJson('all', s.settings);
      expect(next.exitCode).toBe(0);
      await s.ociStandIn!.idle();
      expect(next.report.targets.map((entry) => entry.replaced + entry.unchanged)).toEqual([1, 1]);
      const state = await readAll(s);
      expect(state.source.get('big.bin')?.md5).toBe(md5Hex(second));
      expect(mirrorDifferences(state.source, state.azure)).toEqual([]);
      expect(mirrorDifferences(state.source, state.oci)).toEqual([]);
      // And it stays: a third run finds both current, without a HEAD.
      s.ociProxy.reset();
      const third = await runJson('all', s.settings);
      expect(third.report.targets.map((entry) => [entry.replaced, entry.unchanged])).toEqual([[0, 1], [0, 1]]);
      expect(headsAtOci(s)).toBe(0);
    }), 120_000);

  it('a multipart overwrite started at the source before our commit and completed after it is mirrored by the next run', () =>
    withProxied({ prefix: 'initiated', standIns: true, settings: { SYNC_TRANSFER_MODE: 'streaming', SYNC_SINGLE_REQUEST_MAX_MB: '5' } }, async (s) => {
      const size = 12 * MIB;
      await putSource(s, 'big.bin', pseudoRandomBytes(size, 3));
      const held = s.ociStandIn!.holdNext('CompleteMultipartUpload');
      const running = runJson('oci', s.settings);
      const commit = await held;
      // S3 dates a multipart upload at its initiation: here, before our copy is committed.
      const upload = await s.s3.send(new CreateMultipartUploadCommand({ Bucket: s.sourceBucket, Key: 'big.bin' }));
      const parts = [pseudoRandomBytes(6 * MIB, 4), pseudoRandomBytes(6 * MIB, 5)];
      const etags: string[] = [];
      for (const [index, body] of parts.entries()) {
        etags.push((await s.s3.send(new UploadPartCommand({ Bucket: s.sourceBucket, Key: 'big.bin', UploadId: upload.UploadId, PartNumber: index + 1, Body: body }))).ETag!);
      }
      commit.release();
      expect((await running).exitCode).toBe(0);
      await s.s3.send(new CompleteMultipartUploadCommand({ Bucket: s.sourceBucket, Key: 'big.bin', UploadId: upload.UploadId, MultipartUpload: { Parts: etags.map((ETag, index) => ({ ETag, PartNumber: index + 1 })) } }));

      const next = await runJson('oci', s.settings);
      expect(targetOf(next.report, 'oci')).toMatchObject({ replaced: 1, complete: true });
      await s.ociStandIn!.idle();
      const state = await readAll(s);
      expect(mirrorDifferences(state.source, state.oci)).toEqual([]);
    }), 120_000);
});

describe('writes at OCI by others', () => {
  it('an object written at OCI by someone else with the same size after our copy is replaced by the next run', () =>
    withProxied({ prefix: 'foreign' }, async (s) => {
      await putSource(s, 'tool.bin', pseudoRandomBytes(4096, 1));
      await putSource(s, 'other.bin', pseudoRandomBytes(4096, 2));
      expect((await runJson('all', s.settings)).exitCode).toBe(0);
      // Same size, newer than our copy, no recorded source: the timestamp rule alone would keep it.
      await putS3Object(s, s.ociBucket, 'tool.bin', pseudoRandomBytes(4096, 3));
      s.ociProxy.reset();
      const { exitCode, report } = await runJson('all', s.settings);
      expect(exitCode).toBe(0);
      expect(targetOf(report, 'oci')).toMatchObject({ replaced: 1, unchanged: 1 });
      expect(targetOf(report, 'azure')).toMatchObject({ replaced: 0, unchanged: 2 });
      // One HEAD, for the one object whose ETag the record does not know.
      expect(headsAtOci(s)).toBe(1);
      const state = await readAll(s);
      expect(mirrorDifferences(state.source, state.oci)).toEqual([]);
    }));

  it('copies an event worker wrote (recording their source, unknown to the record) cost one HEAD each, once', () =>
    withProxied({ prefix: 'worker' }, async (s) => {
      const keys = Array.from({ length: 10 }, (_, index) => `w/${index}.bin`);
      for (const [index, key] of keys.entries()) await putSource(s, key, pseudoRandomBytes(1000, index + 1));
      // Another writer: the same tool with a record kept elsewhere (another lock container), as an event worker keeps none.
      expect((await runJson('oci', { ...s.settings, SYNC_LOCK_CONTAINER: 'other-writer' })).exitCode).toBe(0);
      s.ociProxy.reset();
      const first = await runJson('oci', s.settings);
      expect(targetOf(first.report, 'oci')).toMatchObject({ copied: 0, replaced: 0, unchanged: 10 });
      expect(headsAtOci(s)).toBe(10);
      expect(targetOf(first.report, 'oci').notes).toContainEqual(expect.stringContaining('looked at 10 object(s) with one HEAD each'));
      s.ociProxy.reset();
      const second = await runJson('oci', s.settings);
      expect(targetOf(second.report, 'oci')).toMatchObject({ unchanged: 10 });
      expect(headsAtOci(s)).toBe(0);
    }));
});

describe('looks that fail', () => {
  it('an object whose HEAD fails is copied again, never taken as current, and the run says so', () =>
    withProxied({ prefix: 'headfail', settings: { SYNC_RETRY_ATTEMPTS: '1' } }, async (s) => {
      const keys = Array.from({ length: 5 }, (_, index) => `h/${index}.bin`);
      for (const [index, key] of keys.entries()) await putSource(s, key, pseudoRandomBytes(300, index + 1));
      // Copies the record does not know (written under another lock container's record).
      expect((await runJson('oci', { ...s.settings, SYNC_LOCK_CONTAINER: 'other-writer' })).exitCode).toBe(0);
      s.ociProxy.setFaults({ rate: 1, kinds: ['500'], onlyOperations: ['HeadObject'] });
      const { exitCode, report } = await runJson('oci', s.settings);
      s.ociProxy.setFaults(null);
      expect(exitCode).toBe(0);
      const oci = targetOf(report, 'oci');
      expect(oci).toMatchObject({ replaced: 5, unchanged: 0, complete: true });
      expect(oci.notes).toContainEqual('5 HEAD(s) failed: those objects are copied again');
      // Our copies are in the record now: no HEAD needed.
      s.ociProxy.reset();
      expect(targetOf((await runJson('oci', s.settings)).report, 'oci')).toMatchObject({ unchanged: 5 });
      expect(headsAtOci(s)).toBe(0);
    }));
});

describe('the deadline', () => {
  it('no HEAD starts after the deadline stops new work: those objects are left to the next run, which looks at them', () =>
    withProxied({ prefix: 'deadline' }, async (s) => {
      const keys = Array.from({ length: 4 }, (_, index) => `d/${index}.bin`);
      for (const [index, key] of keys.entries()) await putSource(s, key, pseudoRandomBytes(300, index + 1));
      expect((await runJson('oci', { ...s.settings, SYNC_LOCK_CONTAINER: 'other-writer' })).exitCode).toBe(0);
      // A 20 s deadline stops new work at 15 s; the OCI listing is held 16 s, so it ends after that.
      s.ociProxy.setFaults({ rate: 1, kinds: ['stall'], stallMs: 16_000, onlyOperations: ['ListObjectsV2'], maxFaults: 1 });
      s.ociProxy.reset();
      const late = await runJson('oci', { ...s.settings, SYNC_DEADLINE_SECONDS: '20' });
      s.ociProxy.setFaults(null);
      const oci = targetOf(late.report, 'oci');
      expect(late.report.stoppedEarly).toContain('deadline');
      expect(oci).toMatchObject({ replaced: 0, unchanged: 0, deferred: 4, complete: false });
      expect(oci.notes).toContainEqual('4 object(s) not looked at before the deadline: left to the next run');
      expect(headsAtOci(s)).toBe(0);

      const next = await runJson('oci', s.settings);
      expect(targetOf(next.report, 'oci')).toMatchObject({ unchanged: 4, complete: true });
      expect(headsAtOci(s)).toBe(4);
    }), 90_000);
});

describe('metadata-only changes on OCI', () => {
  it('a metadata-only change at the source (same ETag, later LastModified) reaches OCI by the next run, decided by the copy record without a HEAD', () =>
    withProxied({ prefix: 'metaonly' }, async (s) => {
      const keys = ['m/0.js', 'm/1.js', 'm/2.js'];
      const bodies = keys.map((_, index) => pseudoRandomBytes(300, index + 1));
      for (const [index, key] of keys.entries()) await putSource(s, key, bodies[index]!, 'text/plain');
      expect((await runJson('all', s.settings)).exitCode).toBe(0);
      await changeSourceMetadata(s, 'm/1.js', bodies[1]!, 'application/javascript');

      s.ociProxy.reset();
      const { exitCode, report } = await runJson('all', s.settings);
      expect(exitCode).toBe(0);
      expect(targetOf(report, 'oci')).toMatchObject({ replaced: 1, unchanged: 2, complete: true });
      expect(targetOf(report, 'azure')).toMatchObject({ replaced: 1, unchanged: 2 });
      expect(headsAtOci(s)).toBe(0);
      expect(await ociContentType(s, 'm/1.js')).toBe('application/javascript');
      expect(targetOf((await runJson('all', s.settings)).report, 'oci')).toMatchObject({ replaced: 0, unchanged: 3 });
    }));

  it('a record of version 1 (no source LastModified) is not trusted: every object is looked at once, a metadata-only change is still found, and the record is rewritten', () =>
    withProxied({ prefix: 'recordv1' }, async (s) => {
      const keys = ['v/0.js', 'v/1.js', 'v/2.js', 'v/3.js'];
      const bodies = keys.map((_, index) => pseudoRandomBytes(400, index + 7));
      for (const [index, key] of keys.entries()) await putSource(s, key, bodies[index]!, 'text/plain');
      expect((await runJson('all', s.settings)).exitCode).toBe(0);
      // Store the record as version 1 wrote it: three fields an entry, a sound checksum.
      const record = recordBlob(s);
      const [headerLine, ...rows] = (await record.downloadToBuffer()).toString('utf8').split('\n');
      const body = rows.map((row) => JSON.stringify((JSON.parse(row) as unknown[]).slice(0, 3))).join('\n');
      const header = { ...(JSON.parse(headerLine!) as Record<string, unknown>), version: 1, sha256: createHash('sha256').update(body).digest('hex') };
      const old = `${JSON.stringify(header)}\n${body}`;
      await record.upload(old, Buffer.byteLength(old));
      await changeSourceMetadata(s, 'v/2.js', bodies[2]!, 'application/javascript');

      s.ociProxy.reset();
      const { exitCode, report } = await runJson('oci', s.settings);
      expect(exitCode).toBe(0);
      const oci = targetOf(report, 'oci');
      expect(oci).toMatchObject({ replaced: 1, unchanged: 3, complete: true });
      expect(oci.notes).toContainEqual(expect.stringMatching(/is not trusted \(it is of version 1, which keeps no source LastModified/));
      expect(headsAtOci(s)).toBe(4);
      expect(await ociContentType(s, 'v/2.js')).toBe('application/javascript');
      s.ociProxy.reset();
      expect(targetOf((await runJson('oci', s.settings)).report, 'oci')).toMatchObject({ unchanged: 4, notes: [] });
      expect(headsAtOci(s)).toBe(0);
    }));
});

describe('a copy record that cannot be trusted', () => {
  it('a corrupt record takes no object as current on its word: every object is looked at, overwrites are found, and the record is rewritten', () =>
    withProxied({ prefix: 'corrupt' }, async (s) => {
      const keys = Array.from({ length: 8 }, (_, index) => `c/${index}.bin`);
      for (const [index, key] of keys.entries()) await putSource(s, key, pseudoRandomBytes(512, index + 1));
      expect((await runJson('all', s.settings)).exitCode).toBe(0);
      for (const [index, key] of keys.slice(0, 3).entries()) await putSource(s, key, pseudoRandomBytes(512, index + 50));
      // Forge the record so it claims those copies are current (the new source ETags), without fixing its checksum.
      const record = blobServiceClientFor(emulators.azurite).getContainerClient('artifacts-sync-locks').getBlockBlobClient(recordBlobName(s));
      let text = (await record.downloadToBuffer()).toString('utf8');
      for (const key of keys.slice(0, 3)) {
        const newEtag = (await s.s3.send(new HeadObjectCommand({ Bucket: s.sourceBucket, Key: key }))).ETag!.replace(/"/g, '');
        const entry = new RegExp(`(${JSON.stringify(key).replace(/[/.]/g, '\\$&')},"[^"]*",")[^"]*"`);
        expect(text).toMatch(entry);
        text = text.replace(entry, `$1${newEtag}"`);
      }
      await record.upload(text, Buffer.byteLength(text));

      s.ociProxy.reset();
      const { exitCode, report } = await runJson('oci', s.settings);
      expect(exitCode).toBe(0);
      const oci = targetOf(report, 'oci');
      expect(oci).toMatchObject({ replaced: 3, unchanged: 5, complete: true });
      expect(oci.notes).toContainEqual(expect.stringMatching(/copy record .* is not trusted \(its entries do not match the checksum/));
      expect(headsAtOci(s)).toBe(8);
      const state = await readAll(s);
      expect(mirrorDifferences(state.source, state.oci)).toEqual([]);
      // Rewritten, sound: the next run needs no HEAD.
      s.ociProxy.reset();
      expect(targetOf((await runJson('oci', s.settings)).report, 'oci')).toMatchObject({ unchanged: 8, notes: [] });
      expect(headsAtOci(s)).toBe(0);
    }));
});

describe('without a place to keep the record', () => {
  it('an OCI-only run with no Azure storage stays exact by looking at every same-size object, and says what it cost', () =>
    withProxied({ prefix: 'norecord' }, async (s) => {
      const settings = Object.fromEntries(Object.entries(s.settings).filter(([name]) => !name.startsWith('AZURE_')));
      const keys = Array.from({ length: 6 }, (_, index) => `n/${index}.bin`);
      for (const [index, key] of keys.entries()) await putSource(s, key, pseudoRandomBytes(700, index + 1));
      expect((await runJson('oci', settings)).exitCode).toBe(0);
      for (const [index, key] of keys.entries()) await putSource(s, key, pseudoRandomBytes(700, index + 20));
      s.ociProxy.reset();
      const { exitCode, report } = await runJson('oci', settings);
      expect(exitCode).toBe(0);
      expect(targetOf(report, 'oci')).toMatchObject({ replaced: 6, unchanged: 0 });
      expect(headsAtOci(s)).toBe(6);
      expect(targetOf(report, 'oci').notes).toContainEqual(expect.stringContaining('looked at 6 object(s) with one HEAD each: OCI listings carry no metadata and no copy record is kept'));
      const state = await readAll(s);
      expect(mirrorDifferences(state.source, state.oci)).toEqual([]);
    }));
});
