import { createHash } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { isMultipartEtag, multipartEtag } from './checksums.ts';
import type { ObjectRead, Part, PartLimits, PartUpload, ReadOptions, SourceStore, TargetStore, WriteDescription, WrittenVersion } from '../stores/store.ts';
import { ByteBudget, forEachBounded, type PartBuffer } from './concurrency.ts';
import { StoreError, describeError } from './errors.ts';
import type { RecordedSource } from './types.ts';

const MIB = 1024 * 1024;

/** How objects are cut into parts when they stream through the process. */
export interface TransferTuning {
  /** Part size for large objects, and the size up to which an object goes in one request (default 5 MiB; raised automatically so no object needs more parts than a store allows). */
  readonly partSize: number;
  /** Parts of one object in flight at once (default 4). */
  readonly partConcurrency: number;
  /** How often a broken source read is resumed from where it stopped before the object fails (default 3). */
  readonly readAttempts: number;
  /**
   * Objects up to this size whose source ETag gives their MD5 go to each target in one request, streamed as they are
   * read (no part buffers, no hashing here), and the target checks them against that MD5 (default 256 MiB). Larger
   * objects, and those without a source MD5, go in parts.
   */
  readonly singleRequestMax: number;
}

export const DEFAULT_TRANSFER_TUNING: TransferTuning = { partSize: 5 * MIB, partConcurrency: 4, readAttempts: 3, singleRequestMax: 256 * MIB };

/**
 * Under a deadline, an object goes in one streamed request only when it would finish before the deadline even at
 * this speed: one request cannot stop half-way and keep what it sent, as parts do.
 */
const SLOWEST_EXPECTED_BYTES_PER_SECOND = MIB;

/** Bytes each target's branch of a streamed object buffers before the source is read more slowly for it. */
const STREAM_BRANCH_BYTES = 256 * 1024;

/** One target an object streams to. */
export interface StreamDestination<Name extends string = string> {
  readonly name: Name;
  readonly store: TargetStore;
}

/** Which source version a write copied, and the target version it made: what the copy record keeps. */
export interface WrittenCopy {
  /** The source version copied: its ETag and LastModified (what a metadata-only change moves). */
  readonly source: RecordedSource;
  readonly targetEtag: string;
}

/**
 * What happened to one object at each destination: written (the version written, `bytes` sent in this run; less than the
 * object when an earlier run's parts were kept), failed, or `stopped` when asked to (`stopStarting`)
 * with the parts written so far kept for a later run (`resumeToken`, `partSize`: see `PartUploadOptions`).
 */
export type StreamOutcome =
  | { readonly ok: true; readonly bytes: number; readonly written: WrittenCopy }
  | { readonly ok: false; readonly error: unknown }
  | { readonly ok: false; readonly stopped: { readonly bytes: number; readonly resumeToken: string | undefined; readonly partSize: number } };

/** Where an earlier run left a destination's upload of this object. */
export interface ResumePoint {
  /** The source ETag the earlier run was copying: its parts are kept only for that version. */
  readonly etag: string;
  readonly partSize: number;
  readonly token: string | undefined;
}

/** The one part size that fits every destination's limits for an object of `size` bytes. */
export function choosePartSize(size: number, preferred: number, limits: readonly PartLimits[]): number {
  const maxParts = Math.min(...limits.map((limit) => limit.maxParts));
  const maxPartSize = Math.min(...limits.map((limit) => limit.maxPartSize));
  const minPartSize = Math.max(...limits.map((limit) => limit.minPartSize));
  const fitsPartCount = Math.ceil(Math.ceil(size / maxParts) / MIB) * MIB;
  const partSize = Math.max(preferred, minPartSize, fitsPartCount);
  if (partSize > maxPartSize) throw new Error(`object of ${size} bytes does not fit in ${maxParts} parts of at most ${maxPartSize} bytes`);
  return partSize;
}

/** The description every target records for a copy of the object `read` describes. */
export function describeWrite(key: string, read: Omit<ObjectRead, 'body'>): WriteDescription {
  return {
    key,
    size: read.size,
    headers: read.headers,
    userMetadata: read.userMetadata,
    contentMd5Base64: read.md5Base64,
    recordedSource: { etag: read.etag, lastModifiedMs: read.lastModifiedMs },
  };
}

