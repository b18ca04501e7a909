/**
 * Azure's server-side pull from an external URL, for tests: a proxy in front of Azurite that performs
 * Put Blob From URL and Put Block From URL itself and forwards every other request unchanged.
 *
 * Azurite answers 501 to Put Blob From URL and cannot reach a source outside itself for Put Block
 * From URL, yet these are how the app copies S3 objects into Azure without the bytes passing through
 * it. Here the proxy fetches the source URL (a presigned S3 URL, normally through a counting
 * ./http-proxy.ts, with `x-test-client: azure-copy` so those pulls can be told from the app's reads)
 * and writes the bytes to Azurite with the SDK (Azurite checks SharedKey signatures, so a re-written
 * request could not carry the client's). Bodies are streamed, never held in memory.
 *
 * What follows Azure's documentation (Put Blob From URL, Put Block From URL) or its observed answers:
 * - The client's request is first sent to Azurite as it is. Azurite checks the signature (or SAS) and,
 *   for Put Block From URL, the block id and the container before it gives up on the external source
 *   (501 APINotImplemented, or 404 CannotVerifyCopySource); any other answer (403 AuthorizationFailure,
 *   404 ContainerNotFound, 400 ...) is relayed, so a bad credential fails here as it would on Azure.
 * - Source answers map as Azure maps them: 404 and 403 (and any other non-2xx) come back with that same
 *   status and code `CannotVerifyCopySource`, with `<CopySourceStatusCode>`/`<CopySourceErrorMessage>`
 *   and `x-ms-copy-source-status-code` (as seen from real Azure, e.g. Azure/azure-storage-python#720:
 *   `403 CannotVerifyCopySource`, CopySourceStatusCode 403, for an S3 presigned URL S3 refused);
 *   304/412 to a source condition → 412 SourceConditionNotMet; no answer, or a body cut short →
 *   500 CannotVerifyCopySource "Could not verify the copy source within the specified time."
 *   (the same mapping Azurite uses for its own same-account Put Block From URL).
 * - `setRefuse(true)` answers like Azure whose pull is refused by an S3 bucket policy (for example one
 *   that allows only the app's network): S3 says 403 AccessDenied to Azure, and Azure tells the caller
 *   `403 CannotVerifyCopySource` with CopySourceStatusCode 403. It is 403, not 409: the 409 reports
 *   seen for CannotVerifyCopySource concern the asynchronous Copy Blob. The source is not contacted.
 * - x-ms-source-content-md5: the source bytes must have that MD5, else 400 Md5Mismatch and nothing is
 *   written (passed to Azurite as the write's Content-MD5, which it verifies). x-ms-blob-content-md5
 *   sets the stored Content-MD5; without it the stored MD5 is the one computed from the bytes.
 *   A request Content-MD5 is not documented for these operations and is ignored.
 * - Content headers: x-ms-blob-content-type, -encoding, -language, -disposition and
 *   x-ms-blob-cache-control win; otherwise, unless `x-ms-copy-source-blob-properties: false`, the
 *   source response's Content-Type, Content-Encoding, Content-Language, Content-Disposition and
 *   Cache-Control are kept ("standard blob properties are copied by default from the source").
 * - x-ms-meta-* become the metadata; S3's x-amz-meta-* are never copied (they are not Azure metadata).
 * - Put Blob From URL needs a source Content-Length and at most 5000 MiB (else 409); Put Block From URL
 *   stages `x-ms-source-range: bytes=start-end` (or the whole source) as one block of at most 4000 MiB.
 * - Destination conditions (If-Match, If-None-Match, If-(Un)Modified-Since, x-ms-lease-id), source
 *   conditions (x-ms-source-if-*), x-ms-access-tier and x-ms-tags are passed on.
 *
 * The source URL's query string (a signature) is never logged, recorded or put in an error.
 */
