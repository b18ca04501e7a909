/**
 * A protocol-level S3 stand-in in front of s3rver: it adds what the emulator lacks and what a test
 * needs to provoke, at the HTTP level, so the app's real S3 client talks to it unmodified.
 *
 * What it plays, and why:
 * - **Real OCI's (and S3's) atomic PutObject** (`atomicPuts`). s3rver writes a PUT body into the object
 *   as it arrives, so a client killed mid-body leaves a partial object visible; real S3 and OCI never
 *   show one. The stand-in buffers the whole body and forwards it only once it is complete (as many
 *   bytes as Content-Length says); a body cut short is dropped and never reaches s3rver. A complete body
 *   whose MD5 is not its Content-MD5 is refused with 400 BadDigest and stored nowhere, as S3 and OCI do
 *   (s3rver stores it whatever its Content-MD5 says).
 * - **ListMultipartUploads, ListParts and AbortMultipartUpload** (`multipartUploads`). s3rver answers them
 *   501 (ListParts: NotImplemented) and 405. The stand-in tracks the uploads it saw created (the UploadId
 *   in s3rver's answer), their parts (number, size and ETag of each UploadPart s3rver accepted) and
 *   completed, answers ListMultipartUploads and ListParts from that record (one page each, as S3 shapes
 *   them), and answers AbortMultipartUpload itself (204); after an abort, UploadPart, ListParts and
 *   CompleteMultipartUpload of that upload get 404 NoSuchUpload, as on S3. The parts of an aborted upload
 *   stay in s3rver's data directory, where no listing shows them.
 * - **Archived objects** (`setArchived({ key: storageClass })`): each key is listed with that
 *   `<StorageClass>` (`GLACIER`, `DEEP_ARCHIVE`, or `INTELLIGENT_TIERING` for an object in one of that
 *   class's archive tiers, which a listing does not show) and a GetObject of it answers 403
 *   InvalidObjectState, as S3 answers for an archived object not restored (HEAD still answers 200, as on S3).
 * - **A listing cut short** (`setListing({ cutShortAfter })`): a ListObjectsV2 page keeps only its first
 *   N entries and says it is truncated but gives no continuation token.
 * - **Small listing pages, and a listing that breaks after its first page** (`setListing({ pageSize,
 *   failContinuations })`): `max-keys` is set on every ListObjectsV2 (s3rver checks no signatures);
 *   with `failContinuations`, every page after the first (a request with a continuation token) gets
 *   500 InternalError.
 * - **Bytes corrupted on the way** (`setCorruptReads(keys)`): every GetObject of those keys has one byte
 *   in the middle of its body flipped; the length and headers (ETag included) stay as they were.
 * - **Objects uploaded in parts, as S3 shows them** (`setMultipartLayout({ key: partSize })`). s3rver gives
 *   a multipart object a plain MD5 ETag and ignores `partNumber` and `If-Match`. For these keys the
 *   stand-in plays the object stored in s3rver as if it had been uploaded in parts of that size (the
 *   last part the rest; or, given a list, parts of those sizes and the rest as the last part): listings,
 *   HEAD and GET give S3's multipart ETag computed from the stored bytes (`hex(MD5(MD5(part 1) || ...))-N`),
 *   HEAD and GET `?partNumber=k` answer 206 with that part's length (and bytes) and
 *   `x-amz-mp-parts-count: N`, and an `If-Match` other than that ETag is answered 412
 *   PreconditionFailed (s3rver would serve any version). With `{ partNumberIgnored: true }`,
 *   `?partNumber=` requests are answered as s3rver answers them (the whole object, no parts count), as
 *   a service without that feature would. Corrupted reads apply to these keys too.
 * - **A careless service** (`setEchoErrors(true)`): every request is answered 400 InvalidRequest with a
 *   message that repeats the request line and its Authorization header (key id, signature), as some
 *   S3-compatible services and gateways do; what the app makes of such a message must not leak them.
 * - **A request held at the door** (`holdNext`): the next request of an operation waits until the test
 *   releases it; if its client went away meanwhile (killed), it is dropped, never forwarded.
 *
 * `idle()` waits until no exchange with s3rver is in flight: s3rver's own writes (a forwarded PUT, the
 * concatenation at CompleteMultipartUpload) are not atomic either, so a test reads s3rver only then.
 * Path-style addressing only (`/bucket/key`).
 */
