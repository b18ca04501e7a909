/**
 * A counting, fault-injecting reverse proxy for tests: it stands in for the network between the app
 * and a real store (AWS S3, OCI, Azure Blob), which the emulators cannot imitate on their own.
 *
 * Real stores answer 500 and 503 under load, reset connections, stall until the client gives up,
 * and go away for minutes; and what a sync costs is the number of API calls it makes. s3rver and
 * Azurite never fail and count nothing, so this proxy sits in front of one of them (any plain-http
 * origin), streams bodies both ways (a multi-hundred-MiB body is never held in memory), records
 * every request classified by S3 or Azure Blob operation, and injects faults chosen by a seeded
 * PRNG so a failing run can be reproduced.
 *
 * Addressing is path-style only (`/bucket/key`, `/account/container/blob`), as the emulators use.
 */
import { createHash, randomUUID, type Hash } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/** Which API the upstream speaks: decides operation names and the shape of error bodies. */
export type Dialect = 's3' | 'azure';

export const s3Operations = [
  'ListObjectsV2',
  'GetObject',
  'HeadObject',
  'PutObject',
  'CreateMultipartUpload',
  'UploadPart',
  'CompleteMultipartUpload',
  'AbortMultipartUpload',
  'ListMultipartUploads',
  'ListParts',
  'DeleteObjects',
  'DeleteObject',
  'CreateBucket',
] as const;
export type S3Operation = (typeof s3Operations)[number];

export const azureOperations = [
  'ListBlobs',
  'PutBlob',
  'PutBlock',
  'PutBlockList',
  'PutBlobFromURL',
  'PutBlockFromURL',
  'GetBlob',
  'GetBlobProperties',
  'BlobBatch',
  'Lease',
  'DeleteBlob',
  'CreateContainer',
] as const;
export type AzureOperation = (typeof azureOperations)[number];

/** `other` is any call the lists above do not name (ListObjects v1, CopyObject, Copy Blob, ...). */
export type ProxyOperation = S3Operation | AzureOperation | 'other';

/**
 * - `500`, `503`: answered by the proxy in the upstream's dialect, never forwarded.
 * - `reset`: the connection is reset before anything is forwarded.
 * - `reset-mid-body`: forwarded; the client gets the status, headers and part of the body, then a reset.
 *   When the answer has no body (HEAD, most PUTs) the reset comes instead of the status line: the
 *   upstream has done the work but the client cannot know, like a response lost on the way back.
 * - `stall`: nothing is answered for `stallMs`, then the request is forwarded if the client is still there.
 */
export type FaultKind = '500' | '503' | 'reset' | 'reset-mid-body' | 'stall';

export interface FaultConfig {
  /** Probability, 0..1, that an eligible request gets a fault. */
  rate: number;
  /** The kinds to choose from, uniformly. */
  kinds: readonly FaultKind[];
  /** How long a `stall` holds the request. Default 30 000 ms: longer than any sane client timeout. */
  stallMs?: number;
  /** Only these operations are eligible. Default: all. Ineligible requests do not consume randomness. */
  onlyOperations?: readonly ProxyOperation[];
  /** PRNG seed; the same seed and the same sequence of eligible requests give the same faults. Default 1. */
  seed?: number;
  /** For `reset-mid-body`: bytes of body sent before the reset. Default 64 KiB, at most half the body. */
  resetAfterBytes?: number;
  /**
   * For `reset-mid-body`: how long to wait, once those bytes are handed to the kernel, before the reset.
   * Default 0. A reset throws away what the client's kernel holds unread, so a test that needs the
   * client to have read bytes before the break gives it this time.
   */
  resetDelayMs?: number;
  /** Stop injecting after this many faults (for "the first attempt fails, the retry succeeds"). Default: no limit. */
  maxFaults?: number;
}

/** A `reset-mid-body` fault: the body bytes sent, then the wait before the reset. */
export interface MidBodyReset {
  readonly afterBytes: number;
  readonly delayMs: number;
}