/**
 * Streams one object from the source to every destination, reading it once: parts are cut from the
 * source stream, held in `budget`, and written to all destinations before their memory is freed.
 * Nothing becomes visible at a destination until every part arrived and the whole-object MD5 (where
 * the source gives one) matched; a failed destination is aborted without stopping the others.
 *
 * Large objects go in parts, and keep their progress across runs: a destination with a `resume` point
 * for the same source version continues that upload (parts already there are not sent again, and the
 * source is read from the first part missing anywhere); when `stopStarting` fires, no further part is
 * read, parts in flight finish, and the upload is left for a later run (`stopped`).
 */
export async function streamObject<Name extends string>(request: StreamRequest<Name>): Promise<Map<Name, StreamOutcome>> {
  const outcomes = await streamObjectCut(request, true);
  const uneven = [...outcomes.values()].some((outcome) => !outcome.ok && 'error' in outcome && outcome.error instanceof UnevenSourceParts);
  // The source's parts turned out not to be of one size (only a part-by-part look tells): nothing was committed;
  // the object is copied again cut as usual, read with the store's own checks, so it converges all the same.
  return uneven ? streamObjectCut(request, false) : outcomes;
}

/** What `streamObject` copies, where to, and how. */
export interface StreamRequest<Name extends string> {
  readonly source: SourceStore;
  readonly key: string;
  readonly destinations: readonly StreamDestination<Name>[];
  readonly tuning: TransferTuning;
  readonly budget: ByteBudget;
  readonly signal?: AbortSignal;
  /** Fires when no new part should start: parts in flight finish and multi-part uploads are kept for a later run. */
  readonly stopStarting?: AbortSignal;
  /** Where earlier runs left each destination's upload. */
  readonly resume?: ReadonlyMap<Name, ResumePoint>;
  /**
   * What the listing said of the object. With a multipart ETag, the source's part layout is asked for before the
   * read (`sourcePartSize`), so the read can go without the store's own checksum check when the parts prove it.
   */
  readonly listed?: { readonly etag: string; readonly size: number };
  /**
   * Read the source in ranges of this many bytes, each asked for once the one before is consumed, instead
   * of in one open-ended GET: a run that stops (`stopStarting`) then leaves no bytes in flight. Only for an
   * object larger than this (a range read of an empty object is refused).
   */
  readonly readWindow?: number;
  /**
   * When transfers will be cancelled (epoch ms): a part that would likely not be written by then (it
   * takes longer than the slowest part so far) is not started; the upload stops as with `stopStarting`.
   */
  readonly finishBy?: number;
}

