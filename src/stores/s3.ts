import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { md5Base64 } from '../core/checksums.ts';
import { StoreError, describeError, type FailureScope } from '../core/errors.ts';
import { isThrottleStatus, retryAfterMs, rideOutThrottling, type ThrottleAnswer, type ThrottlePolicy } from '../core/retry.ts';
import type { ObjectInfo } from '../core/types.ts';
import { mapUserMetadata, recordedSourceOf, storedMetadata, unquoteEtag } from './metadata.ts';
import { s3DirectRequests, type BodyRequest } from './s3-direct-requests.ts';
import { isArchived, parseListObjectsV2, type S3ListingPage } from './s3-listing.ts';
import { answerText } from './xml-scan.ts';
import type { Readable } from 'node:stream';
import { CONTENT_HEADER_FIELDS, contentHeaderFields, definedHeaders, headerName, streamedObjectMd5, type ContentHeaders, type KeyFailure, type ObjectHead, type ObjectRead, type Part, type PartLayout, type PartUpload, type PartUploadOptions, type ReadOptions, type SourceStore, type TargetStore, type UserMetadata, type WriteDescription, type WrittenVersion } from './store.ts';

const MIB = 1024 * 1024;
const GIB = 1024 * MIB;
/** DeleteObjects takes at most 1000 keys. */
const DELETE_BATCH = 1000;

/** Where an S3-compatible bucket is and how to reach it. */
export interface S3StoreOptions {
  /** Shown in messages and reports, e.g. `s3://artifacts` or `oci://mirror`. */
  readonly label: string;
  readonly bucket: string;
  readonly region: string;
  /** Custom endpoint (OCI, emulators); path-style addressing is used when set. */
  readonly endpoint?: string;
  /** Static keys; absent means the AWS SDK's default credential chain. */
  readonly credentials?: { readonly accessKeyId: string; readonly secretAccessKey: string; readonly sessionToken?: string };
  /**
   * Compute checksums only where an API requires them, and send DeleteObjects a Content-MD5.
   * Needed by OCI (no aws-chunked uploads, DeleteObjects wants Content-MD5) and by emulators.
   * Default: on whenever `endpoint` is set.
   */
  readonly compatibilityMode?: boolean;
  /** Attempts per request, with the SDK's exponential backoff (default 5). */
  readonly maxAttempts?: number;
  /** Milliseconds a request may sit without receiving bytes before it is retried (default 60,000). */
  readonly requestTimeoutMs?: number;
  /** Milliseconds one request may spend waiting out 429/503 answers, honouring Retry-After (default 60,000). */
  readonly retryBudgetMs?: number;
  /** Ask the listing for each object's restore status, so restored archived objects count as readable (the AWS source). */
  readonly listRestoreStatus?: boolean;
  /** As a target: why it cannot hold a key byte-exact (default: every key is fine, as on AWS S3). OCI: `ociKeyProblem`. */
  readonly keyProblem?: (key: string) => string | undefined;
}