/** `503`: every request answers 503 in the dialect. `refuse`: the proxy stops listening (connection refused). */
export type DownMode = '503' | 'refuse';

/** One request as the proxy saw it. */
export interface ProxiedRequest {
  /** Arrival order, from 1; `reset()` does not restart it. */
  seq: number;
  method: string;
  /** The raw request path without the query. */
  path: string;
  /** The parsed query; signature values (`X-Amz-Signature`, `sig`, ...) are replaced by `REDACTED`. */
  query: Record<string, string>;
  operation: ProxyOperation;
  /** The status the client received; null when none reached it (reset, abandoned stall). */
  status: number | null;
  /** Body bytes received from the client. */
  requestBytes: number;
  /** Body bytes sent to the client. */
  responseBytes: number;
  /** The request's `x-test-client` header, or `app`. */
  client: string;
  /** The fault injected, `down` for an answer given while down, or null. */
  fault: FaultKind | 'down' | null;
  /** The `x-amz-content-sha256` header as sent (a SHA-256 in hex, or `UNSIGNED-PAYLOAD`), or null. */
  payloadHash: string | null;
  /** The headers a SigV4 `Authorization` header says it signed (never the signature itself), or null. */
  signedHeaders: string[] | null;
  /** For a request with a Content-MD5 whose whole body was forwarded: whether the header matches those bytes; otherwise null. */
  contentMd5MatchesBody: boolean | null;
  /** From arrival to the end of the exchange; null while in flight. */
  durationMs: number | null;
}

export interface HttpProxyOptions {
  /** The upstream origin, e.g. `http://127.0.0.1:4568`. Its path, if any, is ignored: requests keep theirs. */
  upstream: string;
  dialect: Dialect;
  /** Faults from the start; change them later with `setFaults`. */
  faults?: FaultConfig;
}

export interface HttpProxy {
  /** `http://127.0.0.1:PORT`: use it where the upstream origin would go (S3 endpoint, Azure blob endpoint's origin). */
  readonly url: string;
  readonly port: number;
  /** A copy of the log, in arrival order. */
  requests(): ProxiedRequest[];
  /** Clears the log; fault settings and the PRNG state stay. */
  reset(): void;
  /** How many logged requests had this operation (and this `x-test-client`, when given). */
  countBy(operation: ProxyOperation, client?: string): number;
  /** Replaces the fault settings and re-seeds the PRNG; null turns faults off. */
  setFaults(faults: FaultConfig | null): void;
  /** Answers uploads signed with `UNSIGNED-PAYLOAD` with 400 InvalidRequest, as some S3-compatible services do. */
  setRefuseUnsignedPayload(refuse: boolean): void;
  /**
   * Takes the target down (`503` or `refuse`) or brings it back (null). Resolves once in effect. With
   * `retryAfterSeconds`, each 503 carries `Retry-After` (and, in the Azure dialect, `x-ms-retry-after-ms`),
   * as a throttling service's does.
   */
  setDown(mode: DownMode | null, options?: { readonly retryAfterSeconds?: number }): Promise<void>;
  close(): Promise<void>;
}

const DEFAULT_STALL_MS = 30_000;
const DEFAULT_RESET_AFTER_BYTES = 64 * 1024;

/** Query parameters whose values are credentials; they never enter the log. */
const SECRET_QUERY_PARAMS = new Set(['x-amz-signature', 'x-amz-credential', 'x-amz-security-token', 'signature', 'sig']);

/** Headers that describe one hop, not the message: never copied from one connection to the next. */
const HOP_BY_HOP_HEADERS = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  // Node's server has already answered `100 Continue` to the client.
  'expect',
]);

/**
 * Listens on a free loopback port and tracks the server's connections, so `closeNow` ends them with
 * it (a keep-alive client would otherwise hold `close` open). Shared by every test server here.
 */
export async function listenOnLoopback(server: http.Server, options: { readonly relistens?: boolean } = {}): Promise<{ port: number; url: string; closeNow(): Promise<void> }> {
  const sockets = new Set<Socket>();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  if (options.relistens === true) await listenBelowEphemeralPorts(server);
  else {
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
  }
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    closeNow: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}