import { createHash, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { classifyS3Request, listenOnLoopback, splitTarget, upstreamAgent, withoutHopByHop, type S3Operation } from './http-proxy.ts';

export interface S3StandInOptions {
  /** s3rver's origin, `http://127.0.0.1:PORT`. */
  readonly upstream: string;
  /** Buffer PutObject bodies and forward only complete ones (real OCI/S3: a PUT is atomic). Default false. */
  readonly atomicPuts?: boolean;
  /** Track multipart uploads and serve ListMultipartUploads / AbortMultipartUpload. Default false. */
  readonly multipartUploads?: boolean;
}

/** A multipart upload as the stand-in saw it. */
export interface TrackedUpload {
  readonly bucket: string;
  readonly key: string;
  readonly uploadId: string;
  readonly initiatedMs: number;
  state: 'in-progress' | 'completed' | 'aborted';
  /** When it was aborted (epoch ms). */
  abortedMs?: number;
  /** Parts s3rver accepted, by part number. */
  readonly parts: Map<number, { readonly size: number; readonly etag: string }>;
}

/** One request as the stand-in saw it. */
export interface StandInRequest {
  readonly operation: S3Operation | 'other';
  readonly method: string;
  readonly path: string;
  /** The status sent to the client; null while in flight or when none was sent. */
  status: number | null;
  /** What the stand-in did beyond forwarding: `dropped` (partial PUT body, or a held request whose client left), `served` (answered itself), `rewritten`, `corrupted`. */
  handling: 'forwarded' | 'dropped' | 'served' | 'rewritten' | 'corrupted';
  /** Body bytes received from the client. */
  requestBytes: number;
}

export interface ListingRewrite {
  /** Keep only the first N entries of each page, and say truncated without a continuation token. */
  readonly cutShortAfter?: number;
  /** `max-keys` for every ListObjectsV2 page. */
  readonly pageSize?: number;
  /** Answer 500 to every page after the first. */
  readonly failContinuations?: boolean;
}

/** How a key is played as uploaded in parts: every part that size (the last the rest), or these sizes and the rest as the last part. */
export type MultipartLayout = number | readonly number[];

export interface HeldRequest {
  readonly operation: S3Operation | 'other';
  readonly path: string;
  /** Lets the request go on (or be dropped, if its client has gone). */
  release(): void;
}

export interface S3StandIn {
  /** `http://127.0.0.1:PORT`: use it as the S3 endpoint. */
  readonly url: string;
  /** A copy of the log, in arrival order. */
  requests(): StandInRequest[];
  /** Clears the log (not the uploads). */
  reset(): void;
  /** Multipart uploads seen so far (all states), optionally of one bucket. */
  uploads(bucket?: string): TrackedUpload[];
  setListing(rewrite: ListingRewrite | null): void;
  /** Answer every request 400 with a message that echoes the request line and Authorization header. */
  setEchoErrors(on: boolean): void;
  /** Corrupt every GetObject body of these keys (empty: none). */
  setCorruptReads(keys: readonly string[]): void;
  /** Play these keys as uploaded in parts (empty: none); see the header comment. */
  setMultipartLayout(layouts: Readonly<Record<string, MultipartLayout>>, options?: { readonly partNumberIgnored?: boolean }): void;
  /** List each key with the given storage class and answer its GetObject 403 InvalidObjectState (empty: none). */
  setArchived(storageClassByKey: Readonly<Record<string, string>>): void;
  /** Resolves when the next request of `operation` (whose path and query satisfy `matches`) arrives; it waits until released. */
  holdNext(operation: S3Operation, matches?: (path: string, query: Readonly<Record<string, string>>) => boolean): Promise<HeldRequest>;
  /** Resolves once no exchange with s3rver is in flight. */
  idle(): Promise<void>;
  close(): Promise<void>;
}

export async function startS3StandIn(options: S3StandInOptions): Promise<S3StandIn> {
  const upstream = new URL(options.upstream);
  const agent = upstreamAgent();
  const log: StandInRequest[] = [];
  const uploads = new Map<string, TrackedUpload>();
  const holds: { operation: S3Operation; matches: (path: string, query: Readonly<Record<string, string>>) => boolean; arrived: (held: HeldRequest) => void }[] = [];
  let listing: ListingRewrite | null = null;
  let corruptKeys = new Set<string>();
  let archivedKeys = new Map<string, string>();
  let layouts = new Map<string, MultipartLayout>();
  let partNumberIgnored = false;
  let echoErrors = false;
  let inFlight = 0;

  /** One exchange with s3rver; `body` replaces the client's (buffered) body, `headers` its headers. Counts as in flight until the answer is consumed. */
  const send = async (req: IncomingMessage, target: string, body?: Buffer, headers = withoutHopByHop(req.rawHeaders)): Promise<IncomingMessage> => {
    const upstreamReq = http.request({
      hostname: upstream.hostname,
      port: upstream.port,
      method: req.method,
      path: target,
      headers,
      agent,
    });
    if (body !== undefined) upstreamReq.end(body);
    else void pipeline(req, upstreamReq).catch(() => undefined);
    const [response] = (await once(upstreamReq, 'response')) as [IncomingMessage];
    return response;
  };
  /** The object as the stand-in plays it uploaded in parts: read whole from s3rver (anonymously: s3rver lets it). */
  const multipartView = async (bucket: string, key: string, layout: MultipartLayout): Promise<MultipartView> => {
    const response = await new Promise<IncomingMessage>((resolve, reject) => {
      http.get({ hostname: upstream.hostname, port: upstream.port, path: `/${encodeURIComponent(bucket)}/${key.split('/').map(encodeURIComponent).join('/')}`, agent }, resolve).on('error', reject);
    });
    const bytes = await readAll(response);
    if (response.statusCode !== 200) throw new Error(`s3rver answered ${String(response.statusCode)} to a GET of ${key}`);
    return multipartViewOf(bytes, layout);
  };
  const tracked = async <T>(work: () => Promise<T>): Promise<T> => {
    inFlight += 1;
    try {
      return await work();
    } finally {
      inFlight -= 1;
    }
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const method = req.method ?? 'GET';
    const { path, query } = splitTarget(req.url ?? '/');
    const operation = classifyS3Request(method, path, query, req.headers);
    const entry: StandInRequest = { operation, method, path, status: null, handling: 'forwarded', requestBytes: 0 };
    log.push(entry);
    const bucket = decodeURIComponent(path.split('/')[1] ?? '');
    const key = decodeURIComponent(path.split('/').slice(2).join('/'));

    const hold = holds.findIndex((candidate) => candidate.operation === operation && candidate.matches(path, query));
    if (hold !== -1) {
      const [{ arrived }] = holds.splice(hold, 1) as [(typeof holds)[number]];
      await new Promise<void>((resolve) => {
        const end = (): void => {
          req.socket.off('close', end);
          resolve();
        };
        req.socket.once('close', end);
        arrived({ operation, path, release: end });
      });
      if (req.socket.destroyed) {
        entry.handling = 'dropped';
        return;
      }
    }

    const reply = (status: number, body = '', headers: Record<string, string> = {}): void => {
      entry.status = status;
      res.writeHead(status, { 'x-amz-request-id': randomUUID(), ...(body === '' ? {} : { 'content-type': 'application/xml' }), 'content-length': String(Buffer.byteLength(body)), ...headers });
      res.end(body);
    };
    const noSuchUpload = (uploadId: string): void => {
      entry.handling = 'served';
      reply(404, s3Error('NoSuchUpload', 'The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.', `<UploadId>${escapeXml(uploadId)}</UploadId>`));
    };
    const relay = async (response: IncomingMessage, transform?: Transform): Promise<void> => {
      entry.status = response.statusCode ?? 502;
      res.writeHead(entry.status, response.statusMessage, withoutHopByHop(response.rawHeaders));
      await (transform === undefined ? pipeline(response, res) : pipeline(response, transform, res)).catch(() => undefined);
    };
    const relayRewritten = (response: IncomingMessage, body: Buffer): void => {
      entry.status = response.statusCode ?? 502;
      res.writeHead(entry.status, response.statusMessage, [...withoutHeader(withoutHopByHop(response.rawHeaders), 'content-length'), 'content-length', String(body.byteLength)]);
      res.end(body);
    };

    if (echoErrors) {
      entry.handling = 'served';
      await completeBody(req, entry);
      reply(400, s3Error('InvalidRequest', `Cannot serve ${method} ${req.url ?? '/'} (Authorization: ${String(req.headers.authorization)})`));
      return;
    }
    if (options.multipartUploads && operation === 'ListMultipartUploads') {
      entry.handling = 'served';
      const open = [...uploads.values()].filter((upload) => upload.bucket === bucket && upload.state === 'in-progress').sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.uploadId < b.uploadId ? -1 : 1));
      reply(200, listMultipartUploadsXml(bucket, open));
      return;
    }
    if (options.multipartUploads && operation === 'AbortMultipartUpload') {
      const uploadId = query['uploadId'] ?? '';
      const upload = uploads.get(uploadId);
      if (upload === undefined || upload.state !== 'in-progress') return noSuchUpload(uploadId);
      upload.state = 'aborted';
      upload.abortedMs = Date.now();
      entry.handling = 'served';
      reply(204);
      return;
    }
    if (options.multipartUploads && (operation === 'UploadPart' || operation === 'CompleteMultipartUpload' || operation === 'ListParts')) {
      const upload = uploads.get(query['uploadId'] ?? '');
      if (upload === undefined ? operation === 'ListParts' : upload.state !== 'in-progress') return noSuchUpload(query['uploadId'] ?? '');
      if (operation === 'ListParts') {
        entry.handling = 'served';
        reply(200, listPartsXml(upload!));
        return;
      }
      if (operation === 'UploadPart') {
        await tracked(async () => {
          const response = await send(req, req.url ?? '/');
          const etag = headerOf(response, 'etag');
          if (response.statusCode === 200 && etag !== undefined) upload!.parts.set(Number(query['partNumber']), { size: Number(req.headers['content-length'] ?? 0), etag });
          await relay(response);
        });
        return;
      }
    }

    const layout = layouts.get(key);
    if (layout !== undefined && (operation === 'GetObject' || operation === 'HeadObject')) {
      await tracked(async () => {
        const view = await multipartView(bucket, key, layout);
        const ifMatch = req.headers['if-match'];
        if (ifMatch !== undefined && ifMatch.replace(/"/g, '') !== view.etag) {
          entry.handling = 'served';
          reply(412, method === 'HEAD' ? '' : s3Error('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold', '<Condition>If-Match</Condition>'));
          return;
        }
        const partNumber = partNumberIgnored || query['partNumber'] === undefined ? undefined : Number(query['partNumber']);
        const part = partNumber === undefined ? undefined : view.parts[partNumber - 1];
        if (partNumber !== undefined && part === undefined) {
          entry.handling = 'served';
          reply(416, method === 'HEAD' ? '' : s3Error('InvalidPartNumber', 'The requested partnumber is not satisfiable'));
          return;
        }
        // s3rver serves the part as a byte range (GET; a HEAD's length is set here); `If-Match` was answered above.
        const unconditional = withoutHeader(withoutHopByHop(req.rawHeaders), 'if-match');
        const headers = part === undefined ? unconditional : [...withoutHeader(unconditional, 'range'), 'range', `bytes=${part.start}-${part.end}`];
        const response = await send(req, req.url ?? '/', undefined, headers);
        if (response.statusCode !== 200 && response.statusCode !== 206) return relay(response);
        entry.handling = 'rewritten';
        const replaced: Record<string, string> = part === undefined
          ? { etag: `"${view.etag}"` }
          : { etag: `"${view.etag}"`, 'x-amz-mp-parts-count': String(view.parts.length), 'content-length': String(part.end - part.start + 1), 'content-range': `bytes ${part.start}-${part.end}/${view.size}` };
        entry.status = part === undefined ? (response.statusCode ?? 502) : 206;
        res.writeHead(entry.status, withHeaders(withoutHopByHop(response.rawHeaders), replaced));
        const length = Number(response.headers['content-length'] ?? Number.NaN);
        const corrupt = operation === 'GetObject' && corruptKeys.has(key) && length > 0;
        if (corrupt) entry.handling = 'corrupted';
        await (corrupt ? pipeline(response, flipByteAt(Math.floor(length / 2)), res) : pipeline(response, res)).catch(() => undefined);
      });
      return;
    }

    if (operation === 'ListObjectsV2' && layouts.size > 0) {
      await tracked(async () => {
        const response = await send(req, req.url ?? '/');
        if (response.statusCode !== 200) return relay(response);
        entry.handling = 'rewritten';
        const text = (await readAll(response)).toString('utf8');
        const etags = new Map<string, string>();
        for (const [layoutKey, layout] of layouts) if (text.includes(`<Key>${escapeXml(layoutKey)}</Key>`)) etags.set(layoutKey, (await multipartView(bucket, layoutKey, layout)).etag);
        relayRewritten(response, Buffer.from(withEtags(text, etags)));
      });
      return;
    }

    if (archivedKeys.has(key) && operation === 'GetObject') {
      entry.handling = 'served';
      await completeBody(req, entry);
      reply(403, s3Error('InvalidObjectState', 'The operation is not valid for the object\'s storage class', '<StorageClass>GLACIER</StorageClass>'));
      return;
    }

    if (options.atomicPuts && operation === 'PutObject') {
      const body = await completeBody(req, entry);
      if (body === undefined) {
        // The client went away mid-body: real S3/OCI store nothing, so s3rver never hears of it.
        entry.handling = 'dropped';
        return;
      }
      const claimedMd5 = req.headers['content-md5'];
      if (typeof claimedMd5 === 'string' && createHash('md5').update(body).digest('base64') !== claimedMd5) {
        entry.handling = 'served';
        reply(400, s3Error('BadDigest', 'The Content-MD5 you specified did not match what we received.'));
        return;
      }
      // Complete bodies are stored even when the client has gone meanwhile, as a real service would.
      await tracked(async () => relay(await send(req, req.url ?? '/', body)));
      return;
    }

    if (options.multipartUploads && (operation === 'CreateMultipartUpload' || operation === 'CompleteMultipartUpload')) {
      await tracked(async () => {
        const response = await send(req, req.url ?? '/');
        const body = await readAll(response);
        const text = body.toString('utf8');
        if (response.statusCode === 200 && !text.includes('<Error>')) {
          if (operation === 'CreateMultipartUpload') {
            const uploadId = /<UploadId>([^<]+)<\/UploadId>/.exec(text)?.[1];
            if (uploadId !== undefined) uploads.set(uploadId, { bucket, key, uploadId, initiatedMs: Date.now(), state: 'in-progress', parts: new Map() });
          } else {
            const upload = uploads.get(query['uploadId'] ?? '');
            if (upload !== undefined) upload.state = 'completed';
          }
        }
        relayRewritten(response, body);
      });
      return;
    }

    if (operation === 'ListObjectsV2' && archivedKeys.size > 0 && listing === null) {
      await tracked(async () => {
        const response = await send(req, req.url ?? '/');
        if (response.statusCode !== 200) return relay(response);
        entry.handling = 'rewritten';
        relayRewritten(response, Buffer.from(withArchivedClass((await readAll(response)).toString('utf8'), archivedKeys)));
      });
      return;
    }

    if (operation === 'ListObjectsV2' && listing !== null) {
      const rewrite = listing;
      if (rewrite.failContinuations && query['continuation-token'] !== undefined) {
        entry.handling = 'served';
        reply(500, s3Error('InternalError', 'We encountered an internal error. Please try again.'));
        return;
      }
      const target = rewrite.pageSize === undefined ? (req.url ?? '/') : withQuery(path, { ...query, 'max-keys': String(rewrite.pageSize) });
      await tracked(async () => {
        const response = await send(req, target);
        if (rewrite.cutShortAfter === undefined || response.statusCode !== 200) return relay(response);
        entry.handling = 'rewritten';
        relayRewritten(response, Buffer.from(cutShort((await readAll(response)).toString('utf8'), rewrite.cutShortAfter)));
      });
      return;
    }

    if (operation === 'GetObject' && corruptKeys.has(key)) {
      await tracked(async () => {
        const response = await send(req, req.url ?? '/');
        const length = Number(response.headers['content-length'] ?? Number.NaN);
        if ((response.statusCode !== 200 && response.statusCode !== 206) || !(length > 0)) return relay(response);
        entry.handling = 'corrupted';
        await relay(response, flipByteAt(Math.floor(length / 2)));
      });
      return;
    }

    await tracked(async () => relay(await send(req, req.url ?? '/')));
  };

  const server = http.createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      // A client that went away (killed) mid-exchange ends the exchange with s3rver too: nothing to report.
      if (req.destroyed || req.socket.destroyed || res.destroyed) return;
      process.stderr.write(`${JSON.stringify({ event: 's3_stand_in_error', error: String(error) })}\n`);
      if (!res.headersSent && !res.destroyed) res.writeHead(502).end();
      else res.destroy();
    });
  });
  const { url, closeNow } = await listenOnLoopback(server);

  return {
    url,
    requests: () => log.map((entry) => ({ ...entry })),
    reset: () => {
      log.length = 0;
    },
    uploads: (bucket) => [...uploads.values()].filter((upload) => bucket === undefined || upload.bucket === bucket).map((upload) => ({ ...upload, parts: new Map(upload.parts) })),
    setListing: (rewrite) => {
      listing = rewrite;
    },
    setEchoErrors: (on) => {
      echoErrors = on;
    },
    setCorruptReads: (keys) => {
      corruptKeys = new Set(keys);
    },
    setMultipartLayout: (byKey, layoutOptions = {}) => {
      layouts = new Map(Object.entries(byKey));
      partNumberIgnored = layoutOptions.partNumberIgnored ?? false;
    },
    setArchived: (storageClassByKey) => {
      archivedKeys = new Map(Object.entries(storageClassByKey));
    },
    holdNext: (operation, matches = () => true) => new Promise<HeldRequest>((arrived) => holds.push({ operation, matches, arrived })),
    idle: async () => {
      while (inFlight > 0) await new Promise((resolve) => setTimeout(resolve, 10));
    },
    close: async () => {
      await closeNow();
      agent.destroy();
    },
  };
}

