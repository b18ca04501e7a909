/**
 * PutObject and UploadPart leave the S3 store without the S3Client's middleware stack (src/stores/s3-direct-requests.ts).
 * What that must not change is checked here: the request on the wire against the SDK's own (a small recording server:
 * s3rver checks no signatures, so the signature is verified here, by an independent SigV4 check), the bytes, headers
 * and metadata that arrive at s3rver, the default credential chain, and abort signals.
 */
import { createHash, createHmac } from 'node:crypto';
import http from 'node:http';
import { GetObjectCommand, PutObjectCommand, UploadPartCommand } from '@aws-sdk/client-s3';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { s3Store } from '../src/stores/s3.ts';
import type { WriteDescription } from '../src/stores/store.ts';
import { createBucket, s3ClientFor, uniqueName } from './support/emulators.ts';
import { listenOnLoopback } from './support/http-proxy.ts';
import { pseudoRandomBytes } from './support/scenario.ts';

const emulators = inject('emulators');
const MIB = 1024 * 1024;
const closers: (() => Promise<void>)[] = [];
afterAll(async () => {
  await Promise.all(closers.map((close) => close()));
});

const ODD_KEYS = ['a b.txt', 'c++/x+y.tar.gz', '100%/p%20q', 'what?.txt', 'hash#tag', 'a&b=c;d', "(x)*!'~.bin", 'ünï/código ✓.zip', 'deep/er/still/file.bin'];
const SECRET = 'the-secret-key';
const CREDENTIALS = { accessKeyId: 'AKIDRECORDED', secretAccessKey: SECRET, sessionToken: 'the-session-token' };
const HEADERS = { contentType: 'text/plain; charset=utf-8', contentEncoding: 'identity', contentDisposition: 'attachment; filename="x.txt"', cacheControl: 'no-cache', contentLanguage: 'fr' };
const USER_METADATA = { 'build-id': '4711', owner: 'team-a' };

function describeWrite(key: string, bytes: Uint8Array): WriteDescription {
  return { key, size: bytes.byteLength, headers: HEADERS, userMetadata: USER_METADATA, contentMd5Base64: undefined, recordedSource: { etag: 'source-etag', lastModifiedMs: 1_700_000_000_000 } };
}

interface Recorded {
  readonly method: string;
  readonly url: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
}

/** An S3 endpoint that records every request and answers as S3 does to PutObject, CreateMultipartUpload and UploadPart; `hold` keeps requests unanswered. */
async function recordingServer(options: { hold?: boolean } = {}): Promise<{ url: string; requests: Recorded[]; arrived: Promise<void> }> {
  const requests: Recorded[] = [];
  let signalArrival: () => void = () => undefined;
  const arrived = new Promise<void>((resolve) => (signalArrival = resolve));
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks) });
      signalArrival();
      if (options.hold === true) return;
      if (req.method === 'POST' && (req.url ?? '').includes('uploads')) {
        res.writeHead(200, { 'content-type': 'application/xml' });
        res.end('<InitiateMultipartUploadResult><UploadId>up/load+id=</UploadId></InitiateMultipartUploadResult>');
        return;
      }
      res.writeHead(200, { etag: `"${createHash('md5').update(Buffer.concat(chunks)).digest('hex')}"` });
      res.end();
    });
  });
  const listener = await listenOnLoopback(server);
  closers.push(listener.closeNow);
  return { url: listener.url, requests, arrived };
}

/** RFC 3986 encoding as SigV4 canonicalises it: everything but A-Z a-z 0-9 - . _ ~ escaped. */
function uriEncode(text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (character) => `%${character.charCodeAt(0).toString(16).toUpperCase()}`);
}

/**
 * Checks a request's SigV4 `Authorization` against the request as it arrived, written from AWS's description of
 * SigV4 for S3 (no code shared with the SDK). Gives the signed header names; throws when anything does not verify.
 */