import { once } from 'node:events';
import http from 'node:http';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import https from 'node:https';
import { PassThrough } from 'node:stream';
import {
  type BlobHTTPHeaders,
  type BlobRequestConditions,
  BlockBlobClient,
  ContainerClient,
  type HttpHeaders,
  newPipeline,
  type RequestPolicy,
  type RequestPolicyFactory,
  RestError,
  StorageSharedKeyCredential,
  type WebResource,
} from '@azure/storage-blob';
import { classifyAzureRequest, forwardRequest, headerValue, listenOnLoopback, splitTarget, upstreamAgent, withoutHopByHop, writeAzureError } from './http-proxy.ts';

export type CopyFromUrlOperation = 'PutBlobFromURL' | 'PutBlockFromURL';

/** One read of a copy source, as Azure would have made it. */
export interface SourcePull {
  operation: CopyFromUrlOperation;
  /** `host:port` of the source URL. */
  host: string;
  /** The source URL's path, never its query. */
  path: string;
  /** The `Range` sent to the source (`bytes=0-99`), or null for the whole object. */
  range: string | null;
  /** The source's status; null when it did not answer. */
  status: number | null;
  /** Body bytes read from the source. */
  bytes: number;
}

export interface CopyFromUrlProxyOptions {
  /** The Azurite behind the proxy: its blob endpoint with the account (`http://127.0.0.1:PORT/devstoreaccount1`) and key. */
  azurite: { blobEndpoint: string; accountName: string; accountKey: string };
}

export interface CopyFromUrlProxy {
  /** `http://127.0.0.1:PORT` */
  readonly url: string;
  /** The proxy's equivalent of Azurite's blob endpoint: `http://127.0.0.1:PORT/<account>`. */
  readonly blobEndpoint: string;
  /** A SharedKey connection string for `BlobServiceClient.fromConnectionString` that points at the proxy. */
  readonly connectionString: string;
  /** A copy of the pulls made so far, in order. */
  pulls(): SourcePull[];
  reset(): void;
  /** While on, every copy from URL is refused as Azure refuses one blocked by the source's bucket policy. */
  setRefuse(refuse: boolean): void;
  close(): Promise<void>;
}

/** Azure's documented ceilings: Put Blob From URL 5000 MiB, one block of Put Block From URL 4000 MiB. */
const MAX_PUT_BLOB_FROM_URL_BYTES = 5000 * 1024 * 1024;
const MAX_BLOCK_BYTES = 4000 * 1024 * 1024;
const NO_ANSWER_MESSAGE = 'Could not verify the copy source within the specified time.';

export async function startCopyFromUrlProxy(options: CopyFromUrlProxyOptions): Promise<CopyFromUrlProxy> {
  const azuriteEndpoint = new URL(options.azurite.blobEndpoint);
  const upstream = new URL(azuriteEndpoint.origin);
  const credential = new StorageSharedKeyCredential(options.azurite.accountName, options.azurite.accountKey);
  const agent = upstreamAgent();
  const pullLog: SourcePull[] = [];
  let refuse = false;

  const server = http.createServer((req, res) => {
    const operation = copyFromUrlOperation(req);
    const done =
      operation === null
        ? forwardRequest(req, res, upstream, agent, { status: null, requestBytes: 0, responseBytes: 0 })
        : copyFromUrl(operation, req, res, { upstream, agent, credential, pullLog, refused: () => refuse });
    done.catch((error: unknown) => {
      process.stderr.write(`${JSON.stringify({ event: 'copy_from_url_proxy_error', error: String(error) })}\n`);
      if (!res.headersSent) writeAzureError(req, res, { status: 500, code: 'InternalError', message: 'The copy-from-URL proxy failed; see the test output.' });
      else res.destroy();
    });
  });
  const { url, closeNow } = await listenOnLoopback(server);
  const blobEndpoint = `${url}/${options.azurite.accountName}`;

  return {
    url,
    blobEndpoint,
    connectionString: `DefaultEndpointsProtocol=http;AccountName=${options.azurite.accountName};AccountKey=${options.azurite.accountKey};BlobEndpoint=${blobEndpoint};`,
    pulls: () => pullLog.map((pull) => ({ ...pull })),
    reset: () => {
      pullLog.length = 0;
    },
    setRefuse: (on) => {
      refuse = on;
    },
    close: async () => {
      await closeNow();
      agent.destroy();
    },
  };
}