/**
 * Listens on a free port below Linux's ephemeral range (32768-60999), where outgoing connections take
 * their local ports: a server that stops listening and listens again on the same port (a target that
 * goes down and comes back) would otherwise find it taken by a client socket now and then (EADDRINUSE).
 */
async function listenBelowEphemeralPorts(server: http.Server): Promise<void> {
  for (let attempt = 0; ; attempt += 1) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const outcome = await new Promise<'listening' | Error>((resolve) => {
      const onError = (error: Error): void => {
        server.off('listening', onListening);
        resolve(error);
      };
      const onListening = (): void => {
        server.off('error', onError);
        resolve('listening');
      };
      server.once('error', onError);
      server.once('listening', onListening);
      server.listen(port, '127.0.0.1');
    });
    if (outcome === 'listening') return;
    if ((outcome as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 50) throw outcome;
  }
}

/**
 * The connection pool a test server uses towards an emulator. Emulators close idle keep-alive
 * connections after 5 s (Node's default, Azurite and s3rver alike); a pooled connection reused just
 * after that fails with EPIPE or ECONNRESET, which a proxy can only answer with 502. Idle
 * connections are dropped here after 3 s, before the emulator drops them.
 */
export function upstreamAgent(): http.Agent {
  return new http.Agent({ keepAlive: true, timeout: 3000 });
}

