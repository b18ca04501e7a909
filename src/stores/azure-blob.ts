import { createHttpHeaders, createPipelineRequest } from '@azure/core-rest-pipeline';
import { RestError, ContainerClient, type BlobHTTPHeaders, type BlockBlobClient, BlobServiceClient, StorageRetryPolicyType, type StoragePipelineOptions } from '@azure/storage-blob';
import type { TokenCredential } from '@azure/identity';
import { createHash } from 'node:crypto';
import { md5Base64 } from '../core/checksums.ts';
import { StoreError, describeError, type FailureScope } from '../core/errors.ts';
import { forEachBounded } from '../core/concurrency.ts';
import { isThrottleStatus, retryAfterMs, rideOutThrottling, type ThrottleAnswer, type ThrottlePolicy } from '../core/retry.ts';
import type { ObjectInfo } from '../core/types.ts';
import { parseBlobListing, type BlobListingPage } from './azure-listing.ts';
import { answerText } from './xml-scan.ts';
import { putBlobSender } from './azure-put-blob.ts';
import { azureKeyProblem } from './key-rules.ts';
import { SOURCE_ETAG_METADATA, SOURCE_MODIFIED_METADATA, azureMetadataName, mapUserMetadata, recordedSourceOf, storedMetadata, unquoteEtag } from './metadata.ts';
import type { Readable } from 'node:stream';
import { contentHeaderFields, definedHeaders, streamedObjectMd5, type KeyFailure, type ObjectHead, type Part, type PartUpload, type PartUploadOptions, type ServerSideCopy, type TargetStore, type UserMetadata, type WriteDescription, type WrittenVersion } from './store.ts';

const MIB = 1024 * 1024;
/** A blob batch carries at most 256 sub-requests. */
const DELETE_BATCH = 256;
/** Listing page size: the service maximum, so N blobs cost N/5000 requests. */
const LIST_PAGE_SIZE = 5000;
/** Block ids must all have the same length within one blob: the position takes this many digits (50,000 blocks at most). */
const BLOCK_ID_DIGITS = 6;

/** Which Azure Blob container to mirror into, and how to authenticate. */
export interface AzureBlobStoreOptions {
  readonly container: string;
  /** Connection string (Azurite, local runs); takes precedence over `accountUrl`. */
  readonly connectionString?: string;
  /** `https://<account>.blob.core.windows.net`, used with `credential` (managed identity in Azure). */
  readonly accountUrl?: string;
  readonly credential?: TokenCredential;
  /** Attempts per request, with exponential backoff (default 5). */
  readonly maxTries?: number;
  /**
   * Milliseconds one call may go unanswered before it is abandoned and tried again, up to `maxTries`
   * times (default 60,000; pulls from a URL, where Azure copies the bytes before answering, get ten times that).
   */
  readonly tryTimeoutMs?: number;
  /** Objects up to this size are pulled from a URL in one Put Blob From URL; larger ones in blocks (default 256 MiB). */
  readonly singleCopyMaxSize?: number;
  /** Blocks of one object pulled from a URL at once (default 8). */
  readonly copyBlockConcurrency?: number;
  /** Milliseconds one call may spend waiting out 429/503 answers, honouring Retry-After and x-ms-retry-after(-ms) (default 60,000). */
  readonly retryBudgetMs?: number;
}