/** The whole request body, or undefined when the client left before sending all of it. */
async function completeBody(req: IncomingMessage, entry: StandInRequest): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      chunks.push(chunk);
      entry.requestBytes += chunk.byteLength;
    }
  } catch {
    return undefined;
  }
  const expected = Number(req.headers['content-length'] ?? Number.NaN);
  const body = Buffer.concat(chunks);
  if (!req.complete || (Number.isFinite(expected) && body.byteLength !== expected)) return undefined;
  return body;
}

/** A raw header list (name, value, ...) without one header. */
function withoutHeader(rawHeaders: readonly string[], name: string): string[] {
  const kept: string[] = [];
  for (let index = 0; index + 1 < rawHeaders.length; index += 2) {
    if (rawHeaders[index]!.toLowerCase() !== name) kept.push(rawHeaders[index]!, rawHeaders[index + 1]!);
  }
  return kept;
}

/** A raw header list with these headers (lower-case names) set, replacing any of the same name. */
function withHeaders(rawHeaders: readonly string[], set: Readonly<Record<string, string>>): string[] {
  let kept = [...rawHeaders];
  for (const name of Object.keys(set)) kept = withoutHeader(kept, name);
  for (const [name, value] of Object.entries(set)) kept.push(name, value);
  return kept;
}

