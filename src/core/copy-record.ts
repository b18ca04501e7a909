/**
 * The copy record: what our runs wrote to a target whose listings carry no metadata (OCI, through S3
 * ListObjectsV2), so that a run decides each of its objects from the listing alone, exactly.
 *
 * Per key it keeps the target ETag our write produced, and the ETag and LastModified (whole seconds)
 * of the source version we copied. Each entry is a fact that stays true: "the target version with ETag
 * T holds the source version with ETag S, last modified at L". A listed object whose ETag is T is
 * therefore current exactly when the source still lists S; no timestamp of the target is involved, so
 * neither an overwrite in the same second, nor one that lands while we transfer, nor a multipart upload
 * that S3 dates at its initiation can slip through. A source still listing S but modified in a later
 * second than L had its headers or metadata changed (a CopyObject onto itself): replaced. An object the
 * record does not cover (another ETag: written by someone else, by an event worker, by the old tool)
 * is looked at with one HEAD, and what the HEAD shows is recorded, so it is not asked again.
 * A record that cannot be read or fails its checks is not trusted at all: every object is then looked
 * at, and the run writes a sound record at its end. See docs/exactness.md, "How OCI stays exact".
 */
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import type { TargetStore } from '../stores/store.ts';
import { forEachBounded } from './concurrency.ts';
import { StoreError, describeError } from './errors.ts';
import { replaceReason } from './plan.ts';
import type { WrittenCopy } from './transfer.ts';
import type { ObjectInfo, Plan, RecordedSource, TransferAction } from './types.ts';

/** Where a copy record is kept between runs (a blob beside the target's run lock). */
export interface CopyRecordStore {
  /** Where it is kept, for messages (never a secret). */
  readonly label: string;
  /** The stored bytes and their version (for a conditional save), or `undefined` when no record exists yet. */
  load(signal?: AbortSignal): Promise<{ readonly bytes: Uint8Array; readonly version: string } | undefined>;
  /** Replaces the record only if it is still at `version` (`undefined`: only if none exists); throws otherwise. */
  save(bytes: Uint8Array, version: string | undefined, signal?: AbortSignal): Promise<void>;
}

const FORMAT = 'artifacts-sync copy record';
/** Version 2 added the source LastModified; a version 1 record is not trusted (it cannot show a metadata-only change). */
const FORMAT_VERSION = 2;
/** HEAD requests in flight while objects the record does not cover are looked at. */
const LOOK_CONCURRENCY = 16;

/** The record could not be trusted: what was wrong with it. */
export class CopyRecordError extends Error {
  override readonly name = 'CopyRecordError';
}

/**
 * The entries, in memory: key → both ETags packed in one string (`packEntry`; an empty source: that
 * version recorded none), marked once this run has listed or written the key. The map's keys are its
 * own strings: a key string from a listing is a slice that keeps its whole listing page alive.
 */
export class CopyRecord {
  readonly #entries: Map<string, string>;
  #changed = false;

  constructor(entries: Map<string, string> = new Map()) {
    this.#entries = entries;
  }

  /** Reads a stored record; throws `CopyRecordError` naming what is wrong, never returns a partial one. */
  static parse(bytes: Uint8Array, target: string): CopyRecord {
    const text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
    const lineEnd = text.indexOf('\n');
    if (lineEnd < 0) throw new CopyRecordError('it has no header line');
    const header: unknown = parseJson(text.slice(0, lineEnd), 'its header');
    const body = text.slice(lineEnd + 1);
    if (isOldHeader(header)) throw new CopyRecordError(`it is of version ${header.version}, which keeps no source LastModified (a metadata-only change at the source would go unseen)`);
    if (!isHeader(header)) throw new CopyRecordError(`its header is not a "${FORMAT}" version ${FORMAT_VERSION} header`);
    if (header.target !== target) throw new CopyRecordError(`it is the record of ${header.target}, not of ${target}`);
    if (sha256(body) !== header.sha256) throw new CopyRecordError('its entries do not match the checksum in its header (changed or cut short)');
    const entries = new Map<string, string>();
    // One entry per line, read in place: no array of every entry is built on the way (and JSON.parse makes whole strings, not slices).
    for (let start = 0; start < body.length; ) {
      const end = body.indexOf('\n', start);
      const row: unknown = parseJson(body.slice(start, end < 0 ? body.length : end), 'an entry');
      start = end < 0 ? body.length : end + 1;
      if (!isRow(row) || entries.has(row[0])) throw new CopyRecordError(`an entry is malformed or repeated: ${JSON.stringify(row).slice(0, 200)}`);
      const [key, targetEtag, sourceEtag, sourceModifiedSeconds] = row;
      entries.set(key, packEntry(targetEtag, sourceEtag, sourceModifiedSeconds ?? undefined, false));
    }
    if (entries.size !== header.count) throw new CopyRecordError(`it holds ${entries.size} entries, its header announces ${header.count}`);
    return new CopyRecord(entries);
  }

