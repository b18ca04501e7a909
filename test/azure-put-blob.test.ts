/**
 * Put Blob sent with the SDK's own authentication and retry policies but without its serializer and
 * HTTP stack (src/stores/azure-put-blob.ts). Shared Key against real Azurite, which checks the
 * signature as Azure does. The bearer policy sends tokens over https only (Azurite's
 * OAuth would need its own certificate setup), so the bearer-token path is checked against a small
 * protocol-level HTTPS Blob endpoint in this file (self-signed, trusted through `ca`) that answers Put
 * Blob as Azure does (201 and an ETag) and records what it was sent; its token comes from a TokenCredential written here (the SDK
 * takes any).
 */
import https from 'node:https';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { AccessToken, GetTokenOptions, TokenCredential } from '@azure/core-auth';
import { RestError } from '@azure/core-rest-pipeline';
import { ContainerClient, StorageRetryPolicyType } from '@azure/storage-blob';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { putBlobSender } from '../src/stores/azure-put-blob.ts';
import { listenOnLoopback } from './support/http-proxy.ts';
import { blobServiceClientFor } from './support/emulators.ts';
import { selfSignedCertificate } from './support/key-vault-server.ts';

const emulators = inject('emulators');
const RETRY = { retryPolicyType: StorageRetryPolicyType.EXPONENTIAL, maxTries: 3, retryDelayInMs: 10, maxRetryDelayInMs: 20 };
const closers: (() => Promise<void>)[] = [];
afterAll(async () => {
  await Promise.all(closers.map((close) => close()));
});

const md5Of = (bytes: Uint8Array): string => createHash('md5').update(bytes).digest('base64');
const timeout = (): AbortSignal => AbortSignal.timeout(30_000);

async function azuriteContainer(): Promise<ContainerClient> {
  const container = blobServiceClientFor(emulators.azurite).getContainerClient(`put-blob-${randomUUID().slice(0, 8)}`);
  await container.create();
  return container;
}

/**
 * An HTTPS Blob endpoint (the bearer policy sends tokens over https only) that answers every Put Blob 201
 * (after `failures` answers of `failWith`) and records the requests.
 */
async function blobEndpoint(options: { failures?: number; failWith?: number | 'reset' } = {}): Promise<{ url: string; certificate: string; seen: { authorization: string | undefined; url: string; bytes: number }[] }> {
  const seen: { authorization: string | undefined; url: string; bytes: number }[] = [];
  let failures = options.failures ?? 0;
  const { key, certificate } = await selfSignedCertificate();
  const server = https.createServer({ key, cert: certificate }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      seen.push({ authorization: req.headers.authorization, url: req.url ?? '', bytes: Buffer.concat(chunks).byteLength });
      if (failures > 0) {
        failures -= 1;
        if (options.failWith === 'reset') {
          req.socket.destroy();
          return;
        }
        res.writeHead(options.failWith ?? 500, { 'x-ms-error-code': 'InternalError', 'content-type': 'application/xml' });
        res.end('<?xml version="1.0" encoding="utf-8"?><Error><Code>InternalError</Code><Message>Server encountered an internal error.</Message></Error>');
        return;
      }
      res.writeHead(201, { etag: '"0x8DCAFE"', 'x-ms-request-server-encrypted': 'true' });
      res.end();
    });
  });
  const listener = await listenOnLoopback(server);
  closers.push(listener.closeNow);
  return { url: listener.url.replace(/^http:/, 'https:'), certificate, seen };
}

/** A credential handing out numbered tokens valid for an hour, counting what it was asked. */
function countingCredential(): TokenCredential & { readonly asked: string[][] } {
  const asked: string[][] = [];
  return {
    asked,
    getToken(scopes: string | string[], _options?: GetTokenOptions): Promise<AccessToken> {
      asked.push(typeof scopes === 'string' ? [scopes] : scopes);
      return Promise.resolve({ token: `token-${asked.length}`, expiresOnTimestamp: Date.now() + 3_600_000 });
    },
  };
}

