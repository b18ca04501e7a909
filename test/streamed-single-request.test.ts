/**
 * Objects up to SYNC_SINGLE_REQUEST_MAX_MB whose source ETag is their MD5 go to each target in one request, streamed
 * as they are read (one source read for both targets), with the source's MD5 as their Content-MD5: the target checks
 * the bytes against it. Azurite checks a Put Blob's Content-MD5 itself; s3rver does not, so OCI is reached through the
 * S3 stand-in (./support/s3-stand-in.ts), which refuses a PutObject whose body does not match it, as S3 and OCI do.
 */
import { afterAll, describe, expect, inject, it } from 'vitest';
import { runJson, targetOf } from './support/cli-run.ts';
import { md5Hex, mirrorDifferences, pseudoRandomBytes, putBlob, putS3Object, putSource, readAll } from './support/scenario.ts';
import { createStandInScenario, type StandInScenario } from './support/stand-in-scenario.ts';

const emulators = inject('emulators');
const MIB = 1024 * 1024;
const closers: (() => Promise<void>)[] = [];
afterAll(async () => {
  await Promise.all(closers.map((close) => close()));
});

async function scenario(prefix: string, settings: Record<string, string> = {}): Promise<StandInScenario> {
  const s = await createStandInScenario(emulators, { prefix, settings: { SYNC_TRANSFER_MODE: 'streaming', ...settings } });
  closers.push(() => s.close());
  return s;
}

