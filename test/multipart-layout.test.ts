/**
 * Objects the source holds as uploaded in parts (S3's ETag `hex(MD5(MD5(part 1) || ...))-N`, no MD5 of the
 * object) are copied cut as the source's upload was, and the MD5s of the parts read (each also the part's
 * Content-MD5) are combined and compared with that ETag before anything is committed.
 *
 * s3rver gives multipart objects a plain MD5 ETag and ignores `?partNumber=` and `If-Match`, so the source is
 * reached through the S3 stand-in (./support/s3-stand-in.ts, `setMultipartLayout`), which plays the stored
 * object as S3 shows one uploaded in parts of the given size. A small HTTP server plays AWS S3's answers for
 * the read path without the SDK's checksum check (the emulators run in compatibility mode, which never has it).
 */
import http from 'node:http';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { ByteBudget } from '../src/core/concurrency.ts';
import { DEFAULT_TRANSFER_TUNING, streamObject } from '../src/core/transfer.ts';
import type { ObjectInfo } from '../src/core/types.ts';
import { s3Store } from '../src/stores/s3.ts';
import { runJson, targetOf } from './support/cli-run.ts';
import { listenOnLoopback } from './support/http-proxy.ts';
import { md5Hex, mirrorDifferences, pseudoRandomBytes, putBlob, putS3Object, putSource, readAll } from './support/scenario.ts';
import type { MultipartLayout } from './support/s3-stand-in.ts';
import { createStandInScenario, type StandInScenario } from './support/stand-in-scenario.ts';

const emulators = inject('emulators');
const MIB = 1024 * 1024;
/** Our own cut (8 MiB parts) differs from the source's (5 MiB parts): 11 MiB and a bit is 2 parts of ours, 3 of the source's. */
const SETTINGS = { SYNC_TRANSFER_MODE: 'streaming', SYNC_PART_SIZE_MB: '8', SYNC_SINGLE_REQUEST_MAX_MB: '8' };
const SIZE = 11 * MIB + 12_345;
const closers: (() => Promise<void>)[] = [];
afterAll(async () => {
  await Promise.all(closers.map((close) => close()));
});

async function scenario(prefix: string, settings: Record<string, string> = {}): Promise<StandInScenario> {
  const s = await createStandInScenario(emulators, { prefix, settings: { ...SETTINGS, ...settings } });
  closers.push(() => s.close());
  return s;
}

/** The sizes of the parts each target received (OCI's UploadPart, Azure's Put Block), in part order. */
function partSizes(s: StandInScenario): { oci: number[]; azure: number[] } {
  const oci = s.ociProxy.requests().filter((request) => request.operation === 'UploadPart' && request.status === 200)
    .sort((a, b) => Number(a.query['partNumber']) - Number(b.query['partNumber'])).map((request) => request.requestBytes);
  const azure = s.azureProxy.requests().filter((request) => request.operation === 'PutBlock' && request.status === 201).map((request) => request.requestBytes).sort((a, b) => b - a);
  return { oci, azure };
}

/** The HEAD `?partNumber=1` requests the run sent to the source. */
function layoutQuestions(s: StandInScenario): { status: number | null; ifMatch: boolean }[] {
  return s.sourceProxy.requests().filter((request) => request.operation === 'HeadObject' && request.query['partNumber'] === '1').map((request) => ({ status: request.status, ifMatch: request.signedHeaders?.includes('if-match') ?? false }));
}