function copyFromUrlOperation(req: IncomingMessage): CopyFromUrlOperation | null {
  const { path, query } = splitTarget(req.url ?? '/');
  const operation = classifyAzureRequest(req.method ?? 'GET', path, query, req.headers);
  if (operation === 'PutBlockFromURL') return operation;
  // Only block blobs: Put Blob From URL creates nothing else.
  if (operation === 'PutBlobFromURL' && headerValue(req.headers['x-ms-blob-type']) === 'BlockBlob') return operation;
  return null;
}

interface CopyContext {
  upstream: URL;
  agent: http.Agent;
  credential: StorageSharedKeyCredential;
  pullLog: SourcePull[];
  refused: () => boolean;
}

/** An error answer for the client, raised anywhere in a copy. */
class AzureAnswer extends Error {
  readonly status: number;
  readonly code: string;
  readonly elements: Record<string, string> | undefined;
  readonly headers: OutgoingHttpHeaders | undefined;
  constructor(status: number, code: string, message: string, elements?: Record<string, string>, headers?: OutgoingHttpHeaders) {
    super(message);
    this.status = status;
    this.code = code;
    this.elements = elements;
    this.headers = headers;
  }
}

async function copyFromUrl(operation: CopyFromUrlOperation, req: IncomingMessage, res: ServerResponse, context: CopyContext): Promise<void> {
  const requestBody = await readAll(req);
  // Let Azurite judge the credentials, block id and container as it judges every other request.
  const probe = await sendToAzurite(req, requestBody, context);
  const azuriteGaveUp =
    operation === 'PutBlobFromURL' ? probe.status === 501 : probe.status === 404 && headerValue(probe.headers['x-ms-error-code']) === 'CannotVerifyCopySource';
  if (!azuriteGaveUp) {
    res.writeHead(probe.status, withoutHopByHop(probe.rawHeaders)).end(probe.body);
    return;
  }

  const abort = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) abort.abort();
  });
  try {
    if (context.refused()) {
      throw new AzureAnswer(403, 'CannotVerifyCopySource', 'Forbidden', { CopySourceStatusCode: '403', CopySourceErrorMessage: 'Forbidden' }, { 'x-ms-copy-source-status-code': '403' });
    }
    const blob = blockBlobClientFor(req, context);
    if (operation === 'PutBlobFromURL' && !(await blob.container.exists({ abortSignal: abort.signal }))) {
      throw new AzureAnswer(404, 'ContainerNotFound', 'The specified container does not exist.');
    }
    // A broken source also cancels the write at once, rather than leaving Azurite waiting for the rest.
    const source = await openSource(operation, req, context, abort.signal, () => abort.abort());
    const headers = operation === 'PutBlobFromURL' ? await putBlob(req, blob, source, abort.signal) : await putBlock(req, blob, source, abort.signal);
    const clientRequestId = headerValue(req.headers['x-ms-client-request-id']);
    res.writeHead(201, { ...headers, 'content-length': 0, ...(clientRequestId === undefined ? {} : { 'x-ms-client-request-id': clientRequestId }) }).end();
  } catch (error) {
    if (res.destroyed) return;
    const answer = toAzureAnswer(error);
    writeAzureError(req, res, { status: answer.status, code: answer.code, message: answer.message, elements: answer.elements, headers: answer.headers });
  }
}

/** The source's answer, being streamed; `failed()` says whether it broke off before its end. */
interface OpenSource {
  body: PassThrough;
  length: number;
  headers: http.IncomingHttpHeaders;
  failed(): boolean;
}