/** `streamObject`, cut as the source's multipart upload was where it can be (`sourceLayout`), or always as usual. */
async function streamObjectCut<Name extends string>(request: StreamRequest<Name>, sourceLayout: boolean): Promise<Map<Name, StreamOutcome>> {
  const { source, key, destinations, tuning, budget, signal, readWindow } = request;
  const outcomes = new Map<Name, StreamOutcome>();
  const failAll = (error: unknown): Map<Name, StreamOutcome> => {
    for (const destination of destinations) if (!outcomes.has(destination.name)) outcomes.set(destination.name, { ok: false, error });
    return outcomes;
  };
  const resuming = request.resume !== undefined && request.resume.size > 0;
  const limits = destinations.map((destination) => destination.store.partLimits);
  const { listed } = request;
  /**
   * The source ETag the MD5s of the parts read are combined into and compared with before the commit (S3's multipart
   * ETag), when the object is cut as the source's upload was and every part is read in this run; its reads then
   * need no checksum check by the store (`ReadOptions.provenEtag`).
   */
  let proofEtag: string | undefined;
  const layoutOf = (object: { readonly etag: string; readonly size: number }): Promise<number | undefined> =>
    sourceLayout ? sourcePartSize(source, key, object, limits, budget, signal) : Promise.resolve(undefined);
  const listedPartSize = resuming || listed === undefined ? undefined : await layoutOf(listed);
  if (listedPartSize !== undefined) proofEtag = listed!.etag;
  // Resuming, the object is described first (HEAD): where to start reading depends on what the destinations hold.
  const first: ObjectRead | undefined = resuming ? undefined : await source.read(key, { signal, ...(readWindow === undefined ? {} : { end: readWindow - 1 }), ...(proofEtag === undefined ? {} : { provenEtag: proofEtag }) });
  const head = first ?? (await source.head(key, signal));
  // Another version than the listing's was read (and checked by the store as usual): cut as usual.
  if (first !== undefined && first.etag !== proofEtag) proofEtag = undefined;
  const layoutPartSize = first !== undefined ? (proofEtag === undefined ? undefined : listedPartSize) : await layoutOf(head);
  const description = describeWrite(key, head);
  const singlePutLimit = Math.min(...destinations.map((destination) => destination.store.maxSinglePutSize));
  const partSize = layoutPartSize ?? choosePartSize(head.size, tuning.partSize, limits);
  const multiPart = head.size > Math.min(partSize, singlePutLimit);

  /** A reader of this object from `read`, which serves it from byte `offset`. */
  const readerOf = (read: ObjectRead, offset = 0): ResumingReader =>
    new ResumingReader(source, key, read, offset, tuning.readAttempts, { signal, ...(proofEtag === undefined ? {} : { provenEtag: proofEtag }) }, readWindow);
  /** The outcome of a write that sent `bytes` and made the target's `version`. */
  const writtenAs = (bytes: number, version: WrittenVersion): StreamOutcome => ({ ok: true, bytes, written: { source: description.recordedSource, targetEtag: version.etag } });

  const streamWhole = multiPart && first !== undefined && description.contentMd5Base64 !== undefined
    && head.size <= Math.min(tuning.singleRequestMax, singlePutLimit) && destinations.every((destination) => destination.store.canStreamWhole())
    && (request.finishBy === undefined || Date.now() + (head.size / SLOWEST_EXPECTED_BYTES_PER_SECOND) * 1000 < request.finishBy);
  if (streamWhole) {
    const reader = readerOf(first);
    try {
      await putStreamed(reader);
    } catch (error) {
      failAll(error);
    } finally {
      await reader.close();
    }
    // A target that turned out not to take streams (an S3-compatible service refusing unsigned payloads) gets the object in parts.
    const inParts = destinations.filter((destination) => outcomes.get(destination.name)?.ok === false && !destination.store.canStreamWhole());
    if (inParts.length === 0 || signal?.aborted === true) return outcomes;
    for (const [name, outcome] of await streamObject({ ...request, destinations: inParts })) outcomes.set(name, outcome);
    return outcomes;
  }

  if (!multiPart) {
    if (first === undefined && layoutPartSize !== undefined) proofEtag = head.etag;
    const reader = readerOf(first ?? (await source.read(key, { signal, ifMatch: head.etag, ...(proofEtag === undefined ? {} : { provenEtag: proofEtag }) })));
    try {
      await putWhole(reader);
      return outcomes;
    } catch (error) {
      return failAll(error);
    } finally {
      await reader.close();
    }
  }

  const uploads = new Map<Name, PartUpload>();
  const written = new Map<Name, number>();
  const resumeFor = (name: Name): { token: string | undefined } | undefined => {
    const point = request.resume?.get(name);
    return point !== undefined && point.etag === head.etag && point.partSize === partSize ? { token: point.token } : undefined;
  };
  const startUploads = (): Promise<unknown> => Promise.all(destinations.map(async (destination) => {
    try {
      const resume = resumeFor(destination.name);
      const upload = await destination.store.startPartUpload(description, { partSize, signal, ...(resume === undefined ? {} : { resume }) });
      // The upload an earlier run left is gone and none of its parts are found: when that run's commit reached the
      // service although the run did not see it finish (cut by its deadline, or a crash), the object is already there.
      const there = resume !== undefined && upload.uploaded.size === 0 ? await alreadyWritten(destination.store, description, signal) : undefined;
      if (there !== undefined) {
        await upload.abort().catch(() => undefined);
        outcomes.set(destination.name, writtenAs(0, there));
        return;
      }
      uploads.set(destination.name, upload);
      written.set(destination.name, 0);
    } catch (error) {
      outcomes.set(destination.name, { ok: false, error });
    }
  }));
  const partCount = Math.max(1, Math.ceil(head.size / partSize));
  /** Undefined when every part is already at every destination: nothing to read, only to commit. */
  let reader: ResumingReader | undefined;
  let started: Promise<unknown>;
  let firstIndex = 0;
  if (first !== undefined) {
    // Started while the first part is read: the object's bytes keep flowing during the round trip.
    started = startUploads();
    reader = readerOf(first);
  } else {
    await startUploads();
    started = Promise.resolve();
    const missing = (upload: PartUpload): number => {
      let index = 0;
      while (upload.uploaded.has(index)) index += 1;
      return index;
    };
    firstIndex = Math.min(partCount, ...[...uploads.values()].map(missing));
    if (uploads.size === 0) return failAll(new Error('no destination could start the upload'));
    // The proof needs every part read in this run, and no part kept from an earlier run's reading: resuming mid-object
    // (or with parts kept anywhere), each part carries its MD5 alone, checked by the target against what was read.
    if (layoutPartSize !== undefined && [...uploads.values()].every((upload) => upload.uploaded.size === 0)) proofEtag = head.etag;
    const from = firstIndex * partSize;
    try {
      const end = readWindow === undefined ? undefined : Math.min(head.size, from + readWindow) - 1;
      if (firstIndex < partCount) reader = readerOf(await source.read(key, { start: from, ...(end === undefined ? {} : { end }), ifMatch: head.etag, signal, ...(proofEtag === undefined ? {} : { provenEtag: proofEtag }) }), from);
    } catch (error) {
      failAll(error);
      await Promise.all([...uploads.keys()].map(async (name) => uploads.get(name)?.abort().catch(() => undefined)));
      return outcomes;
    }
  }
  try {
    await writeParts(reader, started, firstIndex, partCount);
    return outcomes;
  } finally {
    await reader?.close();
  }

  async function putWhole(reader: ResumingReader): Promise<void> {
    const part = await borrowPartBuffer(budget, head.size, signal);
    try {
      const bytes = await reader.read(part.bytes);
      await reader.expectEnd();
      // With the source's MD5 (its ETag), every target checks the bytes against it (Content-MD5) and refuses others:
      // no pass over them here. Without one, the MD5 taken here is what the targets check the bytes they receive against
      // (and, for an object the source uploaded as one part, what its multipart ETag is checked against first).
      const md5 = description.contentMd5Base64 === undefined ? createHash('md5').update(bytes).digest() : undefined;
      if (md5 !== undefined && proofEtag !== undefined) await verifyPartsEtag(source, description, proofEtag, [md5], partSize, signal);
      const whole: WriteDescription = md5 === undefined ? description : { ...description, contentMd5Base64: md5.toString('base64') };
      await Promise.all(destinations.map(async (destination) => {
        try {
          const version = await destination.store.putObject(whole, bytes, signal);
          outcomes.set(destination.name, writtenAs(bytes.byteLength, version));
        } catch (error) {
          outcomes.set(destination.name, { ok: false, error: description.contentMd5Base64 === undefined ? error : sourceDigestRefused(error, description, source.label) });
        }
      }));
    } finally {
      part.release();
    }
  }

  /**
   * One request per destination carrying the whole object as it is read, each chunk passed on as it came (no copy,
   * no hash): each target checks the bytes against the source MD5 and stores nothing else. The slowest destination
   * sets the pace. A destination's later attempts (its store's retries) read the object afresh, for it alone.
   */
  async function putStreamed(reader: ResumingReader): Promise<void> {
    const branches = new Map(destinations.map((destination) => {
      const branch = new PassThrough({ highWaterMark: STREAM_BRANCH_BYTES });
      // Its failure reaches the caller through the request that reads it, or as the read's own error.
      branch.on('error', () => undefined);
      return [destination.name, branch] as const;
    }));
    let readFailure: unknown;
    const feeding = (async (): Promise<void> => {
      try {
        for await (const chunk of reader.chunks()) {
          const open = [...branches.values()].filter((branch) => !branch.destroyed);
          if (open.length === 0) return;
          const full = open.filter((branch) => !branch.write(chunk));
          if (full.length > 0) await Promise.all(full.map(drained));
        }
        for (const branch of branches.values()) branch.end();
      } catch (error) {
        readFailure = error;
        for (const branch of branches.values()) branch.destroy(error instanceof Error ? error : new Error(String(error)));
      }
    })();
    await Promise.all(destinations.map(async (destination) => {
      const branch = branches.get(destination.name)!;
      let attempts = 0;
      const open = (): Readable => {
        attempts += 1;
        if (attempts === 1) return branch;
        // The first attempt is over: its branch no longer holds the others back.
        branch.destroy();
        return Readable.from(freshBytes(), { objectMode: false });
      };
      try {
        const version = await destination.store.putObjectStream(description, open, signal);
        outcomes.set(destination.name, writtenAs(head.size, version));
      } catch (error) {
        branch.destroy();
        if (signal?.aborted === true) outcomes.set(destination.name, { ok: false, stopped: { bytes: 0, resumeToken: undefined, partSize } });
        else outcomes.set(destination.name, { ok: false, error: readFailure ?? sourceDigestRefused(error, description, source.label) });
      }
    }));
    await feeding;
  }

  /** The object from its first byte, read again (the version this transfer copies, nothing else). */
  async function* freshBytes(): AsyncGenerator<Uint8Array> {
    const end = readWindow === undefined ? {} : { end: Math.min(head.size, readWindow) - 1 };
    const again = readerOf(await source.read(key, { ifMatch: head.etag, signal, ...end }));
    try {
      yield* again.chunks();
    } finally {
      await again.close();
    }
  }

  async function writeParts(reader: ResumingReader | undefined, started: Promise<unknown>, firstIndex: number, partCount: number): Promise<void> {
    const abortUpload = async (name: Name): Promise<void> => {
      const upload = uploads.get(name);
      uploads.delete(name);
      await upload?.abort().catch(() => undefined);
    };
    const live = (): Name[] => [...uploads.keys()].filter((name) => !outcomes.has(name));

    // Each byte is hashed once. With a source MD5 to compare with (not a multipart or SSE-KMS ETag) and every byte
    // read (not resuming mid-object), the whole object is checked against it before the commit, and the parts go
    // without digests of their own; otherwise each part carries its MD5, which the target checks, and where the parts
    // are cut as the source's upload was (`proofEtag`), their MD5s are combined and checked against its ETag too.
    const whole = description.contentMd5Base64 === undefined || firstIndex > 0 ? undefined : createHash('md5');
    const partMd5s: Buffer[] | undefined = proofEtag === undefined ? undefined : [];
    const inFlight = new Set<Promise<void>>();
    let stopped = false;
    /** The longest a part took so far, from its read to its last write. */
    let slowestPartMs = 0;
    const noTimeForAnother = (): boolean => request.finishBy !== undefined && slowestPartMs > 0 && Date.now() + slowestPartMs * PART_TIME_MARGIN > request.finishBy;
    try {
      for (let index = firstIndex; index < partCount && (index === firstIndex || live().length > 0); index += 1) {
        while (inFlight.size >= tuning.partConcurrency) await Promise.race(inFlight);
        if (index > firstIndex && (request.stopStarting?.aborted === true || noTimeForAnother())) {
          stopped = true;
          break;
        }
        const length = Math.min(partSize, head.size - index * partSize);
        const partStartedMs = Date.now();
        const buffer = await borrowPartBuffer(budget, length, signal);
        const release = buffer.release;
        let bytes: Uint8Array;
        try {
          bytes = await reader!.read(buffer.bytes);
          if (index === firstIndex) await started;
        } catch (error) {
          release();
          throw error;
        }
        if (live().length === 0) {
          release();
          break;
        }
        whole?.update(bytes);
        const needing = live().filter((name) => !uploads.get(name)!.uploaded.has(index));
        const md5 = whole === undefined && (needing.length > 0 || partMd5s !== undefined) ? createHash('md5').update(bytes).digest() : undefined;
        if (partMd5s !== undefined && md5 !== undefined) partMd5s[index] = md5;
        if (needing.length === 0) {
          release();
          continue;
        }
        const part: Part = md5 === undefined ? { index, bytes } : { index, bytes, md5Base64: md5.toString('base64') };
        const upload = Promise.all(needing.map(async (name) => {
          try {
            await uploads.get(name)!.uploadPart(part, signal);
            written.set(name, (written.get(name) ?? 0) + bytes.byteLength);
          } catch (error) {
            // Cancelled (deadline, Ctrl-C, lost lock): the parts already there are kept for a later run.
            if (signal?.aborted === true) return;
            if (!outcomes.has(name)) outcomes.set(name, { ok: false, error });
            await abortUpload(name);
          }
        })).then(() => {
          slowestPartMs = Math.max(slowestPartMs, Date.now() - partStartedMs);
        }).finally(release);
        inFlight.add(upload);
        void upload.finally(() => inFlight.delete(upload));
      }
      await Promise.all(inFlight);
      signal?.throwIfAborted();
      if (stopped) {
        for (const name of live()) outcomes.set(name, { ok: false, stopped: { bytes: written.get(name) ?? 0, resumeToken: uploads.get(name)!.resumeToken, partSize } });
        return;
      }
      await reader?.expectEnd();
      if (whole !== undefined) verifyWholeMd5(description, whole.digest('base64'), source.label);
      if (partMd5s !== undefined && proofEtag !== undefined) await verifyPartsEtag(source, description, proofEtag, partMd5s, partSize, signal);
      await Promise.all(live().map(async (name) => {
        try {
          const version = await uploads.get(name)!.commit(partCount, signal);
          outcomes.set(name, writtenAs(written.get(name) ?? 0, version));
        } catch (error) {
          outcomes.set(name, { ok: false, error });
          await abortUpload(name);
        }
      }));
    } catch (error) {
      await Promise.allSettled(inFlight);
      if (signal?.aborted === true) {
        // Nothing was committed, so nothing partial is visible; the parts written are kept for a later run.
        for (const name of live()) outcomes.set(name, { ok: false, stopped: { bytes: written.get(name) ?? 0, resumeToken: uploads.get(name)!.resumeToken, partSize } });
      }
      failAll(error);
    } finally {
      // An upload still being started when reading failed is aborted too, once it exists; a stopped one is kept.
      await started;
      await Promise.all([...uploads.keys()].filter((name) => { const outcome = outcomes.get(name); return outcome === undefined || (!outcome.ok && !('stopped' in outcome)); }).map(abortUpload));
    }
  }
}

