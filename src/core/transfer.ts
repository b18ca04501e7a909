import { createHash } from 'node:crypto';
import { md5Base64 } from './checksums.ts';
import type { ObjectRead, PartLimits, PartUpload, SourceStore, TargetStore, WriteDescription } from '../stores/store.ts';
import { ByteBudget, type PartBuffer } from './concurrency.ts';
import { StoreError } from './errors.ts';

const MIB = 1024 * 1024;

/** How objects are cut into parts when they stream through the process. */
export interface TransferTuning {
  /** Part size for large objects, and the size up to which an object goes in one request (default 5 MiB; raised automatically so no object needs more parts than a store allows). */
  readonly partSize: number;
  /** Parts of one object in flight at once (default 4). */
  readonly partConcurrency: number;
  /** How often a broken source read is resumed from where it stopped before the object fails (default 3). */
  readonly readAttempts: number;
}

export const DEFAULT_TRANSFER_TUNING: TransferTuning = { partSize: 5 * MIB, partConcurrency: 4, readAttempts: 3 };

/** One target an object streams to. */
export interface StreamDestination<Name extends string = string> {
  readonly name: Name;
  readonly store: TargetStore;
}

/** Which source version a write copied, and the target version it made: what the copy record keeps. */
export interface WrittenCopy {
  readonly sourceEtag: string;
  readonly targetEtag: string;
}

/** What happened to one object at each destination: the bytes and version written, or the error. */
export type StreamOutcome = { readonly ok: true; readonly bytes: number; readonly written: WrittenCopy } | { readonly ok: false; readonly error: unknown };

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
    contentType: read.contentType,
    contentMd5Base64: read.md5Base64,
    recordedSource: { etag: read.etag, lastModifiedMs: read.lastModifiedMs },
  };
}

/**
 * Streams one object from the source to every destination, reading it once: parts are cut from the
 * source stream, held in `budget`, and written to all destinations before their memory is freed.
 * Nothing becomes visible at a destination until every part arrived and the whole-object MD5 (where
 * the source gives one) matched; a failed destination is aborted without stopping the others.
 */