export async function startHttpProxy(options: HttpProxyOptions): Promise<HttpProxy> {
  const upstream = new URL(options.upstream);
  if (upstream.protocol !== 'http:') throw new Error(`startHttpProxy: upstream ${upstream.origin} must be plain http`);
  const agent = upstreamAgent();
  const log: ProxiedRequest[] = [];
  let seq = 0;
  let faults: FaultConfig | null = null;
  let random = mulberry32(1);
  let faultsInjected = 0;
  let downMode: DownMode | null = null;
  let downRetryAfterSeconds: number | undefined;
  let refuseUnsignedPayload = false;
  const stallTimers = new Set<NodeJS.Timeout>();

  const setFaults = (next: FaultConfig | null): void => {
    if (next !== null) {
      if (!(next.rate >= 0 && next.rate <= 1)) throw new Error(`setFaults: rate ${next.rate} is not within 0..1`);
      if (next.kinds.length === 0 && next.rate > 0) throw new Error('setFaults: kinds is empty');
    }
    faults = next;
    random = mulberry32(next?.seed ?? 1);
    faultsInjected = 0;
  };
  if (options.faults) setFaults(options.faults);

  const chooseFault = (operation: ProxyOperation): FaultKind | null => {
    if (faults === null || faults.rate === 0) return null;
    if (faults.onlyOperations && !faults.onlyOperations.includes(operation)) return null;
    if (faults.maxFaults !== undefined && faultsInjected >= faults.maxFaults) return null;
    const hit = random() < faults.rate;
    const kind = faults.kinds[Math.floor(random() * faults.kinds.length)];
    if (!hit || kind === undefined) return null;
    faultsInjected += 1;
    return kind;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const started = performance.now();
    const { path, query } = splitTarget(req.url ?? '/');
    const operation = options.dialect === 's3' ? classifyS3Request(req.method ?? 'GET', path, query, req.headers) : classifyAzureRequest(req.method ?? 'GET', path, query, req.headers);
    const entry: ProxiedRequest = {
      seq: ++seq,
      method: req.method ?? 'GET',
      path,
      query: redactQuery(query),
      operation,
      status: null,
      requestBytes: 0,
      responseBytes: 0,
      client: headerValue(req.headers['x-test-client']) ?? 'app',
      fault: null,
      payloadHash: headerValue(req.headers['x-amz-content-sha256']) ?? null,
      signedHeaders: signedHeadersOf(headerValue(req.headers.authorization)),
      contentMd5MatchesBody: null,
      durationMs: null,
    };
    log.push(entry);
    const contentMd5 = headerValue(req.headers['content-md5']);
    const forward = async (reset?: MidBodyReset): Promise<void> => {
      const body = contentMd5 === undefined ? undefined : createHash('md5');
      await forwardRequest(req, res, upstream, agent, entry, reset, body);
      if (body !== undefined && req.complete) entry.contentMd5MatchesBody = body.digest('base64') === contentMd5;
    };
    try {
      if (downMode === '503') {
        entry.fault = 'down';
        await answerWithError(req, res, entry, options.dialect, 503, undefined, downRetryAfterSeconds);
        return;
      }
      if (refuseUnsignedPayload && entry.payloadHash === 'UNSIGNED-PAYLOAD') {
        await answerWithError(req, res, entry, options.dialect, 400, ['InvalidRequest', 'UNSIGNED-PAYLOAD is not supported by this service']);
        return;
      }
      const fault = chooseFault(operation);
      entry.fault = fault;
      switch (fault) {
        case '500':
        case '503':
          await answerWithError(req, res, entry, options.dialect, fault === '500' ? 500 : 503);
          return;
        case 'reset':
          resetSocket(req.socket);
          return;
        case 'stall': {
          const stallMs = faults?.stallMs ?? DEFAULT_STALL_MS;
          await new Promise<void>((resolve) => {
            const end = (): void => {
              clearTimeout(timer);
              stallTimers.delete(timer);
              req.socket.off('close', end);
              resolve();
            };
            const timer = setTimeout(end, stallMs);
            stallTimers.add(timer);
            req.socket.once('close', end);
          });
          if (req.socket.destroyed) return;
          await forward();
          return;
        }
        case 'reset-mid-body':
          await forward({ afterBytes: faults?.resetAfterBytes ?? DEFAULT_RESET_AFTER_BYTES, delayMs: faults?.resetDelayMs ?? 0 });
          return;
        case null:
          await forward();
          return;
      }
    } finally {
      entry.durationMs = Math.round(performance.now() - started);
    }
  };

  const server = http.createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      // A bug here must show in the test output, not hang the client.
      process.stderr.write(`${JSON.stringify({ event: 'http_proxy_error', error: String(error) })}\n`);
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    });
  });
  // It stops listening and listens again on the same port when taken down with `refuse`.
  const { port, closeNow } = await listenOnLoopback(server, { relistens: true });
  const stopListening = async (): Promise<void> => {
    if (server.listening) await closeNow();
  };

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests: () => log.map((entry) => ({ ...entry, query: { ...entry.query }, signedHeaders: entry.signedHeaders === null ? null : [...entry.signedHeaders] })),
    reset: () => {
      log.length = 0;
    },
    countBy: (operation, client) => log.filter((entry) => entry.operation === operation && (client === undefined || entry.client === client)).length,
    setFaults,
    setRefuseUnsignedPayload: (refuse) => {
      refuseUnsignedPayload = refuse;
    },
    setDown: async (mode, downOptions) => {
      downMode = mode;
      downRetryAfterSeconds = downOptions?.retryAfterSeconds;
      if (mode === 'refuse') {
        await stopListening();
        // Let in-process clients see their dropped keep-alive connections before the next call.
        await new Promise((resolve) => setTimeout(resolve, 20));
      } else if (!server.listening) {
        server.listen(port, '127.0.0.1');
        await once(server, 'listening');
      }
    },
    close: async () => {
      for (const timer of stallTimers) clearTimeout(timer);
      stallTimers.clear();
      await stopListening();
      agent.destroy();
    },
  };
}

/**
 * Streams one request to `upstream` and its answer back, counting body bytes into `counters` as
 * they pass. Resolves when the exchange is over, whichever way it ended; never rejects.
 * With `reset`, the client's connection is reset after `reset.afterBytes` body bytes (at most half
 * the body), or before the status line when the answer has no body. `requestBody` sees every request
 * body byte forwarded.
 */