/** Resolves when `stream` wants more, or is gone. */
function drained(stream: PassThrough): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      stream.off('drain', done);
      stream.off('close', done);
      resolve();
    };
    stream.on('drain', done);
    stream.on('close', done);
  });
}

/** A part is started only when the slowest part so far, this many times over, would end before `finishBy` (1.5 left a part cut at the cancel now and then under CPU load: 1.2-1.33x the bytes). */
const PART_TIME_MARGIN = 3;

/**
 * A buffer of `length` bytes cut from one of a few pooled sizes (at most 25% larger), so objects of different
 * sizes reuse the budget's buffers: a fresh buffer costs page faults and zeroing, a fifth to a half of an MD5
 * of the same bytes.
 */
async function borrowPartBuffer(budget: ByteBudget, length: number, signal: AbortSignal | undefined): Promise<PartBuffer> {
  const lent = await budget.borrow(pooledSize(length), signal);
  return { bytes: lent.bytes.subarray(0, length), release: lent.release };
}

/** The smallest of 64 KiB, and 1.25, 1.5, 1.75 and 2 times each power of two, that holds `length` bytes. */
function pooledSize(length: number): number {
  const smallest = 64 * 1024;
  if (length <= smallest) return smallest;
  const step = 2 ** (Math.floor(Math.log2(length - 1)) - 2);
  return Math.ceil(length / step) * step;
}