/** An Azure Blob container as a mirror target. */
export function azureBlobStore(options: AzureBlobStoreOptions): TargetStore & { readonly container: ContainerClient } {
  const container = listingContainerClient(options);
  const label = `azure://${container.accountName}/${options.container}`;
  const singleCopyMaxSize = options.singleCopyMaxSize ?? 256 * MIB;
  const copyBlockConcurrency = options.copyBlockConcurrency ?? 8;
  const fail = (operation: string, error: unknown, key?: string): StoreError => toAzureStoreError(label, operation, error, key);
  const attemptTimeoutMs = options.tryTimeoutMs ?? 60_000;
  const attempts = options.maxTries ?? 5;
  /** The SDK's retry policy never abandons a call that stalls: bound each attempt, and try a stalled one again. */
  const throttling: ThrottlePolicy = { budgetMs: options.retryBudgetMs ?? 60_000, throttled: azureThrottleAnswer };
  const bounded = <T>(signal: AbortSignal | undefined, call: (signal: AbortSignal) => Promise<T>, timeoutMs = attemptTimeoutMs): Promise<T> =>
    rideOutThrottling(() => withAttemptTimeout(call, signal, timeoutMs, attempts), throttling, signal);
  const blob = (key: string): BlockBlobClient => container.getBlockBlobClient(key);
  /** Streamed uploads carry a whole object (up to 256 MiB) in one request: the SDK's per-try limit is ten times the usual. */
  const streamingContainer = listingContainerClient({ ...options, tryTimeoutMs: attemptTimeoutMs * 10 });
  const metadataFor = (key: string, userMetadata: UserMetadata): Record<string, string> => mapUserMetadata(label, key, userMetadata, azureMetadataName);
  /** Put Blob without the SDK's serializer and HTTP stack (its own authentication and retry policies kept), where it applies. */
  const putBlob = putBlobSender(container, { connectionString: options.connectionString, retryOptions: pipelineOptions(options).retryOptions ?? {} });

  const serverSideCopy: ServerSideCopy = {
    async copyFromUrl(sourceUrl: string, description: WriteDescription, signal?: AbortSignal): Promise<WrittenVersion> {
      const target = blob(description.key);
      const sourceMd5 = description.contentMd5Base64 === undefined ? undefined : Buffer.from(description.contentMd5Base64, 'base64');
      const metadata = storedMetadata(metadataFor(description.key, description.userMetadata), description);
      try {
        if (description.size <= singleCopyMaxSize) {
          await bounded(signal, (abortSignal) => target.syncUploadFromURL(sourceUrl, {
            abortSignal,
            copySourceBlobProperties: false,
            blobHTTPHeaders: headersOf(description),
            metadata,
            ...(sourceMd5 === undefined ? {} : { sourceContentMD5: sourceMd5 }),
          }), attemptTimeoutMs * 10);
        } else {
          const blockSize = copyBlockSize(description.size, singleCopyMaxSize);
          const blockIds = blockIdsFor(description, blockSize, Math.ceil(description.size / blockSize));
          // Blocks an earlier run staged for this source version are not pulled again.
          const staged = await uncommittedBlocks(target, signal, bounded);
          await forEachBounded([...blockIds.entries()].filter(([, blockId]) => !staged.has(blockId)), copyBlockConcurrency, async ([index, blockId]) => {
            const offset = index * blockSize;
            await bounded(signal, (abortSignal) => target.stageBlockFromURL(blockId, sourceUrl, offset, Math.min(blockSize, description.size - offset), { abortSignal }), attemptTimeoutMs * 10);
          });
          await bounded(signal, (abortSignal) => target.commitBlockList(blockIds, { abortSignal, blobHTTPHeaders: headersOf(description), metadata }));
        }
      } catch (error) {
        throw fail('copy from URL', error, description.key);
      }
      // The bytes never passed through us: check what arrived.
      const written = await bounded(signal, (abortSignal) => target.getProperties({ abortSignal })).catch((error: unknown) => {
        throw fail('check copy', error, description.key);
      });
      if (written.contentLength !== description.size) {
        throw new StoreError({ store: label, operation: 'check copy', key: description.key, scope: 'object', detail: `the copy has ${written.contentLength} bytes, the source ${description.size}` });
      }
      return { etag: unquoteEtag(written.etag) };
    },
  };

  return {
    label,
    container,
    maxSinglePutSize: 256 * MIB,
    partLimits: { minPartSize: 1, maxPartSize: 4000 * MIB, maxParts: 50_000 },
    serverSideCopy,
    keyProblem: azureKeyProblem,
    metadataFor,

    async head(key: string, signal?: AbortSignal): Promise<ObjectHead> {
      try {
        const properties = await bounded(signal, (abortSignal) => blob(key).getProperties({ abortSignal }));
        const metadata = properties.metadata ?? {};
        const recordedSource = recordedSourceOf((name) => metadata[name]);
        return {
          ...(recordedSource === undefined ? {} : { recordedSource }),
          headers: definedHeaders({
            contentType: properties.contentType,
            contentEncoding: properties.contentEncoding,
            contentDisposition: properties.contentDisposition,
            cacheControl: properties.cacheControl,
            contentLanguage: properties.contentLanguage,
          }),
          userMetadata: metadata,
          etag: unquoteEtag(properties.etag),
          size: properties.contentLength ?? 0,
          lastModifiedMs: properties.lastModified?.getTime() ?? 0,
          md5Base64: properties.contentMD5 === undefined ? undefined : Buffer.from(properties.contentMD5).toString('base64'),
        };
      } catch (error) {
        throw fail('head', error, key);
      }
    },

    async readBody(key: string, signal?: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
      try {
        // Not bounded per attempt: the body of a large blob may take longer than one attempt's timeout.
        const response = await blob(key).download(0, undefined, { abortSignal: signal, maxRetryRequests: attempts });
        const body = response.readableStreamBody;
        if (body === undefined) throw new Error('the answer has no body');
        return body as AsyncIterable<Uint8Array>;
      } catch (error) {
        throw fail('read', error, key);
      }
    },

    async *listPages(signal?: AbortSignal): AsyncIterable<readonly ObjectInfo[]> {
      try {
        let marker: string | undefined;
        do {
          const page = await bounded(signal, (abortSignal) => container.listPage(marker, abortSignal));
          marker = page.nextMarker;
          yield page.blobs.map((item): ObjectInfo => {
            const recordedSource = recordedSourceOf((name) => item.metadata.get(name));
            return {
              key: item.name,
              size: item.contentLength,
              lastModifiedMs: item.lastModifiedMs,
              etag: unquoteEtag(item.etag),
              ...(recordedSource === undefined ? {} : { recordedSource }),
            };
          });
        } while (marker !== undefined);
      } catch (error) {
        throw fail('list', error);
      }
    },

    async putObject(description: WriteDescription, bytes: Uint8Array, signal?: AbortSignal): Promise<WrittenVersion> {
      const metadata = storedMetadata(metadataFor(description.key, description.userMetadata), description);
      const contentMd5 = description.contentMd5Base64 ?? md5Base64(bytes);
      try {
        if (putBlob !== undefined) {
          const url = blob(description.key).url;
          return { etag: unquoteEtag(await bounded(signal, (abortSignal) => putBlob(url, putBlobHeaders(description, metadata, contentMd5), bytes, abortSignal))) };
        }
        const written = await bounded(signal, (abortSignal) => blob(description.key).upload(bytes, bytes.byteLength, {
          abortSignal,
          blobHTTPHeaders: headersOf(description),
          metadata,
          transactionalContentMD5: Buffer.from(contentMd5, 'base64'),
        }));
        return { etag: unquoteEtag(written.etag) };
      } catch (error) {
        throw fail('write', error, description.key);
      }
    },

    canStreamWhole: () => true,

    async putObjectStream(description: WriteDescription, open: () => Readable, signal?: AbortSignal): Promise<WrittenVersion> {
      const metadata = storedMetadata(metadataFor(description.key, description.userMetadata), description);
      const md5 = Buffer.from(streamedObjectMd5(description), 'base64');
      try {
        // Each try of the SDK's (and each of `bounded`'s) calls `open` for the bytes from the first.
        const written = await bounded(signal, (abortSignal) => streamingContainer.getBlockBlobClient(description.key).upload(open, description.size, {
          abortSignal,
          blobHTTPHeaders: headersOf(description),
          metadata,
          transactionalContentMD5: md5,
        }), attemptTimeoutMs * 10);
        return { etag: unquoteEtag(written.etag) };
      } catch (error) {
        throw fail('write', error, description.key);
      }
    },

    async startPartUpload(description: WriteDescription, uploadOptions: PartUploadOptions): Promise<PartUpload> {
      const target = blob(description.key);
      const { partSize } = uploadOptions;
      const partCount = Math.max(1, Math.ceil(description.size / partSize));
      const ids = blockIdsFor(description, partSize, partCount);
      const staged = uploadOptions.resume === undefined ? new Set<string>() : await uncommittedBlocks(target, uploadOptions.signal, bounded).catch((error: unknown) => {
        throw fail('get block list', error, description.key);
      });
      const metadata = storedMetadata(metadataFor(description.key, description.userMetadata), description);
      return {
        uploaded: new Set(ids.flatMap((id, index) => (staged.has(id) ? [index] : []))),
        resumeToken: undefined,
        async uploadPart(part: Part, signal?: AbortSignal): Promise<void> {
          try {
            await bounded(signal, (abortSignal) => target.stageBlock(ids[part.index]!, part.bytes, part.bytes.byteLength, { abortSignal, ...(part.md5Base64 === undefined ? {} : { transactionalContentMD5: Buffer.from(part.md5Base64, 'base64') }) }));
          } catch (error) {
            throw fail(`stage block ${part.index}`, error, description.key);
          }
        },
        async commit(count: number, signal?: AbortSignal): Promise<WrittenVersion> {
          try {
            const written = await bounded(signal, (abortSignal) => target.commitBlockList(ids.slice(0, count), { abortSignal, blobHTTPHeaders: headersOf(description), metadata }));
            return { etag: unquoteEtag(written.etag) };
          } catch (error) {
            throw fail('commit block list', error, description.key);
          }
        },
        // Uncommitted blocks are invisible and the service discards them after a week: nothing to undo.
        async abort(): Promise<void> {},
      };
    },

    async deleteMany(keys: readonly string[], signal?: AbortSignal): Promise<KeyFailure[]> {
      const failures: KeyFailure[] = [];
      const batchClient = container.getBlobBatchClient();
      for (let offset = 0; offset < keys.length; offset += DELETE_BATCH) {
        const batch = keys.slice(offset, offset + DELETE_BATCH);
        try {
          const response = await bounded(signal, (abortSignal) => batchClient.deleteBlobs(batch.map((key) => container.getBlobClient(key)), { abortSignal, deleteSnapshots: 'include' }));
          for (const sub of response.subResponses) {
            if (sub.status >= 300 && sub.status !== 404) {
              failures.push({ key: sub._request.url ? keyFromUrl(sub._request.url, container.url) : '', message: `${sub.status} ${sub.errorCode ?? ''}`.trim() });
            }
          }
        } catch (error) {
          const storeError = fail('delete', error);
          if (storeError.scope === 'store') throw storeError;
          for (const key of batch) failures.push({ key, message: storeError.message });
        }
      }
      return failures;
    },
  };
}