describe('Put Blob without the SDK stack', () => {
  it('with Shared Key, Azurite accepts the signature and stores the bytes, content headers, MD5 and metadata', async () => {
    const container = await azuriteContainer();
    const putBlob = putBlobSender(container, { connectionString: emulators.azurite.connectionString, retryOptions: RETRY, environment: {} });
    expect(putBlob).toBeDefined();
    const bytes = randomBytes(300_000);
    const blob = container.getBlockBlobClient('dir/odd key ü+%.bin');
    const headers = { 'content-md5': md5Of(bytes), 'x-ms-blob-content-md5': md5Of(bytes), 'x-ms-blob-content-type': 'application/zip', 'x-ms-blob-cache-control': 'no-cache', 'x-ms-meta-build': '42' };

    const etag = await putBlob!(blob.url, headers, bytes, timeout());

    const properties = await blob.getProperties();
    expect(etag).toBe(properties.etag);
    expect({ type: properties.contentType, cache: properties.cacheControl, md5: Buffer.from(properties.contentMD5 ?? new Uint8Array()).toString('base64'), metadata: properties.metadata }).toEqual({ type: 'application/zip', cache: 'no-cache', md5: md5Of(bytes), metadata: { build: '42' } });
    expect(Buffer.compare(await blob.downloadToBuffer(), bytes)).toBe(0);
  });

  it('bytes that do not match their Content-MD5 are refused as the SDK reports it (400 Md5Mismatch), and nothing is written', async () => {
    const container = await azuriteContainer();
    const putBlob = putBlobSender(container, { connectionString: emulators.azurite.connectionString, retryOptions: RETRY, environment: {} })!;
    const blob = container.getBlockBlobClient('refused.bin');
    const refusal = await putBlob(blob.url, { 'content-md5': md5Of(Buffer.from('other bytes')) }, randomBytes(1000), timeout()).catch((error: unknown) => error);
    expect(refusal).toBeInstanceOf(RestError);
    expect(refusal).toMatchObject({ statusCode: 400, code: 'Md5Mismatch' });
    expect(await blob.exists()).toBe(false);
  });

  it('keeps the SDK call where its own policies would not apply: a proxy is set, a SAS connection string, no credential', async () => {
    const container = await azuriteContainer();
    expect(putBlobSender(container, { connectionString: emulators.azurite.connectionString, retryOptions: RETRY, environment: { HTTPS_PROXY: 'http://proxy.example:3128' } })).toBeUndefined();
    const sas = `BlobEndpoint=${emulators.azurite.blobEndpoint};SharedAccessSignature=sv=2021-12-02&ss=b&srt=sco&sp=rwdlac&se=2099-01-01T00:00:00Z&sig=abc`;
    expect(putBlobSender(new ContainerClient(sas, container.containerName), { connectionString: sas, retryOptions: RETRY, environment: {} })).toBeUndefined();
    expect(putBlobSender(new ContainerClient(container.url), { retryOptions: RETRY, environment: {} })).toBeUndefined();
  });

  it("with a token credential, sends the storage scope's token as the SDK does, and asks for it once while it is valid", async () => {
    const endpoint = await blobEndpoint();
    const credential = countingCredential();
    const container = new ContainerClient(`${endpoint.url}/account/box`, credential);
    const putBlob = putBlobSender(container, { retryOptions: RETRY, environment: {}, ca: endpoint.certificate })!;
    expect(putBlob).toBeDefined();

    await putBlob(container.getBlockBlobClient('a.bin').url, { 'content-md5': md5Of(Buffer.from('a')) }, Buffer.from('a'), timeout());
    const etag = await putBlob(container.getBlockBlobClient('b.bin').url, { 'content-md5': md5Of(Buffer.from('bb')) }, Buffer.from('bb'), timeout());

    expect(etag).toBe('"0x8DCAFE"');
    expect(credential.asked).toEqual([['https://storage.azure.com/.default']]);
    expect(endpoint.seen.map((request) => [request.authorization, request.url.split('?')[0], request.bytes])).toEqual([
      ['Bearer token-1', '/account/box/a.bin', 1],
      ['Bearer token-1', '/account/box/b.bin', 2],
    ]);
  });

  it('a 500 and a dropped connection are tried again by the storage retry policy; one that keeps failing ends as the service answered', async () => {
    for (const failWith of [500, 'reset'] as const) {
      const endpoint = await blobEndpoint({ failures: 1, failWith });
      const container = new ContainerClient(`${endpoint.url}/account/box`, countingCredential());
      const putBlob = putBlobSender(container, { retryOptions: RETRY, environment: {}, ca: endpoint.certificate })!;
      await expect(putBlob(container.getBlockBlobClient('x.bin').url, {}, Buffer.from('x'), timeout())).resolves.toBe('"0x8DCAFE"');
      expect(endpoint.seen.length, String(failWith)).toBe(2);
    }
    const failing = await blobEndpoint({ failures: 10, failWith: 500 });
    const container = new ContainerClient(`${failing.url}/account/box`, countingCredential());
    const error = await putBlobSender(container, { retryOptions: RETRY, environment: {}, ca: failing.certificate })!(container.getBlockBlobClient('x.bin').url, {}, Buffer.from('x'), timeout()).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ statusCode: 500, code: 'InternalError', message: 'Server encountered an internal error.' });
    expect(failing.seen.length).toBe(RETRY.maxTries);
  });

  it('a cancelled request stops at once with an AbortError', async () => {
    const endpoint = await blobEndpoint();
    const container = new ContainerClient(`${endpoint.url}/account/box`, countingCredential());
    const putBlob = putBlobSender(container, { retryOptions: RETRY, environment: {}, ca: endpoint.certificate })!;
    const cancel = new AbortController();
    cancel.abort();
    await expect(putBlob(container.getBlockBlobClient('x.bin').url, {}, Buffer.from('x'), cancel.signal)).rejects.toMatchObject({ name: 'AbortError' });
    expect(endpoint.seen).toEqual([]);
  });
});