/** The error codes S3, OCI (BadDigest, InvalidDigest) and Azure (Md5Mismatch) answer a Content-MD5 the bytes do not have with. */
const DIGEST_REFUSALS = new Set(['BadDigest', 'InvalidDigest', 'Md5Mismatch']);

/**
 * A target that refused bytes sent with the source's own MD5 as their Content-MD5 says they are not the source's:
 * said as such (the bytes read are at fault, not the target), with the target's answer kept.
 */
function sourceDigestRefused(error: unknown, description: WriteDescription, store: string): unknown {
  if (!(error instanceof StoreError) || error.code === undefined || !DIGEST_REFUSALS.has(error.code)) return error;
  return new StoreError({
    store,
    operation: 'read',
    key: description.key,
    scope: 'object',
    detail: `the bytes read do not have the MD5 the source ETag says (${description.contentMd5Base64 ?? ''}): ${error.store} refused them (${error.status ?? ''} ${error.code}); nothing was written`,
    cause: error,
  });
}

function verifyWholeMd5(description: WriteDescription, actual: string, store: string): void {
  if (description.contentMd5Base64 !== undefined && description.contentMd5Base64 !== actual) {
    throw readMismatch(description, store, `the bytes read have MD5 ${actual}, the source ETag says ${description.contentMd5Base64}`);
  }
}