/** A 429 or 503 (ServerBusy, OperationTimedOut...) after the SDK's own retries, with what the service asked to wait. */
function azureThrottleAnswer(error: unknown): ThrottleAnswer | undefined {
  if (!(error instanceof RestError) || !isThrottleStatus(error.statusCode)) return undefined;
  const headers = error.response?.headers;
  return { retryAfterMs: retryAfterMs((name) => headers?.get(name)) };
}

/**
 * Runs `call` with a signal that aborts after `timeoutMs`; a call abandoned that way is tried again,
 * `attempts` times in all. Only for idempotent calls (every write here names its blob or block).
 */
export async function withAttemptTimeout<T>(call: (signal: AbortSignal) => Promise<T>, outer: AbortSignal | undefined, timeoutMs: number, attempts: number): Promise<T> {
  for (let attempt = 1; ; attempt += 1) {
    const timer = AbortSignal.timeout(timeoutMs);
    try {
      return await call(outer === undefined ? timer : AbortSignal.any([outer, timer]));
    } catch (error) {
      if (!timer.aborted || outer?.aborted === true) throw error;
      if (attempt >= attempts) throw new Error(`no answer within ${timeoutMs / 1000} s, ${attempts} times`, { cause: error });
    }
  }
}

type ClientOptions = Pick<AzureBlobStoreOptions, 'connectionString' | 'accountUrl' | 'credential' | 'maxTries' | 'tryTimeoutMs'>;

