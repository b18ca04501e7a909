/**
 * The data that flows through a mirror run: listings in, a plan, outcomes, a report out.
 * Nothing here does I/O; every store and adapter speaks these types.
 */

/** One object as a listing shows it. */
export interface ObjectInfo {
  /** The key, byte-exact as the store holds it. */
  readonly key: string;
  readonly size: number;
  /** Last-modified time in milliseconds since the epoch, as the store reports it (whole seconds in most listings). */
  readonly lastModifiedMs: number;
  /** The store's ETag without quotes. For S3 single-part uploads this is the hex MD5 of the bytes. */
  readonly etag: string;
  /**
   * What a mirror copy recorded about its source when it was written, when the listing returns
   * metadata at no extra request (Azure does; S3 listings do not).
   */
  readonly recordedSource?: RecordedSource;
  /** The source cannot serve the bytes until the object is restored (S3 GLACIER, DEEP_ARCHIVE): it is reported, never transferred. */
  readonly archived?: true;
  /**
   * Set on a target object whose listing cannot show what it recorded (S3-compatible listings carry no
   * metadata) where the copy record does not either (see `core/copy-record.ts`):
   * - `unknown`: nothing covers this version; it is looked at (HEAD) before it is taken as current.
   * - `rewritten`: this version records no source, yet a run of ours wrote (or saw) another version
   *   of the key: someone else wrote it since, so it is no copy of ours.
   */
  readonly provenance?: 'unknown' | 'rewritten';
}

/** Source facts stored with every copy, in the target object's metadata. */
export interface RecordedSource {
  readonly etag: string;
  readonly lastModifiedMs?: number;
}

/** The providers a run can mirror to. */
export const TARGET_NAMES = ['azure', 'oci'] as const;
export type TargetName = (typeof TARGET_NAMES)[number];
export const PROVIDER_CHOICES = ['all', ...TARGET_NAMES] as const;
export type ProviderChoice = (typeof PROVIDER_CHOICES)[number];

export type ReplaceReason =
  | { readonly why: 'size'; readonly sourceSize: number; readonly targetSize: number }
  | { readonly why: 'source-newer'; readonly sourceModifiedMs: number; readonly targetModifiedMs: number }
  | { readonly why: 'source-etag'; readonly sourceEtag: string; readonly recordedEtag: string }
  /** Same ETag, but the source was modified in a later second than the copy recorded: its headers or metadata changed (S3 CopyObject onto itself). */
  | { readonly why: 'source-metadata'; readonly sourceModifiedMs: number; readonly recordedModifiedMs: number }
  /** Nothing says which source version the target holds: replaced unless a look (HEAD) shows it current. */
  | { readonly why: 'unverified' }
  /** Someone else wrote the target since our copy, without recording a source. */
  | { readonly why: 'target-rewritten' };

/** One step of a plan, with the reason a reader (or a dry run) needs. */
export type Action =
  | { readonly kind: 'copy'; readonly key: string; readonly source: ObjectInfo }
  | { readonly kind: 'replace'; readonly key: string; readonly source: ObjectInfo; readonly target: ObjectInfo; readonly reason: ReplaceReason }
  | { readonly kind: 'delete'; readonly key: string; readonly target: ObjectInfo };

export type TransferAction = Extract<Action, { kind: 'copy' | 'replace' }>;
export type DeleteAction = Extract<Action, { kind: 'delete' }>;

/** Whether the deletions of a plan may run. Decided before anything is written, shown by a dry run too. */
export type DeleteVerdict =
  | { readonly allowed: true }
  | { readonly allowed: false; readonly reason: string; readonly setting?: string };

/** A source key the target cannot hold byte-exact: never written, reported as a failure every run. */
export interface KeyRefusal {
  readonly key: string;
  readonly reason: string;
}

export interface Plan {
  readonly transfers: readonly TransferAction[];
  /** Source keys this target cannot hold verbatim (see `TargetStore.keyProblem`): not copied, not deleted, each a failure. */
  readonly refused: readonly KeyRefusal[];
  readonly deletions: readonly DeleteAction[];
  /** Keys archived at the source (not readable until restored) that this target lacks or holds stale: reported, not transferred, never deleted. */
  readonly archived: readonly string[];
  readonly unchanged: number;
  readonly sourceObjects: number;
  readonly targetObjects: number;
  readonly deleteVerdict: DeleteVerdict;
  /**
   * Set when the target listed its keys out of order: a key it listed twice would look like a key
   * missing from the source, so each deletion is confirmed at the source before it is made. Says why.
   */
  readonly confirmDeletions?: string;
}

export type Operation = 'list' | 'head' | 'copy' | 'replace' | 'delete' | 'lock' | 'cleanup';

/** One object (or whole store) that did not end as planned. */
export interface Failure {
  readonly target: TargetName | 'source';
  readonly operation: Operation;
  /** Absent when the failure concerns the whole store (a listing, a lock). */
  readonly key?: string;
  readonly message: string;
}

/**
 * Why a planned action was not attempted (or was cut off, nothing partial left visible):
 * - `deadline`: the run's deadline came;
 * - `delete-guard`: a delete guard held the deletions back;
 * - `lock-lost`: the run lock could not be renewed, so the run stopped;
 * - `target-down`: the target kept failing, so it was no longer used;
 * - `interrupted`: the operator stopped the run (SIGINT, SIGTERM);
 * - `cancelled`: the caller cancelled the run;
 * - `enqueued`: handed to the queue workers (a fanned-out run): they finish it, the run record says when.
 */
export const DEFER_REASONS = ['deadline', 'delete-guard', 'lock-lost', 'target-down', 'interrupted', 'cancelled', 'enqueued'] as const;
export type DeferReason = (typeof DEFER_REASONS)[number];

export type TransferMode = 'server-side' | 'streaming';

/** How a target that can pull from a URL gets its bytes: `auto` pulls and falls back to streaming when the service refuses. */
export type TransferModeSetting = 'auto' | TransferMode;