describe.concurrent('multipart-uploaded source objects', () => {
  it("a 3-part source object is copied to both targets in the source's own parts, proven against its multipart ETag", async () => {
    const s = await scenario('mp-layout');
    const body = pseudoRandomBytes(SIZE, 21);
    await putSource(s, 'big.bin', body);
    await putSource(s, 'small.txt', 'plain');
    s.sourceStandIn.setMultipartLayout({ 'big.bin': 5 * MIB });

    const run = await runJson('all', s.settings);

    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.report.complete).toBe(true);
    for (const name of ['azure', 'oci'] as const) expect(targetOf(run.report, name)).toMatchObject({ copied: 2, failed: 0, complete: true });
    // One HEAD ?partNumber=1 for the multipart object (none for the plain one), bound to its version by If-Match.
    expect(layoutQuestions(s)).toEqual([{ status: 206, ifMatch: true }]);
    // Cut as the source was: 5 MiB, 5 MiB and the rest (our own cut would be 8 MiB and the rest).
    const sourceLayout = [5 * MIB, 5 * MIB, SIZE - 10 * MIB];
    expect(partSizes(s)).toEqual({ oci: sourceLayout, azure: sourceLayout });
    // Each part carries its own MD5, which the target checks (the same MD5s prove the object against the source ETag).
    for (const part of s.ociProxy.requests().filter((request) => request.operation === 'UploadPart')) expect(part.contentMd5MatchesBody).toBe(true);
    const state = await readAll(s);
    expect(mirrorDifferences(state.source, state.azure)).toEqual([]);
    expect(mirrorDifferences(state.source, state.oci)).toEqual([]);

    // The copy records the multipart ETag the source lists: the next run finds nothing to do.
    const again = await runJson('all', s.settings);
    expect(again.exitCode, again.stderr).toBe(0);
    for (const name of ['azure', 'oci'] as const) expect(targetOf(again.report, name)).toMatchObject({ copied: 0, replaced: 0, unchanged: 2 });
  });

  it('bytes that do not give the source multipart ETag are committed nowhere; each target keeps its previous copy and the error says why, without a secret', async () => {
    const planted = { AWS_SECRET_ACCESS_KEY: 'planted-aws-secret-7f3a9c', OCI_SECRET_KEY: 'planted-oci-secret-41d2e8' };
    const s = await scenario('mp-layout-corrupt', planted);
    const previous = pseudoRandomBytes(2 * MIB, 8);
    await putSource(s, 'big.bin', pseudoRandomBytes(SIZE, 22));
    await putBlob(s, 'big.bin', previous);
    await putS3Object(s, s.ociBucket, 'big.bin', previous);
    s.sourceStandIn.setMultipartLayout({ 'big.bin': 5 * MIB });
    s.sourceStandIn.setCorruptReads(['big.bin']);

    const run = await runJson('all', s.settings);

    expect(run.exitCode).toBe(1);
    expect(run.report.complete).toBe(false);
    expect(s.sourceStandIn.requests().filter((request) => request.handling === 'corrupted').length).toBeGreaterThanOrEqual(1);
    for (const name of ['azure', 'oci'] as const) {
      const target = targetOf(run.report, name);
      expect(target).toMatchObject({ replaced: 0, failed: 1, complete: false });
      expect(target.failures).toEqual([expect.objectContaining({ operation: 'replace', key: 'big.bin' })]);
      expect(target.failures[0]!.message).toMatch(/^read failed on s3:\/\/.* key "big\.bin": the bytes read, cut as the source's 3 part\(s\), give the multipart ETag [0-9a-f]{32}-3, the source ETag is [0-9a-f]{32}-3; nothing was written$/);
    }
    // Each part reached the targets intact (its MD5 was the one of the bytes read), but nothing was committed.
    expect(partSizes(s).oci).toHaveLength(3);
    const state = await readAll(s);
    for (const name of ['azure', 'oci'] as const) expect(state[name].get('big.bin')?.md5, name).toBe(md5Hex(previous));
    expect(s.ociStandIn.uploads(s.ociBucket).map((upload) => upload.state)).toEqual(['aborted']);
    const printed = `${JSON.stringify(run.report)}\n${run.stderr}`;
    for (const secret of [planted.AWS_SECRET_ACCESS_KEY, planted.OCI_SECRET_KEY, emulators.azurite.accountKey]) expect(printed).not.toContain(secret);
  });

  /**
   * Cases where the source's cut is not followed: the object goes in our own 8 MiB parts, as before, exact. `status`: what
   * the layout question was answered with.
   */
  const ownCutCases: { readonly name: string; readonly layout: MultipartLayout; readonly partNumberIgnored?: boolean; readonly headFails?: boolean; readonly status: number }[] = [
    // 6 MiB, 5 MiB and the rest: part 1's size and the count do not describe the object.
    { name: 'a source object whose parts are not all of part 1 size', layout: [6 * MIB, 5 * MIB], status: 206 },
    { name: 'a source that answers HEAD ?partNumber=1 without a parts count', layout: 5 * MIB, partNumberIgnored: true, status: 200 },
    // The question is an optimisation: its failure (after the SDK's retries) never fails the object.
    { name: 'a source whose HEAD ?partNumber=1 fails', layout: 5 * MIB, headFails: true, status: 500 },
  ];
  for (const [index, { name, layout, partNumberIgnored, headFails, status }] of ownCutCases.entries()) {
    it(`${name}: its multipart object is copied in our own parts, as exact as ever`, async () => {
      const s = await scenario(`mp-layout-own-${index}`);
      await putSource(s, 'big.bin', pseudoRandomBytes(SIZE, 23 + index));
      s.sourceStandIn.setMultipartLayout({ 'big.bin': layout }, { partNumberIgnored: partNumberIgnored ?? false });
      if (headFails === true) s.sourceProxy.setFaults({ rate: 1, kinds: ['500'], onlyOperations: ['HeadObject'] });

      const run = await runJson('all', s.settings);

      expect(run.exitCode, run.stderr).toBe(0);
      const questions = layoutQuestions(s);
      expect(questions.length).toBeGreaterThanOrEqual(1);
      for (const question of questions) expect(question).toEqual({ status, ifMatch: true });
      expect(partSizes(s)).toEqual({ oci: [8 * MIB, SIZE - 8 * MIB], azure: [8 * MIB, SIZE - 8 * MIB] });
      const state = await readAll(s);
      expect(mirrorDifferences(state.source, state.azure)).toEqual([]);
      expect(mirrorDifferences(state.source, state.oci)).toEqual([]);
    });
  }

  it('a source whose parts look even by part 1, the count and the size, but are not: the ETag does not match the cut, the sizes of the parts are asked, and the object is copied again in our own parts in the same run, exact', async () => {
    const s = await scenario('mp-layout-uneven');
    // 6, 5, 6 MiB and 2 MiB: part 1 (6 MiB) and the count (4) allow 19 MiB, so the object is first cut 6, 6, 6, 1.
    const size = 19 * MIB;
    await putSource(s, 'big.bin', pseudoRandomBytes(size, 27));
    s.sourceStandIn.setMultipartLayout({ 'big.bin': [6 * MIB, 5 * MIB, 6 * MIB] });

    const run = await runJson('all', s.settings);

    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.report.complete).toBe(true);
    for (const name of ['azure', 'oci'] as const) expect(targetOf(run.report, name)).toMatchObject({ copied: 1, failed: 0, complete: true });
    // Part 1 first; after the mismatch, the parts between the first and the last (part 2 gives it away).
    const asked = s.sourceProxy.requests().filter((request) => request.operation === 'HeadObject' && request.query['partNumber'] !== undefined);
    expect(asked.map((request) => request.query['partNumber']).sort()).toEqual(['1', '2', '3']);
    // The first upload (the source's cut as part 1 suggested) was aborted, nothing of it committed; the second is ours.
    expect(s.ociStandIn.uploads(s.ociBucket).map((upload) => upload.state)).toEqual(['aborted', 'completed']);
    const oursCut = s.ociProxy.requests().filter((request) => request.operation === 'UploadPart' && request.status === 200).slice(-3).map((request) => request.requestBytes).sort((a, b) => b - a);
    expect(oursCut).toEqual([8 * MIB, 8 * MIB, size - 16 * MIB]);
    const state = await readAll(s);
    expect(mirrorDifferences(state.source, state.azure)).toEqual([]);
    expect(mirrorDifferences(state.source, state.oci)).toEqual([]);
  });

  it('an upload stopped part-way continues in the next run cut as the source was (parts already there are kept), each part then checked by its own MD5 alone', async () => {
    const s = await scenario('mp-layout-resume');
    const body = pseudoRandomBytes(SIZE, 25);
    await putSource(s, 'big.bin', body);
    s.sourceStandIn.setMultipartLayout({ 'big.bin': 5 * MIB });
    const store = (bucket: string, endpoint: string): ReturnType<typeof s3Store> =>
      s3Store({ label: `s3://${bucket}`, bucket, region: emulators.s3.region, endpoint, credentials: { accessKeyId: emulators.s3.accessKeyId, secretAccessKey: emulators.s3.secretAccessKey } });
    const source = store(s.sourceBucket, s.settings.AWS_S3_ENDPOINT!);
    const destinations = [{ name: 'oci', store: store(s.ociBucket, s.settings.OCI_S3_ENDPOINT!) }] as const;
    let object: ObjectInfo | undefined;
    for await (const page of source.listPages()) object ??= page.find((entry) => entry.key === 'big.bin');
    if (object === undefined) throw new Error('big.bin is not listed');
    expect(object.etag).toMatch(/^[0-9a-f]{32}-3$/);
    const transfer = { source, key: 'big.bin', destinations, tuning: { ...DEFAULT_TRANSFER_TUNING, partSize: 8 * MIB, singleRequestMax: 8 * MIB }, budget: new ByteBudget(64 * MIB), listed: object };

    // Asked to stop before it starts: only the first part is written, and the upload is kept.
    const stop = new AbortController();
    stop.abort();
    const first = (await streamObject({ ...transfer, stopStarting: stop.signal })).get('oci')!;
    expect(first).toMatchObject({ ok: false, stopped: { bytes: 5 * MIB, partSize: 5 * MIB } });
    const stopped = 'stopped' in first ? first.stopped : undefined;

    s.ociProxy.reset();
    const second = (await streamObject({ ...transfer, resume: new Map([['oci', { etag: object.etag, partSize: stopped!.partSize, token: stopped!.resumeToken }]]) })).get('oci')!;
    expect(second).toMatchObject({ ok: true, bytes: SIZE - 5 * MIB });
    // Parts 2 and 3 only, each with its MD5; the layout was asked again to cut the same way.
    const parts = s.ociProxy.requests().filter((request) => request.operation === 'UploadPart');
    expect(parts.map((request) => [request.query['partNumber'], request.requestBytes, request.contentMd5MatchesBody])).toEqual([['2', 5 * MIB, true], ['3', SIZE - 10 * MIB, true]]);
    expect(layoutQuestions(s).length).toBe(2);
    const state = await readAll(s);
    expect(state.oci.get('big.bin')?.md5).toBe(md5Hex(body));
  });

  it('on AWS, the layout of a multipart object is asked with HEAD ?partNumber=1 (none for SSE-KMS), and one whose parts the caller proves is read without the SDK; any other is read through the SDK, against the checksum S3 sends', async () => {
    const body = Buffer.from('the bytes of an artifact uploaded in parts');
    const etag = `${md5Hex(body)}-2`;
    const seen: { method: string; partNumber: string | null; ifMatch: string | undefined; checksumMode: string | undefined }[] = [];
    // AWS S3 as the SDK sees it with its default checksum settings: every GET answer carries a (here wrong) full-object CRC32.
    const server = http.createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://s3');
      seen.push({ method: req.method ?? '', partNumber: url.searchParams.get('partNumber'), ifMatch: req.headers['if-match'], checksumMode: req.headers['x-amz-checksum-mode'] as string | undefined });
      if (req.method === 'HEAD') {
        // An SSE-KMS object's multipart ETag is no MD5 of its parts' MD5s.
        const encryption = url.pathname.endsWith('/kms.bin') ? { 'x-amz-server-side-encryption': 'aws:kms' } : {};
        res.writeHead(206, { etag: `"${etag}"`, 'content-length': 30, 'x-amz-mp-parts-count': '2', ...encryption });
        res.end();
        return;
      }
      res.writeHead(200, { etag: `"${etag}"`, 'content-length': body.byteLength, 'x-amz-checksum-crc32': 'AAAAAA==', 'x-amz-checksum-type': 'FULL_OBJECT' });
      res.end(body);
    });
    const listener = await listenOnLoopback(server);
    closers.push(listener.closeNow);
    const source = s3Store({ label: 's3://aws', bucket: 'aws', region: 'us-east-1', endpoint: listener.url, credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' }, compatibilityMode: false, maxAttempts: 1 });
    const readAllOf = async (options: { provenEtag?: string }): Promise<Buffer> => {
      const chunks: Uint8Array[] = [];
      for await (const chunk of (await source.read('multipart.bin', options)).body) chunks.push(chunk);
      return Buffer.concat(chunks);
    };

    expect(await source.partLayout!('multipart.bin', etag, 1)).toEqual({ partSize: 30, partCount: 2 });
    expect(await source.partLayout!('kms.bin', etag, 1)).toBeUndefined();
    // Proven by the caller: one direct GET, no checksum asked, the bytes as sent.
    expect(await readAllOf({ provenEtag: etag })).toEqual(body);
    // Not proven (or proven against another ETag): read again through the SDK, whose check catches the mismatch.
    await expect(readAllOf({})).rejects.toThrow(/checksum mismatch/i);
    await expect(readAllOf({ provenEtag: `${md5Hex(body)}-3` })).rejects.toThrow(/checksum mismatch/i);
    expect(seen.map((request) => [request.method, request.partNumber, request.checksumMode])).toEqual([
      ['HEAD', '1', undefined],
      ['HEAD', '1', undefined],
      ['GET', null, undefined],
      ['GET', null, undefined],
      ['GET', null, 'ENABLED'],
      ['GET', null, undefined],
      ['GET', null, 'ENABLED'],
    ]);
    expect(seen[0]!.ifMatch).toBe(`"${etag}"`);
  });
});