async function openSource(operation: CopyFromUrlOperation, req: IncomingMessage, context: CopyContext, signal: AbortSignal, onBrokenOff: () => void): Promise<OpenSource> {
  const copySource = headerValue(req.headers['x-ms-copy-source']) ?? '';
  let sourceUrl: URL;
  try {
    sourceUrl = new URL(copySource);
    if (sourceUrl.protocol !== 'http:' && sourceUrl.protocol !== 'https:') throw new Error('not http');
  } catch {
    throw new AzureAnswer(400, 'InvalidHeaderValue', 'The value for one of the HTTP headers is not in the correct format.', { HeaderName: 'x-ms-copy-source' });
  }
  const range = operation === 'PutBlockFromURL' ? (headerValue(req.headers['x-ms-source-range']) ?? null) : null;
  if (range !== null && !/^bytes=\d+-\d*$/.test(range)) {
    throw new AzureAnswer(400, 'InvalidHeaderValue', 'The value for one of the HTTP headers is not in the correct format.', { HeaderName: 'x-ms-source-range', HeaderValue: range });
  }
  const pull: SourcePull = { operation, host: sourceUrl.host, path: sourceUrl.pathname, range, status: null, bytes: 0 };
  context.pullLog.push(pull);

  const headers: OutgoingHttpHeaders = { 'x-test-client': 'azure-copy', 'accept-encoding': 'identity' };
  if (range !== null) headers['range'] = range;
  const sourceAuthorization = headerValue(req.headers['x-ms-copy-source-authorization']);
  if (sourceAuthorization !== undefined) headers['authorization'] = sourceAuthorization;
  for (const condition of ['if-match', 'if-none-match', 'if-modified-since', 'if-unmodified-since']) {
    const value = headerValue(req.headers[`x-ms-source-${condition}`]);
    if (value !== undefined) headers[condition] = value;
  }

  const get = sourceUrl.protocol === 'https:' ? https.get : http.get;
  let response: IncomingMessage;
  try {
    const request = get(sourceUrl, { headers, signal });
    [response] = (await once(request, 'response')) as [IncomingMessage];
  } catch {
    throw new AzureAnswer(500, 'CannotVerifyCopySource', NO_ANSWER_MESSAGE);
  }
  const status = response.statusCode ?? 0;
  pull.status = status;
  if (status === 304 || status === 412) {
    response.resume();
    throw new AzureAnswer(412, 'SourceConditionNotMet', 'The source condition specified using HTTP conditional header(s) is not met.');
  }
  if (status !== 200 && status !== 206) {
    response.resume();
    const reason = http.STATUS_CODES[status] ?? 'Unknown';
    throw new AzureAnswer(status, 'CannotVerifyCopySource', reason, { CopySourceStatusCode: String(status), CopySourceErrorMessage: reason }, { 'x-ms-copy-source-status-code': String(status) });
  }
  const length = Number(headerValue(response.headers['content-length']) ?? Number.NaN);
  if (!Number.isSafeInteger(length)) {
    response.resume();
    throw new AzureAnswer(409, 'CannotVerifyCopySource', 'The source did not return a valid Content-Length.');
  }
  if (operation === 'PutBlobFromURL' && length > MAX_PUT_BLOB_FROM_URL_BYTES) {
    response.resume();
    throw new AzureAnswer(409, 'CannotVerifyCopySource', 'The source request body is too large and exceeds the maximum permissible limit (5000MB).');
  }
  if (operation === 'PutBlockFromURL' && length > MAX_BLOCK_BYTES) {
    response.resume();
    throw new AzureAnswer(413, 'RequestBodyTooLarge', 'The request body is too large and exceeds the maximum permissible limit.');
  }

  let broken = false;
  let received = 0;
  const body = new PassThrough();
  // Counted as the bytes arrive, so the count is complete when the source ends.
  response.on('data', (chunk: Buffer) => {
    received += chunk.length;
    pull.bytes += chunk.length;
  });
  // A source that stops early must fail the write rather than leave a short blob.
  const breakOff = (): void => {
    if (broken) return;
    broken = true;
    body.destroy(new Error('the copy source broke off'));
    onBrokenOff();
  };
  response.once('error', breakOff);
  response.once('end', () => {
    if (received !== length) breakOff();
  });
  response.once('close', () => {
    if (!response.complete) breakOff();
  });
  response.pipe(body);
  return { body, length, headers: response.headers, failed: () => broken };
}

