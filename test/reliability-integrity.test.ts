/**
 * Integrity: bytes that do not match the source ETag's MD5 are never written. The source stand-in
 * (./support/s3-stand-in.ts) flips one byte in the middle of every GetObject body of the chosen keys,
 * keeping the length and the headers (the ETag still gives the MD5 of the true bytes).
 */
import http from 'node:http';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { s3Store } from '../src/stores/s3.ts';
import { runJson, targetOf } from './support/cli-run.ts';
import { listenOnLoopback } from './support/http-proxy.ts';
import { md5Hex, mirrorDifferences, pseudoRandomBytes, putBlob, putS3Object, putSource, readAll } from './support/scenario.ts';
import { createStandInScenario, type StandInScenario } from './support/stand-in-scenario.ts';

const emulators = inject('emulators');
const MIB = 1024 * 1024;
const closers: (() => Promise<void>)[] = [];
afterAll(async () => {
  await Promise.all(closers.map((close) => close()));
});

async function scenario(prefix: string, options: { serverSideCopy?: boolean; settings?: Record<string, string> }): Promise<StandInScenario> {
  const s = await createStandInScenario(emulators, { prefix, ...options });
  closers.push(() => s.close());
  return s;
}

describe.concurrent('integrity', () => {
  it('an object whose bytes do not match the source ETag is reported as a failure and written nowhere; the targets keep what they had', async () => {
    // Objects above 5 MiB in parts (./streamed-single-request.test.ts has the same for one streamed request).
    const s = await scenario('integrity', { settings: { SYNC_TRANSFER_MODE: 'streaming', SYNC_PART_SIZE_MB: '5', SYNC_SINGLE_REQUEST_MAX_MB: '5' } });
    const previous = pseudoRandomBytes(2 * MIB, 9);
    await putSource(s, 'ok.txt', 'fine');
    await putSource(s, 'bad-small.bin', pseudoRandomBytes(100_000, 1));
    // 12 MiB: three 5 MiB parts; the previous copy at both targets must survive.
    await putSource(s, 'bad-big.bin', pseudoRandomBytes(12 * MIB, 2));
    await putBlob(s, 'bad-big.bin', previous);
    await putS3Object(s, s.ociBucket, 'bad-big.bin', previous);
    s.sourceStandIn.setCorruptReads(['bad-small.bin', 'bad-big.bin']);

    const { exitCode, report } = await runJson('all', s.settings);

    expect(exitCode).toBe(1);
    for (const name of ['azure', 'oci'] as const) {
      const target = targetOf(report, name);
      expect(target).toMatchObject({ copied: 1, replaced: 0, failed: 2 });
      expect(target.failures.map((failure) => [failure.operation, failure.key])).toEqual(
        expect.arrayContaining([
          ['copy', 'bad-small.bin'],
          ['replace', 'bad-big.bin'],
        ]),
      );
      const messages = Object.fromEntries(target.failures.map((failure) => [failure.key, failure.message]));
      // The large object is checked whole against the source MD5 here, before its commit.
      expect(messages['bad-big.bin']).toMatch(/^read failed on s3:\/\/.* key "bad-big\.bin": the bytes read have MD5 \S+, the source ETag says \S+; nothing was written$/);
      // The small one goes with the source's MD5 as its Content-MD5, and the target refuses bytes without it (OCI: the stand-in does as OCI does).
      const refusal = name === 'azure' ? String.raw`azure:\/\/\S+ refused them \(400 Md5Mismatch\)` : String.raw`oci:\/\/\S+ refused them \(400 BadDigest\)`;
      expect(messages['bad-small.bin']).toMatch(new RegExp(String.raw`^read failed on s3:\/\/.* key "bad-small\.bin": the bytes read do not have the MD5 the source ETag says \(\S+\): ${refusal}; nothing was written$`));
    }
    expect(s.sourceStandIn.requests().filter((request) => request.handling === 'corrupted').length).toBeGreaterThanOrEqual(2);
    const state = await readAll(s);
    for (const name of ['azure', 'oci'] as const) {
      expect(state[name].has('bad-small.bin'), name).toBe(false);
      expect(state[name].get('bad-big.bin')?.md5, name).toBe(md5Hex(previous));
      expect(state[name].has('ok.txt'), name).toBe(true);
    }
    // The multipart upload at OCI was aborted, not left behind.
    expect(s.ociStandIn.uploads(s.ociBucket).map((upload) => [upload.key, upload.state])).toEqual([['bad-big.bin', 'aborted']]);

    // Once the bytes arrive intact, the next run completes the mirror.
    s.sourceStandIn.setCorruptReads([]);
    expect((await runJson('all', s.settings)).exitCode).toBe(0);
    const healed = await readAll(s);
    expect(mirrorDifferences(healed.source, healed.azure)).toEqual([]);
    expect(mirrorDifferences(healed.source, healed.oci)).toEqual([]);
  });

  it('uploads to OCI are signed without a hash of their bodies: a single upload through the Content-MD5 it carries, parts of an object checked whole against the source MD5 without digests of their own', async () => {
    const s = await scenario('integrity-signing', { settings: { SYNC_PART_SIZE_MB: '5', SYNC_SINGLE_REQUEST_MAX_MB: '5' } });
    await putSource(s, 'small.bin', pseudoRandomBytes(300_000, 4));
    // 12 MiB: three 5 MiB parts.
    await putSource(s, 'large.bin', pseudoRandomBytes(12 * MIB, 5));

    expect((await runJson('oci', s.settings)).exitCode).toBe(0);

    const uploads = s.ociProxy.requests().filter((request) => request.operation === 'PutObject' || request.operation === 'UploadPart');
    expect(uploads.map((request) => request.operation).sort()).toEqual(['PutObject', 'UploadPart', 'UploadPart', 'UploadPart']);
    for (const upload of uploads) expect(upload).toMatchObject({ status: 200, payloadHash: 'UNSIGNED-PAYLOAD' });
    // The single upload: the signature covers the Content-MD5 (so the bytes) and the unsigned-payload marker.
    const single = uploads.find((request) => request.operation === 'PutObject')!;
    expect(single.contentMd5MatchesBody).toBe(true);
    expect(single.signedHeaders).toEqual(expect.arrayContaining(['content-md5', 'x-amz-content-sha256']));
    // The parts: no digest (the whole object was checked against the source MD5 before the commit: one hash per byte).
    for (const part of uploads.filter((request) => request.operation === 'UploadPart')) expect(part.contentMd5MatchesBody).toBeNull();
    // Requests without a Content-MD5 keep a signed payload.
    const completes = s.ociProxy.requests().filter((request) => request.operation === 'CompleteMultipartUpload');
    expect(completes.map((request) => request.payloadHash)).toEqual([expect.stringMatching(/^[0-9a-f]{64}$/)]);
    const state = await readAll(s);
    expect(mirrorDifferences(state.source, state.oci)).toEqual([]);
  });

  it('signs payloads for the rest of the run when a service refuses an unsigned one', async () => {
    const s = await scenario('integrity-unsigned-refused', { settings: { SYNC_PART_SIZE_MB: '5', SYNC_CONCURRENCY: '1', SYNC_SINGLE_REQUEST_MAX_MB: '5' } });
    await putSource(s, 'a-small.bin', pseudoRandomBytes(300_000, 6));
    await putSource(s, 'b-large.bin', pseudoRandomBytes(12 * MIB, 7));
    s.ociProxy.setRefuseUnsignedPayload(true);

    const run = await runJson('oci', s.settings);
    expect(run.exitCode, run.stderr).toBe(0);

    const uploads = s.ociProxy.requests().filter((request) => request.operation === 'PutObject' || request.operation === 'UploadPart');
    // The uploads already in flight (the large object's first parts, largest first) are refused once
    // each and sent again signed; every upload after that is signed from the start.
    const refused = uploads.filter((request) => request.status === 400);
    expect(refused.length).toBeGreaterThanOrEqual(1);
    expect(refused.length).toBeLessThanOrEqual(3);
    for (const request of refused) expect(request.payloadHash).toBe('UNSIGNED-PAYLOAD');
    const written = uploads.filter((request) => request.status === 200);
    expect(written.map((request) => request.operation).sort()).toEqual(['PutObject', 'UploadPart', 'UploadPart', 'UploadPart']);
    for (const request of written) expect(request.payloadHash).toMatch(/^[0-9a-f]{64}$/);
    // Each was refused once: sent again, it went out signed. (The proxy logs arrivals: a part that went out
    // unsigned before the first refusal came back may arrive after another part's signed resend.)
    const refusedUploads = refused.map((request) => `${request.operation} ${request.query['partNumber'] ?? ''}`);
    expect(new Set(refusedUploads).size).toBe(refusedUploads.length);
    // The upload that started after them (the small object: one object at a time) went out signed the first time.
    expect(uploads.filter((request) => request.operation === 'PutObject')).toEqual([expect.objectContaining({ status: 200, payloadHash: expect.stringMatching(/^[0-9a-f]{64}$/) })]);
    const state = await readAll(s);
    expect(mirrorDifferences(state.source, state.oci)).toEqual([]);
  });

  it('on AWS, a body whose ETag is its MD5 is checked against that MD5 alone; any other body is read again through the SDK, against the checksum S3 sends', async () => {
    const body = Buffer.from('the bytes of an artifact');
    const etags: Record<string, string> = { 'single.bin': md5Hex(body), 'multipart.bin': `${md5Hex(body)}-2` };
    const checksumModes: (string | undefined)[] = [];
    // S3 as seen by the SDK with its default checksum settings: every answer carries a (here wrong) full-object CRC32.
    const server = http.createServer((req, res) => {
      checksumModes.push(req.headers['x-amz-checksum-mode'] as string | undefined);
      const key = new URL(req.url ?? '/', 'http://s3').pathname.split('/').pop() ?? '';
      res.writeHead(200, { etag: `"${etags[key]}"`, 'content-length': body.byteLength, 'x-amz-checksum-crc32': 'AAAAAA==', 'x-amz-checksum-type': 'FULL_OBJECT' });
      res.end(body);
    });
    const listener = await listenOnLoopback(server);
    closers.push(listener.closeNow);
    const source = s3Store({ label: 's3://aws', bucket: 'aws', region: 'us-east-1', endpoint: listener.url, credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' }, compatibilityMode: false, maxAttempts: 1 });
    const readAllOf = async (key: string): Promise<Buffer> => {
      const chunks: Uint8Array[] = [];
      for await (const chunk of (await source.read(key)).body) chunks.push(chunk);
      return Buffer.concat(chunks);
    };

    // The transfer compares these bytes with the ETag's MD5; the SDK does not hash them a second time.
    expect((await source.read('single.bin')).md5Base64).toBe(Buffer.from(etags['single.bin']!, 'hex').toString('base64'));
    expect(await readAllOf('single.bin')).toEqual(body);
    // No MD5 to compare with: the read is asked again through the SDK, whose checksum check catches the mismatch.
    await expect(readAllOf('multipart.bin')).rejects.toThrow(/checksum mismatch/i);
    // Reads go without the SDK's middleware stack (no checksum mode asked) unless the ETag is no MD5.
    expect(checksumModes).toEqual([undefined, undefined, undefined, 'ENABLED']);
  });

  it('Azure refuses a server-side pull whose bytes do not match the source MD5, and the failure is reported', async () => {
    const s = await scenario('integrity-pull', { serverSideCopy: true });
    await putSource(s, 'ok.txt', 'fine');
    await putSource(s, 'pulled.bin', pseudoRandomBytes(300_000, 3));
    s.sourceStandIn.setCorruptReads(['pulled.bin']);

    const { exitCode, report } = await runJson('azure', s.settings);

    expect(exitCode).toBe(1);
    const azure = targetOf(report, 'azure');
    expect(azure).toMatchObject({ mode: 'server-side', copied: 1, failed: 1, bytesStreamed: 0 });
    expect(azure.failures).toEqual([expect.objectContaining({ operation: 'copy', key: 'pulled.bin' })]);
    expect(azure.failures[0]!.message).toMatch(/copy from URL failed on azure:\/\/.* key "pulled\.bin" \(400 Md5Mismatch\)/);
    const state = await readAll(s);
    expect(state.azure.has('pulled.bin')).toBe(false);
    expect(state.azure.has('ok.txt')).toBe(true);
  });
});