  /**
   * The record as stored: a header line (format, target, count, checksum), then one JSON line per entry:
   * `[key, targetEtag, sourceEtag, sourceModifiedSeconds]` (the last `null` when not known).
   */
  serialize(target: string): Uint8Array {
    const lines: string[] = [];
    for (const [key, entry] of this.#entries) {
      const [targetEtag, sourceEtag, sourceModifiedSeconds] = unpackEntry(entry);
      lines.push(JSON.stringify([key, targetEtag, sourceEtag, sourceModifiedSeconds ?? null]));
    }
    const body = lines.join('\n');
    const header = JSON.stringify({ format: FORMAT, version: FORMAT_VERSION, target, count: lines.length, sha256: sha256(body) });
    return new TextEncoder().encode(`${header}\n${body}`);
  }

  get size(): number {
    return this.#entries.size;
  }

  /** True when a save would store something else than was loaded. */
  get changed(): boolean {
    return this.#changed;
  }

  /**
   * A listed target object with what the record knows of it: the source it holds when the record
   * covers its version, `provenance: 'unknown'` when it does not (a HEAD decides then).
   */
  annotate(object: ObjectInfo): ObjectInfo {
    const entry = this.#entries.get(object.key);
    if (entry === undefined) return { ...object, provenance: 'unknown' };
    // Setting an existing key keeps the map's own key string.
    if (!isMarked(entry)) this.#entries.set(object.key, withMark(entry));
    const [targetEtag, sourceEtag, sourceModifiedSeconds] = unpackEntry(entry);
    if (targetEtag !== object.etag) return { ...object, provenance: 'unknown' };
    // A version known to record no source (an old tool's copy): the size and timestamp rule decides.
    if (sourceEtag === '') return object;
    // No LastModified only where the version's own metadata recorded none (seen by a HEAD): a HEAD would decide the same.
    return { ...object, recordedSource: { etag: sourceEtag, ...(sourceModifiedSeconds === undefined ? {} : { lastModifiedMs: sourceModifiedSeconds * MS_PER_SECOND }) } };
  }

  /** Whether any version of `key` was written by us or looked at before. */
  knows(key: string): boolean {
    return this.#entries.has(key);
  }

  /** Records a version of `key`: written by us, or seen by a HEAD (`source` undefined: it records no source). */
  record(key: string, targetEtag: string, source: RecordedSource | undefined): void {
    // A service that gave no ETag: nothing to recognise the version by; the next run looks again.
    if (targetEtag === '') return this.forget(key);
    const entry = packEntry(targetEtag, source?.etag ?? '', wholeSecondsOf(source?.lastModifiedMs), true);
    const previous = this.#entries.get(key);
    if (previous === undefined) this.#entries.set(ownCopy(key), entry);
    else this.#entries.set(key, entry);
    if (previous === undefined || withMark(previous) !== entry) this.#changed = true;
  }