/** An S3 bucket (AWS, OCI's S3-compatible API, emulators) as source or target. */
export function s3Store(options: S3StoreOptions): SourceStore & TargetStore {
  const { bucket, label } = options;
  const compatibility = options.compatibilityMode ?? options.endpoint !== undefined;
  const client = new S3Client({
    region: options.region,
    ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint, forcePathStyle: true }),
    ...(options.credentials === undefined ? {} : { credentials: options.credentials }),
    ...(compatibility ? { requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' } : {}),
    maxAttempts: options.maxAttempts ?? 5,
    retryMode: 'standard',
    // socketTimeout is the "nothing received for this long" timeout; requestTimeout would only log a warning.
    requestHandler: { connectionTimeout: 10_000, socketTimeout: options.requestTimeoutMs ?? 60_000 },
  });
  const throttling: ThrottlePolicy = { budgetMs: options.retryBudgetMs ?? 60_000, throttled: throttledAnswer };
  rideOutThrottledAnswers(client, throttling);
  if (compatibility) useContentMd5ForDeleteObjects(client);
  const { sendBody, get } = s3DirectRequests(client, bucket, throttling);
  checkReadsByTheirMd5Etag(client);

  const fail = (operation: string, error: unknown, key?: string): StoreError => toStoreError(label, operation, error, key);
  // S3 metadata names pass as they are; only the names this tool records its source under are taken.
  const metadataFor = (key: string, userMetadata: UserMetadata): Record<string, string> => mapUserMetadata(label, key, userMetadata, (name) => name);

  const store: SourceStore & TargetStore = {
    label,
    maxSinglePutSize: 5 * GIB,
    partLimits: { minPartSize: 5 * MIB, maxPartSize: 5 * GIB, maxParts: 10_000 },

    async *listPages(signal?: AbortSignal): AsyncIterable<readonly ObjectInfo[]> {
      let continuationToken: string | undefined;
      do {
        let page: S3ListingPage;
        try {
          page = await listPage(client, bucket, continuationToken, options.listRestoreStatus ?? false, signal);
        } catch (error) {
          throw fail('list', error);
        }
        yield page.objects.map((entry): ObjectInfo => ({
          key: entry.key,
          size: entry.size,
          lastModifiedMs: entry.lastModifiedMs,
          etag: unquoteEtag(entry.etag),
          ...(isArchived(entry) ? { archived: true as const } : {}),
        }));
        if (page.isTruncated && page.nextContinuationToken === undefined) {
          throw new StoreError({ store: label, operation: 'list', scope: 'store', detail: 'the listing says it is truncated but gives no continuation token; the listing is incomplete' });
        }
        continuationToken = page.isTruncated ? page.nextContinuationToken : undefined;
      } while (continuationToken !== undefined);
    },

    /**
     * The caller checks the bytes against `md5Base64` where it is given, or has the target check them. The GET goes
     * without the client's middleware stack (`s3DirectRequests`); where the client checks answers against the checksum
     * S3 stores (AWS) and the ETag is no MD5 (multipart, SSE-KMS), it is asked again through the client, which does,
     * unless the caller proves the bytes against that very ETag itself (`provenEtag`: the MD5s of the parts).
     */
    async read(key: string, readOptions: ReadOptions = {}): Promise<ObjectRead> {
      const start = readOptions.start ?? 0;
      try {
        const response = await get(key, { range: byteRange(start, readOptions.end), 'if-match': readOptions.ifMatch === undefined ? undefined : `"${readOptions.ifMatch}"` }, readOptions.signal);
        const answer = response.headers;
        const etag = unquoteEtag(answer['etag']);
        const md5 = plainMd5(etag, answer['x-amz-server-side-encryption']);
        const body = response.body as Readable;
        if (md5 !== undefined || compatibility || (readOptions.provenEtag !== undefined && etag === readOptions.provenEtag)) {
          return {
            body,
            headers: contentHeadersOfAnswer(answer),
            userMetadata: userMetadataOf(answer),
            etag,
            size: totalSize(answer['content-range'], Number(answer['content-length'] ?? 0), start),
            lastModifiedMs: Date.parse(answer['last-modified'] ?? '') || 0,
            md5Base64: md5,
          };
        }
        body.destroy();
      } catch (error) {
        throw fail('read', error, key);
      }
      try {
        const response = await client.send(
          new GetObjectCommand({ Bucket: bucket, Key: key, Range: byteRange(start, readOptions.end), IfMatch: readOptions.ifMatch === undefined ? undefined : `"${readOptions.ifMatch}"` }),
          { abortSignal: readOptions.signal },
        );
        const body = response.Body;
        if (body === undefined || !(Symbol.asyncIterator in body)) throw new Error('the response has no readable body');
        const etag = unquoteEtag(response.ETag);
        return {
          body: body as AsyncIterable<Uint8Array>,
          headers: contentHeadersOf(response),
          userMetadata: response.Metadata ?? {},
          etag,
          size: totalSize(response.ContentRange, response.ContentLength, start),
          lastModifiedMs: response.LastModified?.getTime() ?? 0,
          md5Base64: plainMd5(etag, response.ServerSideEncryption),
        };
      } catch (error) {
        throw fail('read', error, key);
      }
    },

    async head(key: string, signal?: AbortSignal): Promise<ObjectHead> {
      try {
        const response = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }), { abortSignal: signal });
        const etag = unquoteEtag(response.ETag);
        // The SDK gives user metadata names in lower case, without their `x-amz-meta-` prefix.
        const recordedSource = recordedSourceOf((name) => response.Metadata?.[name]);
        return {
          ...(recordedSource === undefined ? {} : { recordedSource }),
          headers: contentHeadersOf(response),
          userMetadata: response.Metadata ?? {},
          etag,
          size: response.ContentLength ?? 0,
          lastModifiedMs: response.LastModified?.getTime() ?? 0,
          md5Base64: plainMd5(etag, response.ServerSideEncryption),
        };
      } catch (error) {
        throw fail('head', error, key);
      }
    },

    async partLayout(key: string, etag: string, partNumber: number, signal?: AbortSignal): Promise<PartLayout | undefined> {
      try {
        // HEAD ?partNumber=N answers part N's length and the part count (x-amz-mp-parts-count); only for this version.
        const response = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key, PartNumber: partNumber, IfMatch: `"${etag}"` }), { abortSignal: signal });
        // An SSE-KMS (or SSE-C) object's ETag is no MD5 of its parts' MD5s: nothing to prove the bytes against.
        if (response.PartsCount === undefined || response.ContentLength === undefined || !etagIsMd5Based(response.ServerSideEncryption)) return undefined;
        return { partSize: response.ContentLength, partCount: response.PartsCount };
      } catch (error) {
        throw fail(`head part ${partNumber}`, error, key);
      }
    },

    async readBody(key: string, signal?: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
      return (await store.read(key, { signal })).body;
    },

    async presignGet(key: string, expiresInSeconds: number): Promise<string> {
      // Loaded on first use: only a target that pulls from a URL needs it, and no-op runs start faster without it.
      const { getSignedUrl } = await import('@aws-sdk/s3-request-presigner');
      return getSignedUrl(client, new GetObjectCommand({ Bucket: bucket, Key: key }), { expiresIn: expiresInSeconds });
    },

    keyProblem: options.keyProblem ?? (() => undefined),

    metadataFor,

    async putObject(description: WriteDescription, bytes: Uint8Array, signal?: AbortSignal): Promise<WrittenVersion> {
      const metadata = storedMetadata(metadataFor(description.key, description.userMetadata), description);
      try {
        return { etag: unquoteEtag(await sendBody(putObjectRequest(description, metadata, description.contentMd5Base64 ?? md5Base64(bytes), bytes), signal)) };
      } catch (error) {
        throw fail('write', error, description.key);
      }
    },

    canStreamWhole: () => !sendBody.signsPayloads(),

    async putObjectStream(description: WriteDescription, open: () => Readable, signal?: AbortSignal): Promise<WrittenVersion> {
      const metadata = storedMetadata(metadataFor(description.key, description.userMetadata), description);
      try {
        return { etag: unquoteEtag(await sendBody(putObjectRequest(description, metadata, streamedObjectMd5(description), { size: description.size, open }), signal)) };
      } catch (error) {
        throw fail('write', error, description.key);
      }
    },

    async startPartUpload(description: WriteDescription, uploadOptions: PartUploadOptions): Promise<PartUpload> {
      const key = description.key;
      const { signal } = uploadOptions;
      const metadata = storedMetadata(metadataFor(key, description.userMetadata), description);
      const etags = new Map<number, string>();
      let id = uploadOptions.resume?.token;
      if (id !== undefined) {
        const parts = await listParts(client, bucket, key, id, signal).catch((error: unknown) => {
          // Gone (aborted, completed, expired): start afresh.
          if (error instanceof S3ServiceException && (error.name === 'NoSuchUpload' || error.$metadata.httpStatusCode === 404)) return undefined;
          throw fail('list parts', error, key);
        });
        if (parts === undefined) id = undefined;
        // A part is kept only when it has the size this cut gives it (the last part may be shorter).
        else for (const part of parts) if (part.size === Math.min(uploadOptions.partSize, description.size - (part.number - 1) * uploadOptions.partSize)) etags.set(part.number, part.etag);
      }
      if (id === undefined) {
        try {
          const created = await client.send(
            new CreateMultipartUploadCommand({ Bucket: bucket, Key: key, ...s3Headers(description.headers), Metadata: metadata }),
            { abortSignal: signal },
          );
          id = created.UploadId;
        } catch (error) {
          throw fail('start multipart upload', error, key);
        }
      }
      if (id === undefined) throw fail('start multipart upload', new Error('no UploadId in the answer'), key);
      const uploadId = id;
      return {
        uploaded: new Set([...etags.keys()].map((number) => number - 1)),
        resumeToken: uploadId,
        async uploadPart(part: Part, partSignal?: AbortSignal): Promise<void> {
          try {
            const etag = await sendBody(
              { operation: 'UploadPart', key, query: { partNumber: String(part.index + 1), uploadId }, headers: { 'content-md5': part.md5Base64 }, body: part.bytes },
              partSignal,
            );
            etags.set(part.index + 1, etag ?? '');
          } catch (error) {
            throw fail(`upload part ${part.index + 1}`, error, key);
          }
        },
        async commit(partCount: number, commitSignal?: AbortSignal): Promise<WrittenVersion> {
          const parts = Array.from({ length: partCount }, (_, index) => ({ PartNumber: index + 1, ETag: etags.get(index + 1) }));
          const missing = parts.filter((part) => part.ETag === undefined).map((part) => part.PartNumber);
          if (missing.length > 0) throw fail('complete multipart upload', new Error(`parts ${missing.join(', ')} were never uploaded`), key);
          try {
            const completed = await client.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId, MultipartUpload: { Parts: parts } }), { abortSignal: commitSignal });
            return { etag: unquoteEtag(completed.ETag) };
          } catch (error) {
            throw fail('complete multipart upload', error, key);
          }
        },
        async abort(): Promise<void> {
          try {
            await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }));
          } catch (error) {
            throw fail('abort multipart upload', error, key);
          }
        },
      };
    },

    async deleteMany(keys: readonly string[], signal?: AbortSignal): Promise<KeyFailure[]> {
      const failures: KeyFailure[] = [];
      for (let offset = 0; offset < keys.length; offset += DELETE_BATCH) {
        const batch = keys.slice(offset, offset + DELETE_BATCH);
        try {
          const response = await client.send(
            new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: batch.map((key) => ({ Key: key })), Quiet: true } }),
            { abortSignal: signal },
          );
          for (const error of response.Errors ?? []) {
            failures.push({ key: error.Key ?? '', message: `${error.Code ?? 'Error'}: ${error.Message ?? 'not deleted'}` });
          }
        } catch (error) {
          const storeError = fail('delete', error);
          if (storeError.scope === 'store') throw storeError;
          for (const key of batch) failures.push({ key, message: storeError.message });
        }
      }
      return failures;
    },

    async cleanupInterruptedWrites(olderThanMs: number, keep: ReadonlySet<string>, signal?: AbortSignal): Promise<number> {
      let removed = 0;
      let keyMarker: string | undefined;
      let uploadIdMarker: string | undefined;
      do {
        let page;
        try {
          page = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }), { abortSignal: signal });
        } catch (error) {
          throw fail('list multipart uploads', error);
        }
        for (const upload of page.Uploads ?? []) {
          if (upload.Key === undefined || upload.UploadId === undefined) continue;
          if ((upload.Initiated?.getTime() ?? 0) >= olderThanMs || keep.has(upload.UploadId)) continue;
          try {
            await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: upload.Key, UploadId: upload.UploadId }), { abortSignal: signal });
            removed += 1;
          } catch (error) {
            throw fail('abort multipart upload', error, upload.Key);
          }
        }
        const more = page.IsTruncated === true;
        keyMarker = more ? page.NextKeyMarker : undefined;
        uploadIdMarker = more ? page.NextUploadIdMarker : undefined;
      } while (keyMarker !== undefined);
      return removed;
    },
  };
  return store;
}