/** The retry policy every Azure call of a run uses. */
function pipelineOptions(options: ClientOptions): StoragePipelineOptions {
  // Short first delays: a store that stays down must fail the run in seconds, not minutes.
  return { retryOptions: { retryPolicyType: StorageRetryPolicyType.EXPONENTIAL, maxTries: options.maxTries ?? 5, tryTimeoutInMs: Math.max(options.tryTimeoutMs ?? 60_000, 60_000), retryDelayInMs: 500, maxRetryDelayInMs: 8000 } };
}

const MISSING_CREDENTIALS = 'azureBlobStore needs a connection string, or an account URL and a credential';

/** A Blob service client with the retry policy every Azure call of a run uses. */
export function serviceClient(options: ClientOptions): BlobServiceClient {
  if (options.connectionString !== undefined) return BlobServiceClient.fromConnectionString(options.connectionString, pipelineOptions(options));
  if (options.accountUrl !== undefined && options.credential !== undefined) return new BlobServiceClient(options.accountUrl, options.credential, pipelineOptions(options));
  throw new Error(MISSING_CREDENTIALS);
}

function listingContainerClient(options: ClientOptions & { readonly container: string }): ListingContainerClient {
  if (options.connectionString !== undefined) return new ListingContainerClient(options.connectionString, options.container, pipelineOptions(options));
  if (options.accountUrl !== undefined && options.credential !== undefined) {
    return new ListingContainerClient(`${options.accountUrl.replace(/\/+$/, '')}/${encodeURIComponent(options.container)}`, options.credential, pipelineOptions(options));
  }
  throw new Error(MISSING_CREDENTIALS);
}