  forget(key: string): void {
    if (this.#entries.delete(key)) this.#changed = true;
  }

  /** Drops the entries of keys this run neither listed nor wrote (call once the target's listing is complete). */
  pruneUnlisted(): void {
    for (const [key, entry] of this.#entries) {
      if (isMarked(entry)) continue;
      this.#entries.delete(key);
      this.#changed = true;
    }
  }
}

/**
 * One target's copy record for one run: loaded beside the listings, applied to the target's listing,
 * consulted and extended while the run looks and writes, saved at the end. `store` undefined: nowhere
 * to keep a record (no Azure storage configured); every object the listing cannot decide is looked at.
 */
export class RecordedTarget {
  readonly #target: string;
  readonly #store: CopyRecordStore | undefined;
  readonly #loading: Promise<{ record: CopyRecord; version: string | undefined; problem: string | undefined }>;
  #record: CopyRecord | undefined;
  #version: string | undefined;
  #listed = false;
  /** Said in the target's report: how the record was used, and what it cost. */
  readonly notes: string[] = [];

  constructor(target: string, store: CopyRecordStore | undefined, signal: AbortSignal) {
    this.#target = target;
    this.#store = store;
    this.#loading = load(target, store, signal);
    this.#loading.catch(() => undefined);
  }

  /** The target's listing, each object annotated by the record; the first page is asked for while the record loads. */
  async *annotate(pages: AsyncIterable<readonly ObjectInfo[]>): AsyncIterable<readonly ObjectInfo[]> {
    const iterator = pages[Symbol.asyncIterator]();
    const first = iterator.next();
    first.catch(() => undefined);
    const { record, version, problem } = await this.#loading;
    this.#record = record;
    this.#version = version;
    if (problem !== undefined) this.notes.push(problem);
    try {
      for (let next = await first; next.done !== true; next = await iterator.next()) yield next.value.map((object) => record.annotate(object));
    } finally {
      await iterator.return?.();
    }
    record.pruneUnlisted();
    this.#listed = true;
  }

  /**
   * The plan with every `unverified` replacement decided by a HEAD at the target: taken as current
   * (and recorded), or replaced with the reason the HEAD gives. A HEAD that fails keeps the replacement:
   * copying again is never wrong. No HEAD starts at or after `stopAt` (epoch ms, the run's deadline for
   * new work): what is left stays a replacement, deferred by the deadline, and the next run goes on.
   */
  async resolve(plan: Plan, store: TargetStore, signal: AbortSignal, deadline: { readonly stopAt?: number; readonly now: () => number }): Promise<Plan> {
    const unverified = plan.transfers.filter((action) => action.kind === 'replace' && action.reason.why === 'unverified');
    if (unverified.length === 0) return plan;
    const record = this.#record ?? new CopyRecord();
    const decided = new Map<TransferAction, TransferAction | undefined>();
    let failedLooks = 0;
    let notLooked = 0;
    await forEachBounded(unverified, LOOK_CONCURRENCY, async (action) => {
      if (signal.aborted || (deadline.stopAt !== undefined && deadline.now() >= deadline.stopAt)) {
        notLooked += 1;
        return;
      }
      try {
        const seen = await store.head(action.key, signal);
        const recordedNoSource = seen.recordedSource === undefined;
        const target: ObjectInfo = {
          key: action.key,
          size: seen.size,
          lastModifiedMs: seen.lastModifiedMs,
          etag: seen.etag,
          ...(seen.recordedSource === undefined ? {} : { recordedSource: seen.recordedSource }),
          ...(recordedNoSource && record.knows(action.key) ? { provenance: 'rewritten' as const } : {}),
        };
        // A version someone rewrote after us stays unrecorded: recorded as "no source", the timestamp rule would take it as current.
        if (target.provenance === undefined) record.record(action.key, seen.etag, seen.recordedSource);
        const reason = replaceReason(action.source, target);
        decided.set(action, reason === undefined ? undefined : { kind: 'replace', key: action.key, source: action.source, target, reason });
      } catch (error) {
        if (error instanceof StoreError && error.status === 404) decided.set(action, { kind: 'copy', key: action.key, source: action.source });
        else failedLooks += 1;
      }
    });
    const transfers: TransferAction[] = [];
    let current = 0;
    for (const action of plan.transfers) {
      if (!decided.has(action)) transfers.push(action);
      else {
        const outcome = decided.get(action);
        if (outcome === undefined) current += 1;
        else transfers.push(outcome);
      }
    }
    const why = this.#store === undefined
      ? 'OCI listings carry no metadata and no copy record is kept (it needs the Azure storage of the run lock)'
      : 'the copy record did not cover their versions (written elsewhere, by the old tool, or not recorded yet); they are recorded now';
    this.notes.push(`looked at ${unverified.length - notLooked} object(s) with one HEAD each: ${why}; ${current} found current`);
    if (notLooked > 0) this.notes.push(`${notLooked} object(s) not looked at before the deadline: left to the next run`);
    if (failedLooks > 0) this.notes.push(`${failedLooks} HEAD(s) failed: those objects are copied again`);
    return { ...plan, transfers, unchanged: plan.unchanged + current };
  }