/**
 * Checks the MD5s of the parts read, combined as S3 combines them, against the source's multipart ETag. On a
 * mismatch, the source is asked the size of every part between the first and the last: when one differs from
 * `partSize` (a layout part 1's size, the count and the object's size could not tell), the cut was not the
 * source's and `UnevenSourceParts` says so; when all match, the bytes read are not the source's.
 */
async function verifyPartsEtag(source: SourceStore, description: WriteDescription, sourceEtag: string, partMd5s: readonly Uint8Array[], partSize: number, signal: AbortSignal | undefined): Promise<void> {
  const actual = multipartEtag(partMd5s);
  if (actual.toLowerCase() === sourceEtag.toLowerCase()) return;
  const middleParts = Array.from({ length: Math.max(0, partMd5s.length - 2) }, (_, index) => index + 2);
  let uneven: number | undefined;
  await forEachBounded(middleParts, LAYOUT_QUESTIONS_AT_ONCE, async (partNumber) => {
    if (uneven !== undefined) return;
    const layout = source.partLayout === undefined ? undefined : await unlessFailed(source.partLayout(description.key, sourceEtag, partNumber, signal), signal);
    if (layout !== undefined && layout.partSize !== partSize) uneven = partNumber;
  });
  if (uneven !== undefined) throw new UnevenSourceParts(`part ${uneven} of ${description.key} is not ${partSize} bytes long`);
  throw readMismatch(description, source.label, `the bytes read, cut as the source's ${partMd5s.length} part(s), give the multipart ETag ${actual}, the source ETag is ${sourceEtag}`);
}