/** The content headers of a GetObject or HeadObject answer. */
function contentHeadersOf(response: { ContentType?: string; ContentEncoding?: string; ContentDisposition?: string; CacheControl?: string; ContentLanguage?: string }): ContentHeaders {
  return definedHeaders({
    contentType: response.ContentType,
    contentEncoding: response.ContentEncoding,
    contentDisposition: response.ContentDisposition,
    cacheControl: response.CacheControl,
    contentLanguage: response.ContentLanguage,
  });
}

/** User metadata from an answer's `x-amz-meta-*` headers, named as the SDK names it (lower case, without the prefix). */
function userMetadataOf(headers: Readonly<Record<string, string>>): UserMetadata {
  const metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) if (name.startsWith('x-amz-meta-')) metadata[name.slice('x-amz-meta-'.length)] = value;
  return metadata;
}

/** The content headers as PutObject and CreateMultipartUpload take them. */
function s3Headers(headers: ContentHeaders): { ContentType?: string; ContentEncoding?: string; ContentDisposition?: string; CacheControl?: string; ContentLanguage?: string } {
  return {
    ContentType: headers.contentType,
    ContentEncoding: headers.contentEncoding,
    ContentDisposition: headers.contentDisposition,
    CacheControl: headers.cacheControl,
    ContentLanguage: headers.contentLanguage,
  };
}