export async function forwardRequest(
  req: IncomingMessage,
  res: ServerResponse,
  upstream: URL,
  agent: http.Agent,
  counters: { status: number | null; requestBytes: number; responseBytes: number },
  reset?: MidBodyReset,
  requestBody?: Hash,
): Promise<void> {
  const upstreamReq = http.request({
    protocol: 'http:',
    hostname: upstream.hostname,
    port: upstream.port,
    method: req.method,
    path: req.url,
    // The Host header is kept: a signature may cover it.
    headers: withoutHopByHop(req.rawHeaders),
    agent,
  });
  // The client leaving mid-exchange must stop the upstream side too.
  const abandon = (): void => {
    if (!res.writableFinished) upstreamReq.destroy();
  };
  res.once('close', abandon);

  const requestSent = pipeline(req, countInto((n) => (counters.requestBytes += n), requestBody), upstreamReq).catch(() => undefined);

  let upstreamRes: IncomingMessage;
  try {
    [upstreamRes] = (await once(upstreamReq, 'response')) as [IncomingMessage];
  } catch (error) {
    // The upstream itself failed (not listening, or reset): an emulator problem, so say so plainly.
    if (!res.headersSent && !res.destroyed) {
      counters.status = 502;
      res.writeHead(502, { 'content-type': 'text/plain' }).end(`http-proxy: upstream ${upstream.origin} failed: ${String(error)}`);
    }
    await requestSent;
    return;
  }

  const headers = withoutHopByHop(upstreamRes.rawHeaders);
  const status = upstreamRes.statusCode ?? 502;
  if (reset !== undefined) {
    const bodyLength = Number(headerValue(upstreamRes.headers['content-length']) ?? Number.NaN);
    const hasBody = req.method !== 'HEAD' && status !== 204 && status !== 304 && bodyLength !== 0;
    if (!hasBody) {
      upstreamRes.resume();
      resetSocket(req.socket);
      await requestSent;
      return;
    }
    const limit = Number.isFinite(bodyLength) ? Math.max(1, Math.min(reset.afterBytes, Math.floor(bodyLength / 2))) : reset.afterBytes;
    counters.status = status;
    res.writeHead(status, upstreamRes.statusMessage, headers);
    await sendThenReset(upstreamRes, res, req.socket, limit, reset.delayMs, (n) => (counters.responseBytes += n));
    await requestSent;
    return;
  }

  counters.status = status;
  res.writeHead(status, upstreamRes.statusMessage, headers);
  await pipeline(upstreamRes, countInto((n) => (counters.responseBytes += n)), res).catch(() => {
    // Either side went away; the other is already torn down by pipeline().
  });
  await requestSent;
}

/** Writes the first `limit` body bytes to the client, waits until they are flushed (and `delayMs` more), then resets the connection. */
async function sendThenReset(upstreamRes: IncomingMessage, res: ServerResponse, socket: Socket, limit: number, delayMs: number, count: (n: number) => void): Promise<void> {
  let sent = 0;
  for await (const chunk of upstreamRes as AsyncIterable<Buffer>) {
    const part = chunk.subarray(0, limit - sent);
    sent += part.length;
    count(part.length);
    const flushed = new Promise<void>((resolve) => res.write(part, () => resolve()));
    if (sent >= limit) {
      await flushed;
      break;
    }
    if (res.writableNeedDrain) await once(res, 'drain');
  }
  if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
  upstreamRes.destroy();
  resetSocket(socket);
}