  /** A write of ours succeeded. */
  wrote(key: string, written: WrittenCopy): void {
    this.#record?.record(key, written.targetEtag, written.source);
  }

  /** Keys deleted (or perhaps deleted) at the target. */
  deleted(keys: readonly string[]): void {
    for (const key of keys) this.#record?.forget(key);
  }

  /**
   * Stores the record when it changed and the target was listed in full. A save that fails costs the
   * next run HEADs, never exactness: said in a note, not a failure. `signal` must abort when the run
   * lock is lost (only its holder may write), but not at the run's deadline: what this run learned is
   * kept even when it ran out of time, or a bucket larger than one run's HEADs would never converge.
   */
  async save(signal: AbortSignal | undefined): Promise<void> {
    const record = this.#record;
    if (this.#store === undefined || record === undefined || !this.#listed || !record.changed) return;
    try {
      await this.#store.save(record.serialize(this.#target), this.#version, signal);
    } catch (error) {
      this.notes.push(`the copy record could not be saved (${describeError(error)}); the next run looks at this run's copies with a HEAD each`);
    }
  }
}

/** ETags of 32 lower-case hex digits: S3's single-part ETags, and OCI's. */
const HEX_ETAG = /^[0-9a-f]{32}$/;
/** The first byte of a packed entry: its form, upper case once this run listed or wrote the key. */
const PACKED_HEX = 0x68; // 'h'
const PACKED_RAW = 0x72; // 'r'
const MARK = 0x20; // 'h' ^ 'H'
/** The source LastModified in a packed entry: whole seconds plus one (0: not known), in 5 bytes after the form. */
const MODIFIED_BYTES = 5;
const MODIFIED_LIMIT = 2 ** (8 * MODIFIED_BYTES) - 1;
const MS_PER_SECOND = 1000;

/** Whole seconds of a LastModified the record can hold, or `undefined`. */
function wholeSecondsOf(ms: number | undefined): number | undefined {
  if (ms === undefined || !Number.isFinite(ms)) return undefined;
  const seconds = Math.floor(ms / MS_PER_SECOND);
  return seconds >= 0 && seconds < MODIFIED_LIMIT ? seconds : undefined;
}

/**
 * An entry in one flat one-byte string, for memory: the form byte, the source LastModified
 * (`MODIFIED_BYTES`), then `h`'s 16 or 32 bytes of hex ETags (the usual case: about a third of the
 * text), or `r`'s target ETag, a line break (which no ETag holds) and source ETag. Built in a buffer,
 * so the string is flat, not a chain of pieces.
 */
function packEntry(targetEtag: string, sourceEtag: string, sourceModifiedSeconds: number | undefined, marked: boolean): string {
  const start = 1 + MODIFIED_BYTES;
  let bytes: Buffer;
  if (HEX_ETAG.test(targetEtag) && (sourceEtag === '' || HEX_ETAG.test(sourceEtag))) {
    const hex = targetEtag + sourceEtag;
    bytes = Buffer.alloc(start + hex.length / 2);
    bytes[0] = PACKED_HEX;
    bytes.write(hex, start, 'hex');
  } else {
    const text = Buffer.from(`${targetEtag}\n${sourceEtag}`, 'utf8');
    bytes = Buffer.alloc(start + text.byteLength);
    bytes[0] = PACKED_RAW;
    text.copy(bytes, start);
  }
  bytes.writeUIntBE(sourceModifiedSeconds === undefined ? 0 : sourceModifiedSeconds + 1, 1, MODIFIED_BYTES);
  if (marked) bytes[0] = bytes[0]! ^ MARK;
  return bytes.toString('latin1');
}

function unpackEntry(entry: string): [targetEtag: string, sourceEtag: string, sourceModifiedSeconds: number | undefined] {
  const bytes = Buffer.from(entry, 'latin1');
  const form = isMarked(entry) ? bytes[0]! ^ MARK : bytes[0];
  const modified = bytes.readUIntBE(1, MODIFIED_BYTES);
  const sourceModifiedSeconds = modified === 0 ? undefined : modified - 1;
  const start = 1 + MODIFIED_BYTES;
  if (form === PACKED_HEX) {
    const hex = bytes.toString('hex', start);
    return [hex.slice(0, 32), hex.slice(32), sourceModifiedSeconds];
  }
  if (form !== PACKED_RAW) throw new Error('a copy record entry in memory is neither packed form');
  const text = bytes.toString('utf8', start);
  const split = text.indexOf('\n');
  return [text.slice(0, split), text.slice(split + 1), sourceModifiedSeconds];
}

function isMarked(entry: string): boolean {
  return (entry.charCodeAt(0) & MARK) === 0;
}

/** The entry marked as listed or written by this run (a new flat string). */
function withMark(entry: string): string {
  if (isMarked(entry)) return entry;
  const bytes = Buffer.from(entry, 'latin1');
  bytes[0] = bytes[0]! ^ MARK;
  return bytes.toString('latin1');
}

/** A key string of its own (a listing's key is a slice of its whole page). */
function ownCopy(key: string): string {
  return Buffer.from(key, 'utf8').toString('utf8');
}

async function load(target: string, store: CopyRecordStore | undefined, signal: AbortSignal): Promise<{ record: CopyRecord; version: string | undefined; problem: string | undefined }> {
  if (store === undefined) return { record: new CopyRecord(), version: undefined, problem: undefined };
  let stored: Awaited<ReturnType<CopyRecordStore['load']>>;
  try {
    stored = await store.load(signal);
  } catch (error) {
    return { record: new CopyRecord(), version: undefined, problem: `the copy record ${store.label} could not be read (${describeError(error)}): no object was taken as current on its word` };
  }
  if (stored === undefined) return { record: new CopyRecord(), version: undefined, problem: undefined };
  try {
    return { record: CopyRecord.parse(stored.bytes, target), version: stored.version, problem: undefined };
  } catch (error) {
    const reason = error instanceof CopyRecordError ? error.message : describeError(error);
    // Replaced at the end of the run (if still the same version): a bad record costs one run of HEADs.
    return { record: new CopyRecord(), version: stored.version, problem: `the copy record ${store.label} is not trusted (${reason}): no object was taken as current on its word; it is rewritten at the end of this run` };
  }
}

interface RecordHeader {
  readonly format: string;
  readonly version: number;
  readonly target: string;
  readonly count: number;
  readonly sha256: string;
}

function isHeader(value: unknown): value is RecordHeader {
  if (typeof value !== 'object' || value === null) return false;
  const header = value as Partial<Record<keyof RecordHeader, unknown>>;
  return header.format === FORMAT && header.version === FORMAT_VERSION && typeof header.target === 'string' && Number.isSafeInteger(header.count) && typeof header.sha256 === 'string';
}

/** A header of this format but of an older version. */
function isOldHeader(value: unknown): value is { readonly version: number } {
  if (typeof value !== 'object' || value === null) return false;
  const header = value as Partial<Record<keyof RecordHeader, unknown>>;
  return header.format === FORMAT && typeof header.version === 'number' && header.version < FORMAT_VERSION;
}

/** One stored entry: `[key, targetEtag (not empty), sourceEtag, sourceModifiedSeconds or null]`. */
function isRow(value: unknown): value is [string, string, string, number | null] {
  if (!Array.isArray(value) || value.length !== 4) return false;
  const [key, targetEtag, sourceEtag, seconds] = value as unknown[];
  return typeof key === 'string' && typeof targetEtag === 'string' && targetEtag !== '' && typeof sourceEtag === 'string'
    && (seconds === null || (Number.isSafeInteger(seconds) && wholeSecondsOf(Number(seconds) * MS_PER_SECOND) === seconds));
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new CopyRecordError(`${what} is not valid JSON (${describeError(error)})`);
  }
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