/** The content headers of an answer, from its (lower-case) HTTP headers. */
function contentHeadersOfAnswer(answer: Readonly<Record<string, string>>): ContentHeaders {
  const headers: { -readonly [Field in keyof ContentHeaders]: ContentHeaders[Field] } = {};
  for (const field of CONTENT_HEADER_FIELDS) {
    const value = answer[headerName(field)];
    if (value !== undefined) headers[field] = value;
  }
  return headers;
}

/** A PutObject of `description.key` with its content headers, the stored metadata and the Content-MD5 the service checks `body` against. */
function putObjectRequest(description: WriteDescription, metadata: Record<string, string>, contentMd5: string, body: BodyRequest['body']): BodyRequest {
  return { operation: 'PutObject', key: description.key, headers: { ...contentHeaderFields(description.headers), ...metadataHeaders(metadata), 'content-md5': contentMd5 }, body };
}

/** User metadata as PutObject sends it: `x-amz-meta-<name>`, the name in lower case, as the SDK sends it. */
function metadataHeaders(metadata: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(metadata).map(([name, value]) => [`x-amz-meta-${name.toLowerCase()}`, value]));
}

/** The parts of an unfinished multipart upload, all pages. */
async function listParts(client: S3Client, bucket: string, key: string, uploadId: string, signal: AbortSignal | undefined): Promise<{ number: number; size: number; etag: string }[]> {
  const parts: { number: number; size: number; etag: string }[] = [];
  let marker: string | undefined;
  do {
    const page = await client.send(new ListPartsCommand({ Bucket: bucket, Key: key, UploadId: uploadId, PartNumberMarker: marker }), { abortSignal: signal });
    for (const part of page.Parts ?? []) {
      if (part.PartNumber !== undefined && part.Size !== undefined && part.ETag !== undefined) parts.push({ number: part.PartNumber, size: part.Size, etag: part.ETag });
    }
    marker = page.IsTruncated === true ? page.NextPartNumberMarker : undefined;
  } while (marker !== undefined);
  return parts;
}