/**
 * The target's version of the object when it already holds the version `description` writes (the source ETag it
 * records, and the size); `undefined` when not, or when the target cannot say (the upload then goes on as usual).
 */
async function alreadyWritten(target: TargetStore, description: WriteDescription, signal: AbortSignal | undefined): Promise<WrittenVersion | undefined> {
  const head = await unlessFailed(target.head(description.key, signal), signal);
  return head !== undefined && head.recordedSource?.etag === description.recordedSource.etag && head.size === description.size ? { etag: head.etag } : undefined;
}

/** What `answer` resolves to, or `undefined` when it fails (for questions that only spare work); a cancelled run still stops. */
async function unlessFailed<T>(answer: Promise<T>, signal: AbortSignal | undefined): Promise<T | undefined> {
  try {
    return await answer;
  } catch {
    signal?.throwIfAborted();
    return undefined;
  }
}

/** Part sizes asked for at once when a multipart ETag did not match (`verifyPartsEtag`). */
const LAYOUT_QUESTIONS_AT_ONCE = 8;

/** The source's upload was not cut in parts of one size: the object is copied again, cut as usual (`streamObject`). */
class UnevenSourceParts extends Error {
  override readonly name = 'UnevenSourceParts';
}

/** The bytes read are not the source's (`detail` says how that shows): nothing is committed, each target keeps what it had. */
function readMismatch(description: WriteDescription, store: string, detail: string): StoreError {
  return new StoreError({ store, operation: 'read', key: description.key, scope: 'object', detail: `${detail}; nothing was written` });
}

/**
 * The part size the source's own upload of `object` used, when the object can be copied cut the same way (so the
 * MD5s of the parts prove it against its multipart ETag): a multipart ETag, every part but the last of part 1's size
 * (as far as part 1's size, the count and the object's size tell), within every target's part limits and the
 * memory budget. `undefined` otherwise, also when the store cannot tell or its answer fails: this is an
 * optimisation only, and the object is then cut as usual (a cancelled run still stops).
 */
async function sourcePartSize(
  source: SourceStore,
  key: string,
  object: { readonly etag: string; readonly size: number },
  limits: readonly PartLimits[],
  budget: ByteBudget,
  signal: AbortSignal | undefined,
): Promise<number | undefined> {
  if (source.partLayout === undefined || !isMultipartEtag(object.etag)) return undefined;
  // Not answered (or the object changed since it was listed): cut as usual, the read tells the rest.
  const layout = await unlessFailed(source.partLayout(key, object.etag, 1, signal), signal);
  if (layout === undefined) return undefined;
  const { partSize: size, partCount: count } = layout;
  const uniform = object.etag.endsWith(`-${count}`) && (count - 1) * size < object.size && object.size <= count * size;
  const fits = limits.every((limit) => size >= limit.minPartSize && size <= limit.maxPartSize && count <= limit.maxParts) && size <= budget.capacity;
  return uniform && fits ? size : undefined;
}

/**
 * Reads exact-length slices of one object; when the source stream breaks, it asks again from the
 * byte where it stopped (only while the object keeps the same ETag).
 */
class ResumingReader {
  readonly #source: SourceStore;
  readonly #key: string;
  readonly #etag: string;
  readonly #size: number;
  readonly #signal: AbortSignal | undefined;
  /** What every read of this reader carries besides its range. */
  readonly #reads: Pick<ReadOptions, 'signal' | 'provenEtag'>;
  #attemptsLeft: number;
  #body: AsyncIterable<Uint8Array>;
  #iterator: AsyncIterator<Uint8Array>;
  #pending: Uint8Array | undefined;
  #offset = 0;

  /** Bytes per ranged read, when the object is read in ranges (`first` then serves the first range). */
  readonly #window: number | undefined;