async function putBlob(req: IncomingMessage, blob: DestinationBlob, source: OpenSource, signal: AbortSignal): Promise<OutgoingHttpHeaders> {
  const copyProperties = headerValue(req.headers['x-ms-copy-source-blob-properties'])?.toLowerCase() !== 'false';
  const fromSource = (name: string): string | undefined => (copyProperties ? headerValue(source.headers[name]) : undefined);
  const blobContentMD5 = headerValue(req.headers['x-ms-blob-content-md5']);
  const httpHeaders: BlobHTTPHeaders = {
    blobContentType: headerValue(req.headers['x-ms-blob-content-type']) ?? fromSource('content-type'),
    blobContentEncoding: headerValue(req.headers['x-ms-blob-content-encoding']) ?? fromSource('content-encoding'),
    blobContentLanguage: headerValue(req.headers['x-ms-blob-content-language']) ?? fromSource('content-language'),
    blobContentDisposition: headerValue(req.headers['x-ms-blob-content-disposition']) ?? fromSource('content-disposition'),
    blobCacheControl: headerValue(req.headers['x-ms-blob-cache-control']) ?? fromSource('cache-control'),
    blobContentMD5: blobContentMD5 === undefined ? undefined : Buffer.from(blobContentMD5, 'base64'),
  };
  const tags = headerValue(req.headers['x-ms-tags']);
  const response = await writeOrExplain(source, () =>
    blob.client.upload(() => source.body, source.length, {
      abortSignal: signal,
      blobHTTPHeaders: httpHeaders,
      metadata: metadataOf(req),
      conditions: destinationConditions(req),
      tier: headerValue(req.headers['x-ms-access-tier']),
      tags: tags === undefined ? undefined : Object.fromEntries(new URLSearchParams(tags)),
    }),
  );
  return pickHeaders(response._response.headers, ['etag', 'last-modified', 'content-md5', 'x-ms-content-crc64', 'x-ms-request-id', 'x-ms-version', 'x-ms-version-id', 'x-ms-request-server-encrypted', 'date']);
}

async function putBlock(req: IncomingMessage, blob: DestinationBlob, source: OpenSource, signal: AbortSignal): Promise<OutgoingHttpHeaders> {
  const { query } = splitTarget(req.url ?? '/');
  const leaseId = headerValue(req.headers['x-ms-lease-id']);
  const response = await writeOrExplain(source, () =>
    blob.client.stageBlock(query['blockid'] ?? '', () => source.body, source.length, {
      abortSignal: signal,
      conditions: leaseId === undefined ? undefined : { leaseId },
    }),
  );
  return pickHeaders(response._response.headers, ['content-md5', 'x-ms-content-crc64', 'x-ms-request-id', 'x-ms-version', 'x-ms-request-server-encrypted', 'date']);
}

/** Runs the write; if it failed because the source broke off, says so as Azure does. */
async function writeOrExplain<T>(source: OpenSource, write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (error) {
    if (source.failed()) throw new AzureAnswer(500, 'CannotVerifyCopySource', NO_ANSWER_MESSAGE);
    throw error;
  } finally {
    source.body.destroy();
  }
}

interface DestinationBlob {
  client: BlockBlobClient;
  container: ContainerClient;
}

/**
 * A client for the request's blob with a pipeline of its own: one attempt only (the source stream
 * cannot be replayed), and the source MD5, if any, sent as the write's Content-MD5 so that Azurite
 * refuses bytes that do not match before anything is stored.
 */