function byteRange(start: number, end: number | undefined): string | undefined {
  if (end !== undefined) return `bytes=${start}-${end}`;
  return start > 0 ? `bytes=${start}-` : undefined;
}

/** The object's MD5 when its ETag is one: single-part uploads without SSE-KMS/SSE-C encryption. */
function plainMd5(etag: string, serverSideEncryption: string | undefined): string | undefined {
  if (!/^[0-9a-f]{32}$/i.test(etag) || !etagIsMd5Based(serverSideEncryption)) return undefined;
  return Buffer.from(etag, 'hex').toString('base64');
}

/** Whether S3 derives an object's ETag from MD5s of its bytes (of the object, or of its parts): not under SSE-KMS or SSE-C. */
function etagIsMd5Based(serverSideEncryption: string | undefined): boolean {
  return serverSideEncryption === undefined || serverSideEncryption === 'AES256';
}

function totalSize(contentRange: string | undefined, contentLength: number | undefined, start: number): number {
  const total = contentRange?.match(/\/(\d+)$/)?.[1];
  if (total !== undefined) return Number(total);
  return (contentLength ?? 0) + start;
}

/** A 429/503 answer (SlowDown, ServiceUnavailable) and what it asked to wait; `undefined` for any other error. */
function throttledAnswer(error: unknown): ThrottleAnswer | undefined {
  if (!(error instanceof S3ServiceException) || !isThrottleStatus(error.$metadata.httpStatusCode)) return undefined;
  const headers = (error.$response as { headers?: Record<string, string> } | undefined)?.headers ?? {};
  return { retryAfterMs: retryAfterMs((name) => headers[name]) };
}

