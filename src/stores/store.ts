import type { Readable } from 'node:stream';
import type { ObjectInfo, RecordedSource } from '../core/types.ts';

/** What every store can do: list everything, delete in batches. */
export interface ObjectStore {
  /** Where this store points, for messages and reports: `s3://bucket`, `azure://account/container`. Never holds a secret. */
  readonly label: string;
  /** Every object, a page at a time as the store returns them, in the store's key order. Throws `StoreError` when any page fails. */
  listPages(signal?: AbortSignal): AsyncIterable<readonly ObjectInfo[]>;
  /** Deletes the keys in as few batch requests as the store allows; resolves with the keys that could not be deleted. */
  deleteMany(keys: readonly string[], signal?: AbortSignal): Promise<KeyFailure[]>;
}

export interface KeyFailure {
  readonly key: string;
  readonly message: string;
}

/** The HTTP headers a mirror carries over with the bytes; absent fields are not set on the object. */
export interface ContentHeaders {
  readonly contentType?: string;
  readonly contentEncoding?: string;
  readonly contentDisposition?: string;
  readonly cacheControl?: string;
  readonly contentLanguage?: string;
}

/** The header fields in the order reports name them. */
export const CONTENT_HEADER_FIELDS = ['contentType', 'contentEncoding', 'contentDisposition', 'cacheControl', 'contentLanguage'] as const satisfies readonly (keyof ContentHeaders)[];

/** The content headers among `fields` that are set (a service's answer leaves the others undefined). */
export function definedHeaders(fields: { readonly [Field in (typeof CONTENT_HEADER_FIELDS)[number]]: string | undefined }): ContentHeaders {
  const headers: { -readonly [Field in keyof ContentHeaders]: ContentHeaders[Field] } = {};
  for (const field of CONTENT_HEADER_FIELDS) {
    const value = fields[field];
    if (value !== undefined) headers[field] = value;
  }
  return headers;
}