/** An object as uploaded in parts: its S3 multipart ETag, and where each part lies (inclusive byte offsets). */
interface MultipartView {
  readonly etag: string;
  readonly size: number;
  readonly parts: readonly { readonly start: number; readonly end: number }[];
}

function multipartViewOf(bytes: Buffer, layout: MultipartLayout): MultipartView {
  const sizes: number[] = [];
  let rest = bytes.byteLength;
  if (typeof layout === 'number') {
    for (; rest > layout; rest -= layout) sizes.push(layout);
  } else {
    for (const size of layout) {
      sizes.push(size);
      rest -= size;
    }
    if (rest <= 0) throw new Error(`a layout of ${layout.join(', ')} bytes leaves no last part of a ${bytes.byteLength}-byte object`);
  }
  sizes.push(rest);
  const parts: { start: number; end: number }[] = [];
  const combined = createHash('md5');
  let start = 0;
  for (const size of sizes) {
    parts.push({ start, end: start + size - 1 });
    combined.update(createHash('md5').update(bytes.subarray(start, start + size)).digest());
    start += size;
  }
  return { etag: `${combined.digest('hex')}-${parts.length}`, size: bytes.byteLength, parts };
}

/** Each `<Contents>` of a key in `etags` gets that ETag (replacing the one s3rver gave). */
function withEtags(xml: string, etags: ReadonlyMap<string, string>): string {
  return xml.replace(/<Contents>[\s\S]*?<\/Contents>/g, (entry) => {
    const key = /<Key>([^<]*)<\/Key>/.exec(entry)?.[1];
    const etag = key === undefined ? undefined : etags.get(unescapeXml(key));
    return etag === undefined ? entry : entry.replace(/<ETag>[^<]*<\/ETag>/, `<ETag>&quot;${etag}&quot;</ETag>`);
  });
}