/**
 * Every command of the client waits out 429/503 answers for up to the policy's budget, as long as the service asks
 * (Retry-After): the SDK's own retries give up within seconds and cap what Retry-After asks for.
 */
function rideOutThrottledAnswers(client: S3Client, policy: ThrottlePolicy): void {
  const send = client.send.bind(client) as (command: unknown, options?: { abortSignal?: AbortSignal }) => Promise<unknown>;
  client.send = ((command: unknown, options?: { abortSignal?: AbortSignal }) =>
    rideOutThrottling(() => send(command, options), policy, options?.abortSignal)) as unknown as S3Client['send'];
}

/** OCI's DeleteObjects requires Content-MD5 (or CRC32C); the AWS SDK documents Content-MD5 as the fallback. */
function useContentMd5ForDeleteObjects(client: S3Client): void {
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const request = args.request as { body?: unknown; headers?: Record<string, string> };
      if (context.commandName === 'DeleteObjectsCommand' && typeof request.body === 'string' && request.headers !== undefined) {
        for (const header of Object.keys(request.headers)) {
          if (header.toLowerCase().startsWith('x-amz-checksum-') || header.toLowerCase() === 'x-amz-sdk-checksum-algorithm') delete request.headers[header];
        }
        request.headers['content-md5'] = md5Base64(request.body);
      }
      return next(args);
    },
    { step: 'build', name: 'contentMd5ForDeleteObjects', priority: 'low' },
  );
}

/**
 * Where a GetObject answer's ETag is the object's MD5, the reader checks every byte against it (core/transfer.ts),
 * so the SDK's own check of the body against the object's stored checksum (it asks for one whenever
 * `responseChecksumValidation` is `WHEN_SUPPORTED`, the default on AWS) would be a second pass over every byte
 * read; for CRC64NVME, which S3 stores for new objects by default, the SDK's JavaScript CRC is slower than MD5.
 * Its checksum headers are dropped from such answers before the SDK looks (this runs inside the SDK's
 * response-checksum middleware); answers without an MD5 ETag (multipart, SSE-KMS) keep the SDK's check.
 */