/** The List Blobs service version asked for: metadata in listings and `Encoded` names. */
const LIST_BLOBS_VERSION = '2021-12-02';

/**
 * A ContainerClient that lists through the SDK's own pipeline (authentication, retries, logging
 * redaction) but reads the answer with `parseBlobListing` instead of the SDK's general XML
 * deserialiser, which costs ten times the CPU.
 */
class ListingContainerClient extends ContainerClient {
  async listPage(marker: string | undefined, abortSignal: AbortSignal): Promise<BlobListingPage> {
    const url = new URL(this.url);
    url.searchParams.set('restype', 'container');
    url.searchParams.set('comp', 'list');
    url.searchParams.set('include', 'metadata');
    url.searchParams.set('maxresults', String(LIST_PAGE_SIZE));
    if (marker !== undefined) url.searchParams.set('marker', marker);
    const request = createPipelineRequest({
      url: url.toString(),
      method: 'GET',
      abortSignal,
      headers: createHttpHeaders({ 'x-ms-version': LIST_BLOBS_VERSION, accept: 'application/xml' }),
      // As the SDK's own requests: http is for emulators; its token policy refuses to send a token over it.
      allowInsecureConnection: true,
    });
    // A 200 answer is handed over as a stream, so the pipeline does not parse it itself.
    request.streamResponseStatusCodes = new Set([200]);
    const response = await this.storageClientContext.sendRequest(request);
    if (response.status !== 200) {
      const code = response.headers.get('x-ms-error-code') ?? undefined;
      throw new RestError(`List Blobs answered ${response.status}${code === undefined ? '' : ` ${code}`}`, { statusCode: response.status, ...(code === undefined ? {} : { code }), request, response });
    }
    const text = await answerText(response.readableStreamBody ?? response.browserStreamBody ?? response.bodyAsText, 'the List Blobs answer');
    return parseBlobListing(text, [SOURCE_ETAG_METADATA, SOURCE_MODIFIED_METADATA]);
  }
}

/** The headers of a Put Blob that writes what `upload` with `headersOf(description)`, `metadata` and a transactional MD5 writes. */
function putBlobHeaders(description: WriteDescription, metadata: Readonly<Record<string, string>>, contentMd5Base64: string): Record<string, string> {
  const result: Record<string, string> = { 'content-md5': contentMd5Base64, ...contentHeaderFields(description.headers, 'x-ms-blob-') };
  if (description.contentMd5Base64 !== undefined) result['x-ms-blob-content-md5'] = description.contentMd5Base64;
  for (const [name, value] of Object.entries(metadata)) result[`x-ms-meta-${name}`] = value;
  return result;
}