  /** `first` serves the object from byte `offset` on (up to `offset + window` when `window` is given). */
  constructor(source: SourceStore, key: string, first: ObjectRead, offset: number, attempts: number, reads: Pick<ReadOptions, 'signal' | 'provenEtag'>, window?: number) {
    this.#window = window;
    this.#source = source;
    this.#key = key;
    this.#etag = first.etag;
    this.#size = first.size;
    this.#signal = reads.signal;
    this.#reads = reads;
    this.#attemptsLeft = attempts;
    this.#offset = offset;
    this.#body = first.body;
    this.#iterator = first.body[Symbol.asyncIterator]();
  }

  /** Fills `out` with the next bytes of the object; a failure is the source's, named as such. */
  async read(out: Uint8Array): Promise<Uint8Array> {
    try {
      return await this.#fill(out);
    } catch (error) {
      throw this.#readFailure(error);
    }
  }

  /** The rest of the object, chunk by chunk as the source sends it (not copied); fails when the source sends more or fewer bytes than its size. */
  async *chunks(): AsyncGenerator<Uint8Array> {
    try {
      while (this.#offset < this.#size) {
        const chunk = this.#pending ?? (await this.#nextChunk());
        this.#pending = undefined;
        if (chunk === undefined) throw this.#error(`the stream ended at byte ${this.#offset} of ${this.#size}`);
        const take = Math.min(chunk.byteLength, this.#size - this.#offset);
        if (take < chunk.byteLength) this.#pending = chunk.subarray(take);
        this.#offset += take;
        yield take < chunk.byteLength ? chunk.subarray(0, take) : chunk;
      }
      await this.expectEnd();
    } catch (error) {
      throw this.#readFailure(error);
    }
  }

  #readFailure(error: unknown): unknown {
    if (error instanceof StoreError || this.#signal?.aborted === true) return error;
    return this.#error(`reading at byte ${this.#offset} of ${this.#size} failed: ${describeError(error)}`);
  }

  async #fill(out: Uint8Array): Promise<Uint8Array> {
    const length = out.byteLength;
    let filled = 0;
    while (filled < length) {
      const chunk = this.#pending ?? (await this.#nextChunk());
      this.#pending = undefined;
      if (chunk === undefined) throw this.#error(`the stream ended at byte ${this.#offset} of ${this.#size}`);
      const take = Math.min(chunk.byteLength, length - filled);
      out.set(chunk.subarray(0, take), filled);
      filled += take;
      this.#offset += take;
      if (take < chunk.byteLength) this.#pending = chunk.subarray(take);
    }
    return out;
  }

  /** Stops reading and lets the connection go (after an error, or when done). */
  async close(): Promise<void> {
    await this.#iterator.return?.().catch(() => undefined);
    // Returning an iterator that was never started ends nothing: the stream itself is ended, so its connection does not linger.
    (this.#body as { destroy?: () => void }).destroy?.();
  }

  /** Fails when the source sends more bytes than its size said. */
  async expectEnd(): Promise<void> {
    const extra = this.#pending ?? (await this.#nextChunk());
    if (extra !== undefined && extra.byteLength > 0) throw this.#error(`the stream is longer than the ${this.#size} bytes announced`);
  }

  async #nextChunk(): Promise<Uint8Array | undefined> {
    for (;;) {
      try {
        const next = await this.#iterator.next();
        if (!next.done) return next.value;
        // A range consumed: the next one is asked for only now.
        if (this.#window === undefined || this.#offset >= this.#size) return undefined;
        this.#follow(await this.#source.read(this.#key, this.#rangeFromOffset()));
      } catch (error) {
        if (this.#signal?.aborted || this.#attemptsLeft <= 0 || this.#offset >= this.#size) throw error;
        this.#attemptsLeft -= 1;
        this.#follow(await this.#source.read(this.#key, this.#rangeFromOffset()));
      }
    }
  }

  #follow(read: ObjectRead): void {
    this.#body = read.body;
    this.#iterator = read.body[Symbol.asyncIterator]();
  }

  /** The rest of the object from where reading stands, or the next range of it. */
  #rangeFromOffset(): ReadOptions {
    const windowEnd = this.#window === undefined ? undefined : Math.min(this.#size, (Math.floor(this.#offset / this.#window) + 1) * this.#window) - 1;
    return { ...this.#reads, start: this.#offset, ifMatch: this.#etag, ...(windowEnd === undefined ? {} : { end: windowEnd }) };
  }

  #error(detail: string): StoreError {
    return new StoreError({ store: this.#source.label, operation: 'read', key: this.#key, scope: 'object', detail });
  }
}