export async function streamObject<Name extends string>(request: {
  readonly source: SourceStore;
  readonly key: string;
  readonly destinations: readonly StreamDestination<Name>[];
  readonly tuning: TransferTuning;
  readonly budget: ByteBudget;
  readonly signal?: AbortSignal;
}): Promise<Map<Name, StreamOutcome>> {
  const { source, key, destinations, tuning, budget, signal } = request;
  const outcomes = new Map<Name, StreamOutcome>();
  const first = await source.read(key, { signal });
  const description = describeWrite(key, first);
  const reader = new ResumingReader(source, key, first, tuning.readAttempts, signal);
  try {
    return await writeParts();
  } finally {
    await reader.close();
  }

  async function writeParts(): Promise<Map<Name, StreamOutcome>> {
    const failAll = (error: unknown): Map<Name, StreamOutcome> => {
      for (const destination of destinations) if (!outcomes.has(destination.name)) outcomes.set(destination.name, { ok: false, error });
      return outcomes;
    };

    const singlePutLimit = Math.min(...destinations.map((destination) => destination.store.maxSinglePutSize));
    const partSize = choosePartSize(first.size, tuning.partSize, destinations.map((destination) => destination.store.partLimits));

    if (first.size <= Math.min(partSize, singlePutLimit)) {
      const part = await borrowPartBuffer(budget, first.size, signal);
      try {
        const bytes = await reader.read(part.bytes);
        await reader.expectEnd();
        const md5 = md5Base64(bytes);
        verifyWholeMd5(description, md5, source.label);
        // The MD5 is known now even where the source ETag did not give it: the stores need not hash the bytes again.
        const written: WriteDescription = { ...description, contentMd5Base64: md5 };
        await Promise.all(destinations.map(async (destination) => {
          try {
            const version = await destination.store.putObject(written, bytes, signal);
            outcomes.set(destination.name, { ok: true, bytes: bytes.byteLength, written: { sourceEtag: description.recordedSource.etag, targetEtag: version.etag } });
          } catch (error) {
            outcomes.set(destination.name, { ok: false, error });
          }
        }));
        return outcomes;
      } catch (error) {
        return failAll(error);
      } finally {
        part.release();
      }
    }

    const uploads = new Map<Name, PartUpload>();
    // Started while the first part is read: the object's bytes keep flowing during the round trip.
    const started = Promise.all(destinations.map(async (destination) => {
      try {
        uploads.set(destination.name, await destination.store.startPartUpload(description, signal));
      } catch (error) {
        outcomes.set(destination.name, { ok: false, error });
      }
    }));
    const abortUpload = async (name: Name): Promise<void> => {
      const upload = uploads.get(name);
      uploads.delete(name);
      await upload?.abort().catch(() => undefined);
    };
    const live = (): Name[] => [...uploads.keys()].filter((name) => !outcomes.has(name));

    const partCount = Math.max(1, Math.ceil(first.size / partSize));
    // Only worth a pass over the bytes when there is a source MD5 to compare with (not for multipart or SSE-KMS ETags).
    const whole = description.contentMd5Base64 === undefined ? undefined : createHash('md5');
    const inFlight = new Set<Promise<void>>();
    try {
      for (let index = 0; index < partCount && (index === 0 || live().length > 0); index += 1) {
        while (inFlight.size >= tuning.partConcurrency) await Promise.race(inFlight);
        const length = Math.min(partSize, first.size - index * partSize);
        const buffer = await borrowPartBuffer(budget, length, signal);
        const release = buffer.release;
        let bytes: Uint8Array;
        try {
          bytes = await reader.read(buffer.bytes);
          if (index === 0) await started;
        } catch (error) {
          release();
          throw error;
        }
        if (live().length === 0) {
          release();
          break;
        }
        whole?.update(bytes);
        // After the first part, the whole object's hash is that part's hash: no second pass over its bytes.
        const part = { index, bytes, md5Base64: index === 0 && whole !== undefined ? whole.copy().digest('base64') : md5Base64(bytes) };
        const upload = Promise.all(live().map(async (name) => {
          try {
            await uploads.get(name)!.uploadPart(part, signal);
          } catch (error) {
            if (!outcomes.has(name)) outcomes.set(name, { ok: false, error });
            await abortUpload(name);
          }
        })).then(() => undefined).finally(release);
        inFlight.add(upload);
        void upload.finally(() => inFlight.delete(upload));
      }
      await Promise.all(inFlight);
      await reader.expectEnd();
      if (whole !== undefined) verifyWholeMd5(description, whole.digest('base64'), source.label);
      await Promise.all(live().map(async (name) => {
        try {
          const version = await uploads.get(name)!.commit(partCount, signal);
          outcomes.set(name, { ok: true, bytes: first.size, written: { sourceEtag: description.recordedSource.etag, targetEtag: version.etag } });
        } catch (error) {
          outcomes.set(name, { ok: false, error });
          await abortUpload(name);
        }
      }));
      return outcomes;
    } catch (error) {
      await Promise.allSettled(inFlight);
      failAll(error);
      return outcomes;
    } finally {
      // An upload still being started when reading failed is aborted too, once it exists.
      await started;
      await Promise.all([...uploads.keys()].filter((name) => outcomes.get(name)?.ok !== true).map(abortUpload));
    }
  }
}

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

function verifyWholeMd5(description: WriteDescription, actual: string, store: string): void {
  if (description.contentMd5Base64 !== undefined && description.contentMd5Base64 !== actual) {
    throw new StoreError({
      store,
      operation: 'read',
      key: description.key,
      scope: 'object',
      detail: `the bytes read have MD5 ${actual}, the source ETag says ${description.contentMd5Base64}; nothing was written`,
    });
  }
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
  #attemptsLeft: number;
  #iterator: AsyncIterator<Uint8Array>;
  #pending: Uint8Array | undefined;
  #offset = 0;

  constructor(source: SourceStore, key: string, first: ObjectRead, attempts: number, signal: AbortSignal | undefined) {
    this.#source = source;
    this.#key = key;
    this.#etag = first.etag;
    this.#size = first.size;
    this.#signal = signal;
    this.#attemptsLeft = attempts;
    this.#iterator = first.body[Symbol.asyncIterator]();
  }

  /** Fills `out` with the next bytes of the object. */
  async read(out: Uint8Array): Promise<Uint8Array> {
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
        return next.done ? undefined : next.value;
      } catch (error) {
        if (this.#signal?.aborted || this.#attemptsLeft <= 0 || this.#offset >= this.#size) throw error;
        this.#attemptsLeft -= 1;
        const resumed = await this.#source.read(this.#key, { start: this.#offset, ifMatch: this.#etag, signal: this.#signal });
        this.#iterator = resumed.body[Symbol.asyncIterator]();
      }
    }
  }

  #error(detail: string): StoreError {
    return new StoreError({ store: this.#source.label, operation: 'read', key: this.#key, scope: 'object', detail });
  }
}