function headersOf(description: WriteDescription): BlobHTTPHeaders {
  const { headers } = description;
  return {
    blobContentType: headers.contentType,
    blobContentEncoding: headers.contentEncoding,
    blobContentDisposition: headers.contentDisposition,
    blobCacheControl: headers.cacheControl,
    blobContentLanguage: headers.contentLanguage,
    ...(description.contentMd5Base64 === undefined ? {} : { blobContentMD5: Buffer.from(description.contentMd5Base64, 'base64') }),
  };
}

/**
 * Block ids name what a block holds: the source version (its ETag), the block size and the block's
 * position. A later run that finds a block of that name among the blob's uncommitted blocks (Get Block
 * List) knows it holds exactly those bytes, and does not write it again.
 */
function blockIdsFor(description: WriteDescription, blockSize: number, count: number): string[] {
  const version = createHash('sha256').update(`${description.recordedSource.etag}\n${blockSize}`).digest('hex').slice(0, 24);
  return Array.from({ length: count }, (_, index) => Buffer.from(`${version}-${String(index).padStart(BLOCK_ID_DIGITS, '0')}`).toString('base64'));
}

/** The ids of a blob's uncommitted blocks (none when the blob does not exist). */
async function uncommittedBlocks(
  target: BlockBlobClient,
  signal: AbortSignal | undefined,
  bounded: <T>(signal: AbortSignal | undefined, call: (signal: AbortSignal) => Promise<T>) => Promise<T>,
): Promise<Set<string>> {
  try {
    const list = await bounded(signal, (abortSignal) => target.getBlockList('uncommitted', { abortSignal }));
    return new Set((list.uncommittedBlocks ?? []).map((block) => block.name));
  } catch (error) {
    if (error instanceof RestError && error.statusCode === 404) return new Set();
    throw error;
  }
}

/** Block size for pulling an object from a URL: 64 MiB (or the single-copy limit, when smaller), and few enough blocks for the 50,000-block limit. */
function copyBlockSize(size: number, singleCopyMaxSize: number): number {
  return Math.max(Math.min(64 * MIB, singleCopyMaxSize), Math.ceil(size / 50_000 / MIB) * MIB);
}

function keyFromUrl(url: string, containerUrl: string): string {
  const path = url.slice(containerUrl.length + 1).split('?')[0] ?? '';
  return decodeURIComponent(path);
}

/** Answers that mean "this service will not pull from that URL at all" (as opposed to one object failing). */
const REFUSED_PULL_CODES = new Set(['APINotImplemented', 'NotImplemented', 'FeatureNotSupported', 'AuthorizationSourceIPMismatch']);
const STORE_WIDE_CODES = new Set(['AuthenticationFailed', 'AuthorizationFailure', 'AuthorizationPermissionMismatch', 'ContainerNotFound', 'AccountIsDisabled', 'InvalidAuthenticationInfo', 'InsufficientAccountPermissions']);

/**
 * Whether a failed pull means Azure cannot pull from the source at all: the source refused it (403
 * CannotVerifyCopySource: a bucket policy, a firewall) or the endpoint lacks the API (501). A 404
 * CannotVerifyCopySource is one object gone since the listing; a 500 one is a timeout: neither is a refusal.
 */
function isRefusedPull(status: number | undefined, code: string | undefined): boolean {
  if (status === 501) return true;
  if (code === 'CannotVerifyCopySource') return status === 401 || status === 403;
  return code !== undefined && REFUSED_PULL_CODES.has(code);
}

export function toAzureStoreError(store: string, operation: string, error: unknown, key?: string): StoreError {
  if (error instanceof StoreError) return error;
  const status = error instanceof RestError ? error.statusCode : undefined;
  const code = error instanceof RestError ? error.code : undefined;
  let scope: FailureScope = 'object';
  if (operation === 'copy from URL' && isRefusedPull(status, code)) scope = 'refused-pull';
  else if ((code !== undefined && STORE_WIDE_CODES.has(code)) || status === 401 || status === 403) scope = 'store';
  else if (error instanceof Error && error.name === 'CredentialUnavailableError') scope = 'store';
  return new StoreError({ store, operation, key, status, code, scope, detail: firstLine(describeError(error)), cause: error });
}

function firstLine(text: string): string {
  return text.split('\n')[0] ?? text;
}