/** Answers 500 or 503 in the dialect after reading the request body, as a real server would. */
async function answerWithError(req: IncomingMessage, res: ServerResponse, entry: ProxiedRequest, dialect: Dialect, status: 400 | 500 | 503, s3Error?: [code: string, message: string], retryAfterSeconds?: number): Promise<void> {
  const retryAfter = retryAfterSeconds === undefined ? {} : { 'retry-after': String(retryAfterSeconds) };
  await pipeline(req, countInto((n) => (entry.requestBytes += n)), sink()).catch(() => undefined);
  if (res.destroyed) return;
  const requestId = randomUUID();
  if (dialect === 's3') {
    const [code, message] = s3Error ?? (status === 500 ? ['InternalError', 'We encountered an internal error. Please try again.'] : ['SlowDown', 'Please reduce your request rate.']);
    const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message><RequestId>${requestId}</RequestId><HostId>http-proxy</HostId></Error>`;
    entry.status = status;
    entry.responseBytes += req.method === 'HEAD' ? 0 : Buffer.byteLength(body);
    res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body), 'x-amz-request-id': requestId, ...retryAfter }).end(body);
    return;
  }
  const [code, message] =
    status === 500 ? ['InternalError', 'The server encountered an internal error. Please retry the request.'] : ['ServerBusy', 'The server is currently unable to receive requests. Please retry your request.'];
  entry.status = status;
  const headers = retryAfterSeconds === undefined ? {} : { ...retryAfter, 'x-ms-retry-after-ms': String(retryAfterSeconds * 1000) };
  entry.responseBytes += writeAzureError(req, res, { status, code, message, requestId, headers });
}

export interface AzureErrorAnswer {
  status: number;
  /** Azure's error code, e.g. `ServerBusy`, `CannotVerifyCopySource`. */
  code: string;
  /** The first line of the message; `RequestId:` and `Time:` lines are appended as Azure does. */
  message: string;
  requestId?: string;
  /** Extra elements of `<Error>`, e.g. `CopySourceStatusCode`, in order. Values are XML-escaped. */
  elements?: Record<string, string>;
  /** Extra response headers, e.g. `x-ms-copy-source-status-code`. */
  headers?: OutgoingHttpHeaders;
}

/** Writes an Azure Storage error response (XML body, `x-ms-error-code`) and returns the body bytes sent. */
export function writeAzureError(req: IncomingMessage, res: ServerResponse, answer: AzureErrorAnswer): number {
  const requestId = answer.requestId ?? randomUUID();
  const extra = Object.entries(answer.elements ?? {})
    .map(([name, value]) => `<${name}>${escapeXml(value)}</${name}>`)
    .join('');
  const message = `${answer.message}\nRequestId:${requestId}\nTime:${new Date().toISOString()}`;
  const body = `<?xml version="1.0" encoding="utf-8"?><Error><Code>${escapeXml(answer.code)}</Code><Message>${escapeXml(message)}</Message>${extra}</Error>`;
  const clientRequestId = headerValue(req.headers['x-ms-client-request-id']);
  res.writeHead(answer.status, {
    'content-type': 'application/xml',
    'content-length': Buffer.byteLength(body),
    'x-ms-error-code': answer.code,
    'x-ms-request-id': requestId,
    'x-ms-version': headerValue(req.headers['x-ms-version']) ?? '2025-01-05',
    ...(clientRequestId === undefined ? {} : { 'x-ms-client-request-id': clientRequestId }),
    ...answer.headers,
  });
  res.end(req.method === 'HEAD' ? undefined : body);
  return req.method === 'HEAD' ? 0 : Buffer.byteLength(body);
}

/** Names the S3 operation of a path-style request (`/bucket` or `/bucket/key`). */
export function classifyS3Request(method: string, path: string, query: Record<string, string>, headers: http.IncomingHttpHeaders): S3Operation | 'other' {
  const hasKey = /^\/[^/]+\/.+/.test(path);
  const has = (name: string): boolean => Object.hasOwn(query, name);
  if (!hasKey) {
    if (method === 'GET' && query['list-type'] === '2') return 'ListObjectsV2';
    if (method === 'GET' && has('uploads')) return 'ListMultipartUploads';
    if (method === 'POST' && has('delete')) return 'DeleteObjects';
    if (method === 'PUT' && Object.keys(query).length === 0) return 'CreateBucket';
    return 'other';
  }
  const copies = headers['x-amz-copy-source'] !== undefined;
  switch (method) {
    case 'GET':
      if (has('uploadId')) return 'ListParts';
      return has('acl') || has('tagging') ? 'other' : 'GetObject';
    case 'HEAD':
      return 'HeadObject';
    case 'PUT':
      if (has('partNumber') && has('uploadId')) return copies ? 'other' : 'UploadPart';
      return copies || has('acl') || has('tagging') ? 'other' : 'PutObject';
    case 'POST':
      if (has('uploads')) return 'CreateMultipartUpload';
      if (has('uploadId')) return 'CompleteMultipartUpload';
      return 'other';
    case 'DELETE':
      return has('uploadId') ? 'AbortMultipartUpload' : 'DeleteObject';
    default:
      return 'other';
  }
}

/** Names the Azure Blob operation of a path-style request (`/account/container/blob`). */
export function classifyAzureRequest(method: string, path: string, query: Record<string, string>, headers: http.IncomingHttpHeaders): AzureOperation | 'other' {
  const segments = path.split('/').filter((segment) => segment !== '');
  const level = segments.length <= 1 ? 'account' : segments.length === 2 ? 'container' : 'blob';
  const comp = query['comp'];
  if (comp === 'batch' && method === 'POST') return 'BlobBatch';
  if (comp === 'lease' && method === 'PUT') return 'Lease';
  if (level === 'container' && query['restype'] === 'container') {
    if (method === 'PUT' && comp === undefined) return 'CreateContainer';
    if (method === 'GET' && comp === 'list') return 'ListBlobs';
    return 'other';
  }
  if (level !== 'blob') return 'other';
  const copySource = headers['x-ms-copy-source'] !== undefined;
  switch (method) {
    case 'PUT':
      if (comp === 'block') return copySource ? 'PutBlockFromURL' : 'PutBlock';
      if (comp === 'blocklist') return 'PutBlockList';
      if (comp !== undefined) return 'other';
      if (!copySource) return 'PutBlob';
      // Copy Blob carries no blob type; Copy Blob From URL says x-ms-requires-sync.
      return headers['x-ms-blob-type'] !== undefined && headers['x-ms-requires-sync'] === undefined ? 'PutBlobFromURL' : 'other';
    case 'GET':
      return comp === undefined ? 'GetBlob' : 'other';
    case 'HEAD':
      return comp === undefined ? 'GetBlobProperties' : 'other';
    case 'DELETE':
      return comp === undefined ? 'DeleteBlob' : 'other';
    default:
      return 'other';
  }
}

/** Splits a request target into its raw path and parsed query (the last of repeated names wins). */
export function splitTarget(target: string): { path: string; query: Record<string, string> } {
  const at = target.indexOf('?');
  const path = at === -1 ? target : target.slice(0, at);
  const query: Record<string, string> = {};
  if (at !== -1) {
    for (const [name, value] of new URLSearchParams(target.slice(at + 1))) query[name] = value;
  }
  return { path, query };
}

function redactQuery(query: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(query).map(([name, value]) => [name, SECRET_QUERY_PARAMS.has(name.toLowerCase()) ? 'REDACTED' : value]));
}

/** `SignedHeaders=a;b;c` of a SigV4 Authorization header, as a list. */
function signedHeadersOf(authorization: string | undefined): string[] | null {
  const list = authorization === undefined ? undefined : /SignedHeaders=([^,\s]+)/.exec(authorization)?.[1];
  return list === undefined ? null : list.split(';');
}

export function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** Raw header list (name, value, name, value, ...) without hop-by-hop headers, case kept. */
export function withoutHopByHop(rawHeaders: string[]): string[] {
  const kept: string[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    if (!HOP_BY_HOP_HEADERS.has(name.toLowerCase())) kept.push(name, rawHeaders[i + 1] as string);
  }
  return kept;
}

/** Resets (RST) rather than closes, so the client sees ECONNRESET as on a real network fault. */
function resetSocket(socket: Socket): void {
  if (typeof socket.resetAndDestroy === 'function' && !socket.destroyed) socket.resetAndDestroy();
  else socket.destroy();
}

function countInto(add: (bytes: number) => void, hash?: Hash): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      add(chunk.length);
      hash?.update(chunk);
      done(null, chunk);
    },
  });
}

function sink(): Writable {
  return new Writable({
    write(_chunk: Buffer, _encoding, done) {
      done();
    },
  });
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** A small seeded PRNG (mulberry32): reproducible fault sequences without a dependency. */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