/** A content header's HTTP name: `contentType` is `content-type`, and so on. */
export function headerName(field: (typeof CONTENT_HEADER_FIELDS)[number]): string {
  return field.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`);
}

/** The content headers that are set, by HTTP name after `prefix` (S3's PutObject: none; Azure's Put Blob: `x-ms-blob-`). */
export function contentHeaderFields(headers: ContentHeaders, prefix = ''): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const field of CONTENT_HEADER_FIELDS) {
    const value = headers[field];
    if (value !== undefined) fields[`${prefix}${headerName(field)}`] = value;
  }
  return fields;
}

/** User metadata as S3 names it (`x-amz-meta-<name>`, the name lowercased, without the prefix). */
export type UserMetadata = Readonly<Record<string, string>>;

/** A readable byte range of one object, and what the store said about the object while serving it. */
export interface ObjectRead {
  readonly body: AsyncIterable<Uint8Array>;
  readonly headers: ContentHeaders;
  /** The object's user metadata, all of it. */
  readonly userMetadata: UserMetadata;
  readonly etag: string;
  /** Size of the whole object. */
  readonly size: number;
  readonly lastModifiedMs: number;
  /** Base64 MD5 of the whole object when the store knows it (an S3 ETag that is a plain MD5); `undefined` otherwise. */
  readonly md5Base64: string | undefined;
}

/** An object's properties without its bytes (`userMetadata`: all of it, as the store names it), and the source it recorded when a mirror copy wrote it. */
export interface ObjectHead extends Omit<ObjectRead, 'body'> {
  readonly recordedSource?: RecordedSource;
}

/** What the target said about the version a write created. */
export interface WrittenVersion {
  /** The ETag of the new version, without quotes, as the target's listings will show it. */
  readonly etag: string;
}

export interface ReadOptions {
  /** First byte to read (default 0). */
  readonly start?: number;
  /** Last byte to read, inclusive (default: to the end). */
  readonly end?: number;
  /** Only serve the bytes when the object still has this ETag (resuming a read must not mix versions). */
  readonly ifMatch?: string;
  /**
   * A multipart ETag the caller proves the bytes against itself (from the MD5s of the parts it reads, core/transfer.ts):
   * an answer with this ETag needs no checksum check by the store. An answer with another ETag is checked as usual.
   */
  readonly provenEtag?: string;
  readonly signal?: AbortSignal;
}

/** One part of how a multipart upload cut an object (S3's HEAD `?partNumber=N`): that part's size and how many parts there are. */
export interface PartLayout {
  readonly partSize: number;
  readonly partCount: number;
}

/** The source of truth. */
export interface SourceStore extends ObjectStore {
  read(key: string, options?: ReadOptions): Promise<ObjectRead>;
  /** Headers, metadata and ETag of one object, without its bytes (needed where bytes never pass through us). */
  head(key: string, signal?: AbortSignal): Promise<ObjectHead>;
  /** A short-lived GET URL another service can pull the object from. The URL is a secret: never log it. */
  presignGet(key: string, expiresInSeconds: number): Promise<string>;
  /**
   * How the version `etag` of the object was cut into parts when it was uploaded in parts: the size of part
   * `partNumber` (from 1) and the part count, in one request; `undefined` when the store does not say. Present
   * where the store can tell (S3); asked only for multipart ETags.
   */
  partLayout?(key: string, etag: string, partNumber: number, signal?: AbortSignal): Promise<PartLayout | undefined>;
}

/** What a target records with each write. */
export interface WriteDescription {
  readonly key: string;
  readonly size: number;
  readonly headers: ContentHeaders;
  readonly userMetadata: UserMetadata;
  /** Base64 MD5 of the whole object, when known (the source ETag is a plain MD5): the target stores it and, where it can, verifies it. */
  readonly contentMd5Base64: string | undefined;
  readonly recordedSource: RecordedSource;
}

/**
 * One object being written in parts. Nothing is visible at the target until `commit`;
 * `abort` (or never committing) leaves the previous version, or nothing, in place.
 */
export interface PartUpload {
  /** Parts (0-based) already at the target from an earlier run of the same source version: not uploaded again. */
  readonly uploaded: ReadonlySet<number>;
  /**
   * What a later run passes back (`PartUploadOptions.resume`) to continue this upload when it is left
   * unfinished: the OCI upload id. `undefined` where the store finds its parts by their names (Azure).
   */
  readonly resumeToken: string | undefined;
  /** Uploads one part. Parts may be uploaded concurrently and in any order; the store has `md5Base64` checked where it is given. */
  uploadPart(part: Part, signal?: AbortSignal): Promise<void>;
  commit(partCount: number, signal?: AbortSignal): Promise<WrittenVersion>;
  abort(): Promise<void>;
}

/** The MD5 a target checks a streamed object against (`TargetStore.putObjectStream`): one is always given. */
export function streamedObjectMd5(description: WriteDescription): string {
  if (description.contentMd5Base64 === undefined) throw new Error(`a streamed write of ${JSON.stringify(description.key)} needs the MD5 the target checks its bytes against`);
  return description.contentMd5Base64;
}

/** A mirror target. */
export interface TargetStore extends ObjectStore {
  /**
   * Why this target cannot hold `key` byte-exact (it would store it under another name, or refuse it),
   * or `undefined` when it can. Such keys are never written: one failure per key per run.
   */
  keyProblem(key: string): string | undefined;
  /** The metadata this target stores for a source's user metadata; throws `StoreError` (scope `unmirrorable`) naming what cannot be mapped. */
  metadataFor(key: string, userMetadata: UserMetadata): Record<string, string>;
  /**
   * One object's properties, metadata (as the target stores it) and recorded source: one HEAD request.
   * Throws `StoreError` with status 404 when it is absent. Used by `verify`, and by runs for objects
   * an OCI listing and copy record cannot decide.
   */
  head(key: string, signal?: AbortSignal): Promise<ObjectHead>;
  /** The bytes of one object, as stored (one GET), for a check that reads them. */
  readBody(key: string, signal?: AbortSignal): Promise<AsyncIterable<Uint8Array>>;
  /** Writes a whole object in one atomic request (small objects). */
  putObject(description: WriteDescription, bytes: Uint8Array, signal?: AbortSignal): Promise<WrittenVersion>;
  /**
   * Writes a whole object in one atomic request from a stream: `open` gives its bytes from the first, and is called
   * again for each further attempt. The target checks them against `description.contentMd5Base64` (always given
   * here) and stores nothing when they differ.
   */
  putObjectStream(description: WriteDescription, open: () => Readable, signal?: AbortSignal): Promise<WrittenVersion>;
  /** Whether `putObjectStream` may be used now (not once an S3-compatible service refused unsigned payloads: a stream cannot be signed). */
  canStreamWhole(): boolean;
  /** Largest object `putObject` and `putObjectStream` take in one request. */
  readonly maxSinglePutSize: number;
  /** Starts a multi-part write of a larger object, or continues one an earlier run left (`options.resume`). */
  startPartUpload(description: WriteDescription, options: PartUploadOptions): Promise<PartUpload>;
  /**
   * Largest part size and count this store accepts, and the smallest part it accepts (except the last).
   * The transfer picks one part size that fits every target of an object.
   */
  readonly partLimits: PartLimits;
  /** Present when the service can pull the bytes from a URL itself (no byte passes through us). */
  readonly serverSideCopy?: ServerSideCopy;
  /**
   * Removes leftovers of interrupted writes older than `olderThanMs` (epoch ms), except those whose
   * `resumeToken` is in `keep` (a current source version will continue them); resolves with how many it removed.
   */
  cleanupInterruptedWrites?(olderThanMs: number, keep: ReadonlySet<string>, signal?: AbortSignal): Promise<number>;
}

export interface PartUploadOptions {
  /** Every part but the last has this size; parts of an earlier run are kept only when they were cut the same way. */
  readonly partSize: number;
  /**
   * Look for the parts an earlier run wrote for this same source version (`description.recordedSource.etag`),
   * given its `resumeToken`. Absent: start afresh.
   */
  readonly resume?: { readonly token: string | undefined };
  readonly signal?: AbortSignal;
}

export interface Part {
  /** 0-based position of the part in the object. */
  readonly index: number;
  readonly bytes: Uint8Array;
  /**
   * The part's MD5, which the target checks the bytes it receives against. Absent when the whole object is checked
   * against the source's MD5 before the commit instead: each byte is hashed once.
   */
  readonly md5Base64?: string;
}

export interface PartLimits {
  readonly minPartSize: number;
  readonly maxPartSize: number;
  readonly maxParts: number;
}

export interface ServerSideCopy {
  /** Copies from `sourceUrl` into `description.key`; atomic like `putObject`. Throws `StoreError` with `refusedPull` when the service will not pull. */
  copyFromUrl(sourceUrl: string, description: WriteDescription, signal?: AbortSignal): Promise<WrittenVersion>;
}