function blockBlobClientFor(req: IncomingMessage, context: CopyContext): DestinationBlob {
  const { path } = splitTarget(req.url ?? '/');
  const pipeline = newPipeline(context.credential, { retryOptions: { maxTries: 1 } });
  const sourceMd5 = headerValue(req.headers['x-ms-source-content-md5']);
  if (sourceMd5 !== undefined) pipeline.factories.push(setHeaderPolicy('Content-MD5', sourceMd5));
  // The path is already encoded as the client sent it; the SDK keeps an encoded URL as it is.
  const [account, container] = path.split('/').filter((segment) => segment !== '');
  return {
    client: new BlockBlobClient(`${context.upstream.origin}${path}`, pipeline),
    container: new ContainerClient(`${context.upstream.origin}/${account}/${container}`, pipeline),
  };
}

function setHeaderPolicy(name: string, value: string): RequestPolicyFactory {
  return {
    create: (nextPolicy: RequestPolicy): RequestPolicy => ({
      sendRequest: (request: WebResource) => {
        request.headers.set(name, value);
        return nextPolicy.sendRequest(request);
      },
    }),
  };
}

function metadataOf(req: IncomingMessage): Record<string, string> | undefined {
  const metadata: Record<string, string> = {};
  // rawHeaders keep the case of metadata names, which Azure preserves.
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i] as string;
    if (name.toLowerCase().startsWith('x-ms-meta-')) metadata[name.slice('x-ms-meta-'.length)] = req.rawHeaders[i + 1] as string;
  }
  return Object.keys(metadata).length === 0 ? undefined : metadata;
}

function destinationConditions(req: IncomingMessage): BlobRequestConditions {
  const date = (name: string): Date | undefined => {
    const value = headerValue(req.headers[name]);
    return value === undefined ? undefined : new Date(value);
  };
  return {
    ifMatch: headerValue(req.headers['if-match']),
    ifNoneMatch: headerValue(req.headers['if-none-match']),
    ifModifiedSince: date('if-modified-since'),
    ifUnmodifiedSince: date('if-unmodified-since'),
    leaseId: headerValue(req.headers['x-ms-lease-id']),
  };
}

function pickHeaders(headers: HttpHeaders, names: string[]): OutgoingHttpHeaders {
  const picked: OutgoingHttpHeaders = {};
  for (const name of names) {
    const value = headers.get(name);
    if (value !== undefined) picked[name] = value;
  }
  return picked;
}

function toAzureAnswer(error: unknown): AzureAnswer {
  if (error instanceof AzureAnswer) return error;
  if (error instanceof RestError) {
    // Azurite's message carries its own RequestId/Time lines; keep the first line only.
    const firstLine = error.message.split('\n')[0] ?? 'The request failed.';
    return new AzureAnswer(error.statusCode ?? 500, error.code ?? 'InternalError', firstLine);
  }
  if (error instanceof Error && error.name === 'AbortError') return new AzureAnswer(500, 'OperationTimedOut', 'The operation was cancelled.');
  return new AzureAnswer(500, 'InternalError', `The copy-from-URL proxy failed: ${error instanceof Error ? error.message : String(error)}`);
}

interface AzuriteAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
}

/** Sends the client's request to Azurite exactly as received and returns the whole (small) answer. */
async function sendToAzurite(req: IncomingMessage, body: Buffer, context: CopyContext): Promise<AzuriteAnswer> {
  const request = http.request({
    protocol: 'http:',
    hostname: context.upstream.hostname,
    port: context.upstream.port,
    method: req.method,
    path: req.url,
    headers: withoutHopByHop(req.rawHeaders),
    agent: context.agent,
  });
  request.end(body);
  const [response] = (await once(request, 'response')) as [IncomingMessage];
  return { status: response.statusCode ?? 502, headers: response.headers, rawHeaders: response.rawHeaders, body: await readAll(response) };
}

async function readAll(stream: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