function verifySigV4(request: Recorded, secret: string): string[] {
  const authorization = String(request.headers.authorization);
  const match = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$/.exec(authorization);
  if (match === null) throw new Error(`not a SigV4 Authorization header: ${authorization}`);
  const [, , date, region, service, signedHeaderList, signature] = match as unknown as [string, string, string, string, string, string, string];
  const [path, query = ''] = request.url.split('?') as [string, string?];
  // S3's canonical URI is the path as sent, once encoded: the wire path must already be that.
  const canonicalPath = path.split('/').map((segment) => uriEncode(decodeURIComponent(segment))).join('/');
  expect(path).toBe(canonicalPath);
  const canonicalQuery = query === '' ? '' : query.split('&').map((pair) => pair.split('=').map((part) => uriEncode(decodeURIComponent(part))).join('=')).sort().join('&');
  const signedHeaders = signedHeaderList.split(';');
  const canonicalHeaders = signedHeaders.map((name) => `${name}:${String(request.headers[name]).trim().replace(/\s+/g, ' ')}\n`).join('');
  const payloadHash = String(request.headers['x-amz-content-sha256']);
  if (payloadHash !== 'UNSIGNED-PAYLOAD') expect(payloadHash).toBe(createHash('sha256').update(request.body).digest('hex'));
  const canonicalRequest = [request.method, path, canonicalQuery, canonicalHeaders, signedHeaderList, payloadHash].join('\n');
  const scope = `${date}/${region}/${service}/aws4_request`;
  const stringToSign = ['AWS4-HMAC-SHA256', String(request.headers['x-amz-date']), scope, createHash('sha256').update(canonicalRequest).digest('hex')].join('\n');
  const key = [date, region, service, 'aws4_request'].reduce<Buffer | string>((secretSoFar, part) => createHmac('sha256', secretSoFar).update(part).digest(), `AWS4${secret}`);
  const expected = createHmac('sha256', key).update(stringToSign).digest('hex');
  if (expected !== signature) throw new Error(`the signature does not verify for ${request.method} ${request.url}`);
  return signedHeaders;
}