async function readAll(stream: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/** A pass-through that inverts the byte at `offset` of the stream. */
function flipByteAt(offset: number): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      if (offset >= seen && offset < seen + chunk.byteLength) {
        const copy = Buffer.from(chunk);
        copy[offset - seen] = (copy[offset - seen] ?? 0) ^ 0xff;
        seen += chunk.byteLength;
        done(null, copy);
        return;
      }
      seen += chunk.byteLength;
      done(null, chunk);
    },
  });
}

/** A ListObjectsV2 page with only its first `keep` entries, claiming more follow but giving no token to fetch them. */
function cutShort(xml: string, keep: number): string {
  let kept = 0;
  return xml
    .replace(/<Contents>[\s\S]*?<\/Contents>/g, (entry) => (kept++ < keep ? entry : ''))
    .replace(/<IsTruncated>[^<]*<\/IsTruncated>/, '<IsTruncated>true</IsTruncated>')
    .replace(/<NextContinuationToken>[^<]*<\/NextContinuationToken>/, '')
    .replace(/<KeyCount>[^<]*<\/KeyCount>/, `<KeyCount>${Math.min(kept, keep)}</KeyCount>`);
}

function withQuery(path: string, query: Record<string, string>): string {
  return `${path}?${new URLSearchParams(query).toString()}`;
}