describe.concurrent('one streamed request per object', () => {
  it('an object above the part size goes to both targets in one request each, read once from the source, with the source MD5 checked by the targets', async () => {
    const s = await scenario('streamed');
    const large = pseudoRandomBytes(12 * MIB, 21);
    await putSource(s, 'large.bin', large);
    await putSource(s, 'small.bin', pseudoRandomBytes(300_000, 22));

    const run = await runJson('all', s.settings);

    expect(run.exitCode, run.stderr).toBe(0);
    for (const name of ['azure', 'oci'] as const) expect(targetOf(run.report, name)).toMatchObject({ copied: 2, failed: 0, bytesStreamed: 12 * MIB + 300_000 });
    // One read of each object serves both targets.
    expect(s.sourceProxy.countBy('GetObject')).toBe(2);
    const oci = s.ociProxy.requests();
    expect(oci.filter((request) => request.operation === 'CreateMultipartUpload' || request.operation === 'UploadPart')).toEqual([]);
    const ociPuts = oci.filter((request) => request.operation === 'PutObject');
    expect(ociPuts.map((request) => [request.status, request.contentMd5MatchesBody, request.payloadHash])).toEqual([
      [200, true, 'UNSIGNED-PAYLOAD'],
      [200, true, 'UNSIGNED-PAYLOAD'],
    ]);
    const azure = s.azureProxy.requests();
    expect(azure.filter((request) => request.operation === 'PutBlock' || request.operation === 'PutBlockList')).toEqual([]);
    // (The run's own state blobs, lock and copy record, live in another container.)
    expect(azure.filter((request) => request.operation === 'PutBlob' && request.path.includes(`/${s.container}/`)).map((request) => request.status)).toEqual([201, 201]);
    const state = await readAll(s);
    expect(mirrorDifferences(state.source, state.azure)).toEqual([]);
    expect(mirrorDifferences(state.source, state.oci)).toEqual([]);
    expect(state.oci.get('large.bin')?.md5).toBe(md5Hex(large));
  });

  it('bytes that do not match the source MD5 are refused by both targets, which keep what they had; the failure says the source bytes were at fault', async () => {
    const s = await scenario('streamed-corrupt');
    const previous = pseudoRandomBytes(2 * MIB, 23);
    await putSource(s, 'bad.bin', pseudoRandomBytes(12 * MIB, 24));
    await putBlob(s, 'bad.bin', previous);
    await putS3Object(s, s.ociBucket, 'bad.bin', previous);
    s.sourceStandIn!.setCorruptReads(['bad.bin']);

    const { exitCode, report } = await runJson('all', s.settings);

    expect(exitCode).toBe(1);
    for (const name of ['azure', 'oci'] as const) {
      const target = targetOf(report, name);
      expect(target).toMatchObject({ replaced: 0, failed: 1 });
      const refusal = name === 'azure' ? String.raw`azure:\/\/\S+ refused them \(400 Md5Mismatch\)` : String.raw`oci:\/\/\S+ refused them \(400 BadDigest\)`;
      expect(target.failures[0]!.message).toMatch(new RegExp(String.raw`^read failed on s3:\/\/.* key "bad\.bin": the bytes read do not have the MD5 the source ETag says \(\S+\): ${refusal}; nothing was written$`));
    }
    const state = await readAll(s);
    expect(state.azure.get('bad.bin')?.md5).toBe(md5Hex(previous));
    expect(state.oci.get('bad.bin')?.md5).toBe(md5Hex(previous));

    s.sourceStandIn!.setCorruptReads([]);
    expect((await runJson('all', s.settings)).exitCode).toBe(0);
    const healed = await readAll(s);
    expect(mirrorDifferences(healed.source, healed.azure)).toEqual([]);
    expect(mirrorDifferences(healed.source, healed.oci)).toEqual([]);
  });

  it('a target whose request fails is sent the object again from a fresh read, while the other target takes it from the first read', async () => {
    const s = await scenario('streamed-retry');
    const large = pseudoRandomBytes(12 * MIB, 25);
    await putSource(s, 'large.bin', large);
    s.ociProxy.setFaults({ rate: 1, kinds: ['500'], onlyOperations: ['PutObject'], maxFaults: 1 });

    const run = await runJson('all', s.settings);

    expect(run.exitCode, run.stderr).toBe(0);
    expect(s.ociProxy.requests().filter((request) => request.operation === 'PutObject').map((request) => request.status)).toEqual([500, 200]);
    // The first read fed Azure and OCI's failed attempt; OCI's second attempt read the object again.
    expect(s.sourceProxy.countBy('GetObject')).toBe(2);
    const state = await readAll(s);
    expect(state.azure.get('large.bin')?.md5).toBe(md5Hex(large));
    expect(state.oci.get('large.bin')?.md5).toBe(md5Hex(large));
  });

  it('a service that refuses unsigned payloads gets the object in signed parts in the same run, since a stream cannot be signed', async () => {
    const s = await scenario('streamed-unsigned-refused', { SYNC_PART_SIZE_MB: '5' });
    const large = pseudoRandomBytes(12 * MIB, 28);
    await putSource(s, 'large.bin', large);
    s.ociProxy.setRefuseUnsignedPayload(true);

    const run = await runJson('oci', s.settings);

    expect(run.exitCode, run.stderr).toBe(0);
    const uploads = s.ociProxy.requests().filter((request) => request.operation === 'PutObject' || request.operation === 'UploadPart');
    expect(uploads.map((request) => [request.operation, request.status, request.payloadHash === 'UNSIGNED-PAYLOAD'])).toEqual([
      ['PutObject', 400, true],
      ['UploadPart', 200, false],
      ['UploadPart', 200, false],
      ['UploadPart', 200, false],
    ]);
    expect((await readAll(s)).oci.get('large.bin')?.md5).toBe(md5Hex(large));
  });

  it.each([
    ['3600', 'in one request', ['PutObject']],
    // 12 MiB would take 12 s at 1 MiB/s: more than the run has, so it goes in parts, which a stopping run keeps.
    ['8', 'in parts', ['UploadPart', 'UploadPart', 'UploadPart']],
  ] as const)('under a deadline of %s s, an object goes %s: one request only when it would finish before the deadline even at 1 MiB/s', async (deadlineSeconds, _shape, expected) => {
    const s = await scenario(`streamed-deadline-${deadlineSeconds}`, { SYNC_DEADLINE_SECONDS: deadlineSeconds, SYNC_PART_SIZE_MB: '5' });
    await putSource(s, 'large.bin', pseudoRandomBytes(12 * MIB, 29));

    const run = await runJson('oci', s.settings);

    expect(run.exitCode, run.stderr).toBe(0);
    expect(s.ociProxy.requests().filter((request) => (request.operation === 'PutObject' || request.operation === 'UploadPart') && request.status === 200).map((request) => request.operation)).toEqual(expected);
    expect((await readAll(s)).oci.get('large.bin')?.md5).toBe(md5Hex(pseudoRandomBytes(12 * MIB, 29)));
  });

  it('an object above SYNC_SINGLE_REQUEST_MAX_MB goes in parts', async () => {
    const s = await scenario('streamed-limit', { SYNC_SINGLE_REQUEST_MAX_MB: '10', SYNC_PART_SIZE_MB: '5' });
    await putSource(s, 'eleven.bin', pseudoRandomBytes(11 * MIB, 26));
    await putSource(s, 'nine.bin', pseudoRandomBytes(9 * MIB, 27));

    expect((await runJson('oci', s.settings)).exitCode).toBe(0);

    const puts = s.ociProxy.requests().filter((request) => request.operation === 'PutObject' || request.operation === 'UploadPart');
    expect(puts.filter((request) => request.operation === 'UploadPart').map((request) => decodeURIComponent(request.path).endsWith('/eleven.bin'))).toEqual([true, true, true]);
    expect(puts.filter((request) => request.operation === 'PutObject').map((request) => decodeURIComponent(request.path).endsWith('/nine.bin'))).toEqual([true]);
    const state = await readAll(s);
    expect(mirrorDifferences(state.source, state.oci)).toEqual([]);
  });
});