describe('PutObject and UploadPart without the SDK middleware stack', () => {
  it('go out on the path and query the SDK gives them, odd keys included, signed over what arrives, session token included', async () => {
    const recorder = await recordingServer();
    const sdk = s3ClientFor({ ...emulators.s3, endpoint: recorder.url, accessKeyId: CREDENTIALS.accessKeyId, secretAccessKey: SECRET });
    const store = s3Store({ label: 'oci://recorded', bucket: 'recorded', region: 'us-east-1', endpoint: recorder.url, credentials: CREDENTIALS });
    const body = pseudoRandomBytes(1000, 1);

    for (const key of ODD_KEYS) {
      await sdk.send(new PutObjectCommand({ Bucket: 'recorded', Key: key, Body: body }));
      const sdkUrl = recorder.requests.at(-1)!.url;
      await store.putObject(describeWrite(key, body), body);
      expect(recorder.requests.at(-1)!.url, key).toBe(sdkUrl);
    }
    const upload = await store.startPartUpload(describeWrite('parts/ünï key+1.bin', body), { partSize: 5 * MIB });
    await upload.uploadPart({ index: 1, bytes: body, md5Base64: createHash('md5').update(body).digest('base64') });
    const part = recorder.requests.at(-1)!;
    await sdk.send(new UploadPartCommand({ Bucket: 'recorded', Key: 'parts/ünï key+1.bin', UploadId: 'up/load+id=', PartNumber: 2, Body: body }));
    expect(part.url).toBe(recorder.requests.at(-1)!.url);

    const written = recorder.requests.filter((request) => request.method === 'PUT' && request.headers['x-amz-content-sha256'] === 'UNSIGNED-PAYLOAD');
    expect(written).toHaveLength(ODD_KEYS.length + 1);
    for (const request of written) {
      const signed = verifySigV4(request, SECRET);
      expect(signed).toEqual(expect.arrayContaining(['host', 'content-md5', 'content-length', 'x-amz-content-sha256', 'x-amz-date', 'x-amz-security-token']));
      expect(request.headers['x-amz-security-token']).toBe(CREDENTIALS.sessionToken);
      expect(request.headers['content-md5']).toBe(createHash('md5').update(request.body).digest('base64'));
      expect(request.body.equals(Buffer.from(body))).toBe(true);
    }
    const put = written[0]!;
    expect(put.headers).toMatchObject({ 'content-type': HEADERS.contentType, 'content-encoding': HEADERS.contentEncoding, 'content-disposition': HEADERS.contentDisposition, 'cache-control': HEADERS.cacheControl, 'content-language': HEADERS.contentLanguage, 'x-amz-meta-build-id': '4711', 'x-amz-meta-owner': 'team-a' });
    expect(verifySigV4(put, SECRET)).toEqual(expect.arrayContaining(['content-type', 'content-disposition', 'x-amz-meta-build-id', 'x-amz-meta-owner']));
    // The SDK's own requests pass the same check: the check itself is sound.
    for (const request of recorder.requests.filter((request) => request.headers['user-agent']?.startsWith('aws-sdk-js') === true)) verifySigV4(request, SECRET);
  });

  it('without static keys, the default credential chain signs (here the environment’s keys and session token)', async () => {
    const recorder = await recordingServer();
    const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY, token: process.env.AWS_SESSION_TOKEN };
    Object.assign(process.env, { AWS_ACCESS_KEY_ID: 'AKIDFROMENV', AWS_SECRET_ACCESS_KEY: 'secret-from-env', AWS_SESSION_TOKEN: 'token-from-env' });
    try {
      const store = s3Store({ label: 'oci://recorded', bucket: 'recorded', region: 'us-east-1', endpoint: recorder.url });
      const body = pseudoRandomBytes(100, 2);
      await store.putObject(describeWrite('from-env.bin', body), body);
    } finally {
      for (const [name, value] of [['AWS_ACCESS_KEY_ID', saved.id], ['AWS_SECRET_ACCESS_KEY', saved.secret], ['AWS_SESSION_TOKEN', saved.token]] as const) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
    const [request] = recorder.requests;
    expect(String(request!.headers.authorization)).toContain('Credential=AKIDFROMENV/');
    expect(request!.headers['x-amz-security-token']).toBe('token-from-env');
    expect(verifySigV4(request!, 'secret-from-env')).toContain('x-amz-security-token');
  });

  it('an abort signal ends an upload the service does not answer, and it is not sent again', async () => {
    const recorder = await recordingServer({ hold: true });
    const store = s3Store({ label: 'oci://recorded', bucket: 'recorded', region: 'us-east-1', endpoint: recorder.url, credentials: CREDENTIALS });
    const controller = new AbortController();
    const body = pseudoRandomBytes(100, 3);
    const written = store.putObject(describeWrite('held.bin', body), body, controller.signal);
    await recorder.arrived;
    controller.abort(new Error('the run was interrupted'));
    await expect(written).rejects.toThrow(/write failed on oci:\/\/recorded key "held.bin"/);
    expect(recorder.requests).toHaveLength(1);
  });

  it('odd keys arrive at s3rver byte-exact with every content header and the user metadata, in one PutObject and in parts', async () => {
    const bucket = await createBucket(emulators.s3, uniqueName('body-requests'));
    const store = s3Store({ label: `oci://${bucket}`, bucket, region: emulators.s3.region, endpoint: emulators.s3.endpoint, credentials: { accessKeyId: emulators.s3.accessKeyId, secretAccessKey: emulators.s3.secretAccessKey } });
    const expected = new Map<string, Uint8Array>();
    for (const [index, key] of ODD_KEYS.entries()) {
      const bytes = pseudoRandomBytes(1000 + index, 10 + index);
      expected.set(key, bytes);
      await store.putObject(describeWrite(key, bytes), bytes);
    }
    const multipartKey = 'parts/ünï big+file #1.bin';
    const bytes = pseudoRandomBytes(5 * MIB + 1000, 99);
    expected.set(multipartKey, bytes);
    const upload = await store.startPartUpload(describeWrite(multipartKey, bytes), { partSize: 5 * MIB });
    for (const [index, part] of [bytes.subarray(0, 5 * MIB), bytes.subarray(5 * MIB)].entries()) {
      await upload.uploadPart({ index, bytes: part, md5Base64: createHash('md5').update(part).digest('base64') });
    }
    await upload.commit(2);

    const client = s3ClientFor(emulators.s3);
    for (const [key, body] of expected) {
      const read = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      expect(Buffer.from(await read.Body!.transformToByteArray()).equals(Buffer.from(body)), key).toBe(true);
      expect({ contentType: read.ContentType, contentEncoding: read.ContentEncoding, contentDisposition: read.ContentDisposition, cacheControl: read.CacheControl, contentLanguage: read.ContentLanguage }, key).toEqual(HEADERS);
      expect(read.Metadata, key).toMatchObject(USER_METADATA);
    }
  });
});