function headerOf(response: IncomingMessage, name: string): string | undefined {
  const value = response.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** Each `<Contents>` of an archived key gets its `<StorageClass>` (replacing the one s3rver gave). */
function withArchivedClass(xml: string, archived: ReadonlyMap<string, string>): string {
  return xml.replace(/<Contents>[\s\S]*?<\/Contents>/g, (entry) => {
    const key = /<Key>([^<]*)<\/Key>/.exec(entry)?.[1];
    const storageClass = key === undefined ? undefined : archived.get(unescapeXml(key));
    if (storageClass === undefined) return entry;
    const withoutClass = entry.replace(/<StorageClass>[^<]*<\/StorageClass>/, '');
    return withoutClass.replace('</Contents>', `<StorageClass>${storageClass}</StorageClass></Contents>`);
  });
}

function unescapeXml(text: string): string {
  return text.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, '&');
}

function listPartsXml(upload: TrackedUpload): string {
  const parts = [...upload.parts.entries()]
    .sort(([a], [b]) => a - b)
    .map(([number, part]) => `<Part><PartNumber>${number}</PartNumber><LastModified>${new Date(upload.initiatedMs).toISOString()}</LastModified><ETag>${escapeXml(part.etag)}</ETag><Size>${part.size}</Size></Part>`)
    .join('');
  return `<?xml version="1.0" encoding="UTF-8"?>\n<ListPartsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>${escapeXml(upload.bucket)}</Bucket><Key>${escapeXml(upload.key)}</Key><UploadId>${escapeXml(upload.uploadId)}</UploadId><PartNumberMarker>0</PartNumberMarker><MaxParts>1000</MaxParts><IsTruncated>false</IsTruncated><StorageClass>STANDARD</StorageClass>${parts}</ListPartsResult>`;
}

function listMultipartUploadsXml(bucket: string, open: readonly TrackedUpload[]): string {
  const entries = open
    .map((upload) => `<Upload><Key>${escapeXml(upload.key)}</Key><UploadId>${escapeXml(upload.uploadId)}</UploadId><StorageClass>STANDARD</StorageClass><Initiated>${new Date(upload.initiatedMs).toISOString()}</Initiated></Upload>`)
    .join('');
  return `<?xml version="1.0" encoding="UTF-8"?>\n<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>${escapeXml(bucket)}</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker><MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated>${entries}</ListMultipartUploadsResult>`;
}

function s3Error(code: string, message: string, extra = ''): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${escapeXml(message)}</Message>${extra}<RequestId>${randomUUID()}</RequestId></Error>`;
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}
