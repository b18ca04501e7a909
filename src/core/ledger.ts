/**
 * What a target remembers between runs: the objects earlier runs deferred (how many runs in a row, why)
 * and where their unfinished uploads stand, so the next run continues them instead of starting over,
 * and an object that never arrives fails a run instead of being deferred forever.
 */
import type { DeferReason } from './types.ts';

export interface LedgerEntry {
  /** The source version that was deferred; an entry for another version is stale. */
  readonly etag: string;
  /** Runs in a row that deferred this object, the one that wrote the entry included. */
  readonly deferredRuns: number;
  readonly reason: DeferReason;
  /** The unfinished upload a later run may continue (see `PartUploadOptions.resume`). */
  readonly upload?: { readonly partSize: number; readonly token: string | undefined };
}

/** Where a target's entries are kept (one document per target, written only by the run holding its lock). */
export interface ProgressLedger {
  /** Where it is kept, for messages. */
  readonly label: string;
  load(signal?: AbortSignal): Promise<Map<string, LedgerEntry>>;
  save(entries: ReadonlyMap<string, LedgerEntry>, signal?: AbortSignal): Promise<void>;
}

/** Reads a saved document; anything malformed is dropped (the ledger only saves work, it never decides a deletion). */
export function parseLedger(text: string): Map<string, LedgerEntry> {
  const entries = new Map<string, LedgerEntry>();
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch {
    return entries;
  }
  const objects = typeof document === 'object' && document !== null && 'objects' in document ? document.objects : undefined;
  if (typeof objects !== 'object' || objects === null) return entries;
  for (const [key, value] of Object.entries(objects)) {
    const entry = value as Partial<LedgerEntry> | null;
    if (entry === null || typeof entry.etag !== 'string' || typeof entry.deferredRuns !== 'number' || typeof entry.reason !== 'string') continue;
    const upload = entry.upload !== undefined && typeof entry.upload.partSize === 'number' ? { partSize: entry.upload.partSize, token: typeof entry.upload.token === 'string' ? entry.upload.token : undefined } : undefined;
    entries.set(key, { etag: entry.etag, deferredRuns: entry.deferredRuns, reason: entry.reason, ...(upload === undefined ? {} : { upload }) });
  }
  return entries;
}

export function serializeLedger(entries: ReadonlyMap<string, LedgerEntry>): string {
  return JSON.stringify({ version: 1, objects: Object.fromEntries(entries) });
}