function checkReadsByTheirMd5Etag(client: S3Client): void {
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const result = await next(args);
      const headers = (result.response as { headers?: Record<string, string> }).headers;
      if (context.commandName === 'GetObjectCommand' && headers !== undefined && plainMd5(unquoteEtag(headers['etag']), headers['x-amz-server-side-encryption']) !== undefined) {
        for (const header of Object.keys(headers)) if (header.startsWith('x-amz-checksum-')) delete headers[header];
      }
      return result;
    },
    { step: 'deserialize', name: 'md5EtagInsteadOfResponseChecksum', priority: 'low' },
  );
}

/** Turns an SDK error into one that names the store, operation, key and status, and says whether the store as a whole is unusable. */
export function toStoreError(store: string, operation: string, error: unknown, key?: string): StoreError {
  if (error instanceof StoreError) return error;
  const status = error instanceof S3ServiceException ? error.$metadata.httpStatusCode : undefined;
  const code = error instanceof Error ? error.name : undefined;
  return new StoreError({ store, operation, key, status, code: code === 'Error' ? undefined : code, scope: scopeOf(status, code), detail: describeError(error), cause: error });
}

const STORE_WIDE_CODES = new Set(['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AccessDenied', 'NoSuchBucket', 'InvalidToken', 'ExpiredToken', 'CredentialsProviderError', 'AuthorizationHeaderMalformed', 'PermanentRedirect']);

/** Answers about one object: archived (403 InvalidObjectState), SSE-C without its key, gone since the listing. */
const OBJECT_CODES = new Set(['InvalidObjectState', 'NoSuchKey', 'NotFound', 'PreconditionFailed']);

function scopeOf(status: number | undefined, code: string | undefined): FailureScope {
  if (code !== undefined && OBJECT_CODES.has(code)) return 'object';
  if (code !== undefined && STORE_WIDE_CODES.has(code)) return 'store';
  if (status === 401 || status === 403) return 'store';
  return 'object';
}

/** What the SDK's deserialiser is left to read once the listing's own text is taken: nothing. */
const EMPTY_LISTING = new TextEncoder().encode('<ListBucketResult></ListBucketResult>');

/**
 * One ListObjectsV2 page, sent by the SDK (signing, retries, timeouts, errors as usual) but read by
 * `parseListObjectsV2`: a middleware just inside the SDK's deserialiser takes a 200 answer's text and
 * leaves the deserialiser an empty listing, so the page is parsed once, by the cheaper reader.
 */
async function listPage(client: S3Client, bucket: string, continuationToken: string | undefined, restoreStatus: boolean, signal: AbortSignal | undefined): Promise<S3ListingPage> {
  const command = new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: continuationToken, ...(restoreStatus ? { OptionalObjectAttributes: ['RestoreStatus' as const] } : {}) });
  let text: string | undefined;
  command.middlewareStack.add(
    (next) => async (args) => {
      const result = await next(args);
      const response: unknown = result.response;
      if (isHttpResponse(response) && response.statusCode === 200) {
        text = await answerText(response.body, 'the ListObjectsV2 answer');
        response.body = EMPTY_LISTING;
      }
      return result;
    },
    { step: 'deserialize', priority: 'low', name: 'artifactsSyncRawListing' },
  );
  await client.send(command, { abortSignal: signal });
  if (text === undefined) throw new Error('the ListObjectsV2 answer had no body');
  return parseListObjectsV2(text);
}

function isHttpResponse(value: unknown): value is { statusCode: number; body: unknown } {
  return typeof value === 'object' && value !== null && 'statusCode' in value && typeof value.statusCode === 'number' && 'body' in value;
}
