/**
 * How a target is run: its state during a run (what was copied, failed, deferred and why), when it is
 * taken as down, its deletions (last, behind the delete guard), what it remembers for the next run,
 * and its report.
 */
import type { SourceStore, TargetStore } from '../stores/store.ts';
import { forEachBounded } from './concurrency.ts';
import type { CopyRecordStore, RecordedTarget } from './copy-record.ts';
import { DeadlineError, InterruptedError, LockLostError, StoreError, describeError } from './errors.ts';
import type { LedgerEntry } from './ledger.ts';
import { plannedAction, type TargetReport } from './report.ts';
import type { WrittenCopy } from './transfer.ts';
import type { DeferReason, DeleteAction, Failure, Plan, TargetName, TransferAction, TransferMode, TransferModeSetting } from './types.ts';

/** A target of one run. */
export interface MirrorTarget {
  readonly name: TargetName;
  readonly store: TargetStore;
  /** Notes the caller wants in this target's report (for example, that no lock was taken). */
  readonly notes?: readonly string[];
  /**
   * For a target whose listings carry no metadata (OCI): its objects are decided by the copy record kept
   * in `store` (core/copy-record.ts), or, with no store, by a HEAD each where size cannot decide.
   */
  readonly copyRecord?: { readonly store: CopyRecordStore | undefined };
}

/** What `TargetRun` reports as it goes: the run's structured log events it produces. */
export type TargetEvent =
  | { readonly event: 'transferred'; readonly target: TargetName; readonly key: string; readonly action: 'copy' | 'replace'; readonly bytes: number; readonly mode: TransferMode }
  | { readonly event: 'deferred'; readonly target: TargetName; readonly key: string; readonly reason: DeferReason; readonly bytes: number }
  | { readonly event: 'archived'; readonly target: TargetName; readonly key: string }
  | { readonly event: 'deleted'; readonly target: TargetName; readonly objects: number }
  | { readonly event: 'plan'; readonly target: TargetName; readonly copy: number; readonly replace: number; readonly delete: number; readonly unchanged: number; readonly archived: number; readonly deletionsAllowed: boolean }
  | { readonly event: 'failure'; readonly target: TargetName | 'source'; readonly operation: string; readonly key?: string; readonly message: string };

/** Transfers failing in a row, at least this many and for at least `downAfterMs`, take a target down. */
const FAILURES_IN_A_ROW_FOR_DOWN = 5;
/** HEAD requests in flight while deletions of a target listed out of key order are confirmed at the source. */
const CONFIRMATION_CONCURRENCY = 16;
/** Keys of archived objects listed in a report (the count is always exact). */
const ARCHIVED_KEYS_REPORTED = 1000;

/** Why a cancelled signal was cancelled, by name. */
export function deferReasonOf(signal: AbortSignal): DeferReason {
  const reason: unknown = signal.reason;
  if (reason instanceof DeadlineError) return 'deadline';
  if (reason instanceof LockLostError) return 'lock-lost';
  if (reason instanceof InterruptedError) return 'interrupted';
  return 'cancelled';
}

/** How a run starts writing to a target: pulled server-side where the service can, unless streaming is asked for. */
export function firstTransferMode(store: TargetStore, options: { readonly transferMode?: TransferModeSetting }): TransferMode {
  return store.serverSideCopy !== undefined && (options.transferMode ?? 'auto') !== 'streaming' ? 'server-side' : 'streaming';
}

/** The `plan` event: what a target's plan holds, before anything is done. */
export function emitPlan(run: TargetRun, emit: (event: TargetEvent) => void): void {
  const plan = run.plan;
  emit({
    event: 'plan',
    target: run.name,
    copy: plan.transfers.filter((action) => action.kind === 'copy').length,
    replace: plan.transfers.filter((action) => action.kind === 'replace').length,
    delete: plan.deletions.length,
    unchanged: plan.unchanged,
    archived: plan.archived.length,
    deletionsAllowed: plan.deleteVerdict.allowed,
  });
}

/** Per-target state while a run executes (a per-key reconcile, core/reconcile.ts, keeps one too). */
export class TargetRun {
  readonly name: TargetName;
  readonly store: TargetStore;
  readonly plan: Plan;
  mode: TransferMode;
  readonly notes: string[];
  readonly failures: Failure[] = [];
  /** What our runs wrote to this target (OCI), kept beside the lock; see core/copy-record.ts. */
  readonly record: RecordedTarget | undefined;
  copied = 0;
  replaced = 0;
  deleted = 0;
  failed = 0;
  readonly deferredBy = new Map<DeferReason, number>();
  /** Archived at the source: from the plan, and those found out when read (Intelligent-Tiering archive tiers). */
  readonly archived: string[];
  bytesStreamed = 0;
  bytesCopiedServerSide = 0;
  consecutiveFailures = 0;
  /** When the current run of failures began (epoch ms). */
  failingSinceMs = 0;
  down: string | undefined;
  finishedMs = 0;
  /**
   * Until one pull has succeeded, the first pull attempt is a probe and others wait for its outcome,
   * so a service that refuses to pull is asked once, not once per object in flight.
   */
  pullProbe: Promise<void> | undefined;
  pullConfirmed = false;
  /** What earlier runs left (deferred objects, unfinished uploads); empty without a ledger. Set once the lock is held. */
  earlier: ReadonlyMap<string, LedgerEntry> = new Map();
  /** Objects deferred in this run, for the ledger. */
  readonly deferredNow = new Map<string, LedgerEntry>();
  /** Resumed uploads and the bytes an earlier run had already written for them. */
  resumed = 0;

  constructor(target: MirrorTarget, plan: Plan, mode: TransferMode, record: RecordedTarget | undefined) {
    this.record = record;
    this.name = target.name;
    this.store = target.store;
    this.plan = plan;
    this.mode = mode;
    this.notes = [...(target.notes ?? [])];
    this.archived = [...plan.archived];
  }

  get deferred(): number {
    let total = 0;
    for (const count of this.deferredBy.values()) total += count;
    return total;
  }

  /** Transfers deferred, and objects found archived when read: both count as done for progress. */
  deferredTransfers = 0;
  archivedFound = 0;

  get transfersDone(): number {
    return this.copied + this.replaced + this.failed + this.deferredTransfers + this.archivedFound;
  }

  defer(reason: DeferReason, count: number): void {
    if (count > 0) this.deferredBy.set(reason, (this.deferredBy.get(reason) ?? 0) + count);
  }

  /** A transfer not attempted, or cut off (nothing partial visible); `upload` when its parts were kept for the next run. */
  deferTransfer(action: TransferAction, reason: DeferReason, emit: (event: TargetEvent) => void, kept?: { bytes: number; partSize: number; token: string | undefined }): void {
    this.defer(reason, 1);
    this.deferredTransfers += 1;
    if (kept !== undefined) this.bytesStreamed += kept.bytes;
    const before = this.earlier.get(action.key);
    const deferredRuns = before !== undefined && before.etag === action.source.etag ? before.deferredRuns + 1 : 1;
    // A cut-off upload without kept parts keeps the earlier one's, which the store still holds.
    const upload = kept !== undefined ? { partSize: kept.partSize, token: kept.token } : before?.etag === action.source.etag ? before.upload : undefined;
    this.deferredNow.set(action.key, { etag: action.source.etag, deferredRuns, reason, ...(upload === undefined ? {} : { upload }) });
    emit({ event: 'deferred', target: this.name, key: action.key, reason, bytes: kept?.bytes ?? 0 });
  }

  /** The source cannot serve the object (archived, found out when read): reported with the archived, not a failure. */
  archivedAtSource(action: TransferAction, emit: (event: TargetEvent) => void): void {
    this.archivedFound += 1;
    this.archived.push(action.key);
    emit({ event: 'archived', target: this.name, key: action.key });
  }

  succeed(action: TransferAction, bytes: number, mode: TransferMode, emit: (event: TargetEvent) => void, written: WrittenCopy): void {
    this.consecutiveFailures = 0;
    this.record?.wrote(action.key, written);
    if (action.kind === 'copy') this.copied += 1;
    else this.replaced += 1;
    if (mode === 'server-side') this.bytesCopiedServerSide += bytes;
    else this.bytesStreamed += bytes;
    emit({ event: 'transferred', target: this.name, key: action.key, action: action.kind, bytes, mode });
  }

  /**
   * A transfer that failed. Cancelled ones are deferred (by the signal's reason). A failure of the source
   * (an object it cannot serve) fails that object alone; only target-side failures count toward taking
   * the target down, and only when they go on: `FAILURES_IN_A_ROW_FOR_DOWN` in a row over `downAfterMs`,
   * or at once when the store as a whole refuses (credentials, a missing container).
   */
  fail(
    action: TransferAction,
    error: unknown,
    context: { readonly signal: AbortSignal; readonly sourceLabel: string; readonly downAfterMs: number; readonly now: () => number; readonly emit: (event: TargetEvent) => void },
    /** When the failed transfer began: a target has been failing since its first failed transfer began, not since it failed. */
    startedMs: number,
  ): void {
    const { signal, emit } = context;
    if (signal.aborted) {
      this.deferTransfer(action, deferReasonOf(signal), emit);
      return;
    }
    const atSource = error instanceof StoreError && error.store === context.sourceLabel;
    if (atSource && error.code === 'InvalidObjectState') {
      this.archivedAtSource(action, emit);
      return;
    }
    this.failed += 1;
    const failure: Failure = { target: this.name, operation: action.kind, key: action.key, message: describeError(error) };
    this.failures.push(failure);
    emit({ event: 'failure', ...failure });
    // Neither an object the source cannot serve nor one that can never be written as it is says anything about the target's health.
    if (atSource || (error instanceof StoreError && error.scope === 'unmirrorable')) return;
    if (this.consecutiveFailures === 0 || startedMs < this.failingSinceMs) this.failingSinceMs = startedMs;
    this.consecutiveFailures += 1;
    const storeWide = error instanceof StoreError && error.scope === 'store' && error.store === this.store.label;
    const sustained = this.consecutiveFailures >= FAILURES_IN_A_ROW_FOR_DOWN && context.now() - this.failingSinceMs >= context.downAfterMs;
    if (this.down === undefined && (storeWide || sustained)) {
      this.down = storeWide
        ? describeError(error)
        : `${this.consecutiveFailures} transfers in a row failed over ${Math.round((context.now() - this.failingSinceMs) / 1000)} s; last: ${describeError(error)}`;
      this.notes.push(`stopped using ${this.store.label}: ${this.down}; nothing was deleted`);
    }
  }

  /** Records a failure of this target that is not one object's transfer (a held deletion, a lost lock, an object deferred too often). */
  recordFailure(failure: Omit<Failure, 'target'>, emit: (event: TargetEvent) => void): void {
    const entry: Failure = { target: this.name, ...failure };
    this.failures.push(entry);
    emit({ event: 'failure', ...entry });
  }

  /** Deferred again and again: after `maxDeferredRuns` runs in a row, each such object fails the run so that someone is told. */
  failLongDeferred(maxDeferredRuns: number, emit: (event: TargetEvent) => void): void {
    for (const [key, entry] of this.deferredNow) {
      if (entry.deferredRuns < maxDeferredRuns) continue;
      const action = this.plan.transfers.find((candidate) => candidate.key === key)?.kind ?? 'copy';
      this.recordFailure({
        operation: action,
        key,
        message: `deferred in ${entry.deferredRuns} runs in a row (this time: ${entry.reason}); ${entry.reason === 'deadline' ? 'its upload continues where it stopped, but the run deadline (SYNC_DEADLINE_SECONDS, SYNC_TIMER_DEADLINE_SECONDS) may be too short for it' : 'see the earlier failures'}; SYNC_MAX_DEFERRED_RUNS is ${maxDeferredRuns}`,
      }, emit);
    }
  }
}

/**
 * Deletions come last, and only when the target is healthy, the run was not cut short, and the delete
 * guard allows them. Deferred transfers do not hold them back: a key missing from the source is
 * deleted whether or not another object is still on its way.
 */
export async function deleteExtras(run: TargetRun, source: SourceStore, signal: AbortSignal, emit: (event: TargetEvent) => void): Promise<void> {
  let deletions = run.plan.deletions;
  if (deletions.length === 0) return;
  const verdict = run.plan.deleteVerdict;
  if (!verdict.allowed) {
    run.defer('delete-guard', deletions.length);
    run.recordFailure({ operation: 'delete', message: `deleted nothing: ${verdict.reason}${verdict.setting ? `; raise ${verdict.setting} if this is intended` : ''}` }, emit);
    return;
  }
  if (run.down !== undefined) {
    run.defer('target-down', deletions.length);
    return;
  }
  if (signal.aborted) {
    run.defer(deferReasonOf(signal), deletions.length);
    return;
  }
  // Always, not only for a target listed out of order: an event worker may have copied the key since the listing.
  deletions = await confirmedAtSource(run, deletions, source, signal, emit);
  if (deletions.length === 0) return;
  // Forgotten whatever the outcome: a key the record does not know is looked at, never taken as current.
  run.record?.deleted(deletions.map((action) => action.key));
  await deleteKeys(run, deletions.map((action) => action.key), signal, emit);
}

/**
 * Deletes `keys` at the run's target in batches, counting and reporting each key that failed (or the
 * batch error); resolves with the keys now gone. Full runs and per-key reconciles both delete with it.
 */
export async function deleteKeys(run: TargetRun, keys: readonly string[], signal: AbortSignal, emit: (event: TargetEvent) => void): Promise<string[]> {
  let gone: string[] = [];
  try {
    const failures = await run.store.deleteMany(keys, signal);
    const failedKeys = new Set(failures.map((failure) => failure.key));
    gone = keys.filter((key) => !failedKeys.has(key));
    run.deleted += keys.length - failures.length;
    if (signal.aborted && failures.length > 0) {
      // Cut off, not refused: the next run deletes them.
      run.defer(deferReasonOf(signal), failures.length);
      failures.length = 0;
    }
    for (const failure of failures) {
      run.failed += 1;
      run.recordFailure({ operation: 'delete', key: failure.key, message: failure.message }, emit);
    }
  } catch (error) {
    if (signal.aborted) {
      run.defer(deferReasonOf(signal), keys.length);
      return gone;
    }
    run.failed += keys.length;
    run.recordFailure({ operation: 'delete', message: describeError(error) }, emit);
  }
  emit({ event: 'deleted', target: run.name, objects: run.deleted });
  return gone;
}

/** Keeps only the deletions whose key the source does not have (a HEAD answered 404); says how many were kept and why. */
async function confirmedAtSource(run: TargetRun, deletions: readonly DeleteAction[], source: SourceStore, signal: AbortSignal, emit: (event: TargetEvent) => void): Promise<DeleteAction[]> {
  const confirmed: DeleteAction[] = [];
  let kept = 0;
  await forEachBounded(deletions, CONFIRMATION_CONCURRENCY, async (action) => {
    try {
      await source.head(action.key, signal);
      kept += 1;
    } catch (error) {
      if (error instanceof StoreError && error.status === 404) {
        confirmed.push(action);
        return;
      }
      // Not confirmed: kept this run, and the run is not complete, so the next one asks again.
      run.failed += 1;
      run.recordFailure({ operation: 'delete', key: action.key, message: `not deleted: the source could not confirm it no longer has the key: ${describeError(error)}` }, emit);
    }
  });
  if (run.plan.confirmDeletions !== undefined || kept > 0) {
    const why = run.plan.confirmDeletions ?? 'each deletion is confirmed at the source right before it (the key may have come back since the listing)';
    run.notes.push(`${why}: ${confirmed.length} deletion(s) confirmed at the source, ${kept} kept because the source has them`);
  }
  return confirmed;
}

export function targetReport(run: TargetRun, dryRun: boolean, durationMs: number, failOnArchived: boolean): TargetReport {
  const plan = run.plan;
  const planned = {
    copy: plan.transfers.filter((action) => action.kind === 'copy').length,
    replace: plan.transfers.filter((action) => action.kind === 'replace').length,
    delete: plan.deletions.length,
    unchanged: plan.unchanged,
  };
  const archivedPending = failOnArchived && run.archived.length > 0;
  const nothingPending = run.failures.length === 0 && run.deferred === 0 && run.down === undefined && !archivedPending;
  return {
    target: run.name,
    store: run.store.label,
    mode: run.mode,
    planned,
    copied: run.copied,
    replaced: run.replaced,
    deleted: run.deleted,
    unchanged: plan.unchanged,
    failed: run.failed,
    deferred: run.deferred,
    deferredBy: Object.fromEntries(run.deferredBy),
    archived: { count: run.archived.length, keys: run.archived.slice(0, ARCHIVED_KEYS_REPORTED) },
    bytesStreamed: run.bytesStreamed,
    bytesCopiedServerSide: run.bytesCopiedServerSide,
    durationMs,
    deleteVerdict: plan.deleteVerdict,
    complete: dryRun ? plan.transfers.length === 0 && plan.deletions.length === 0 : nothingPending,
    notes: run.resumed > 0 ? [...run.notes, `continued ${run.resumed} upload(s) an earlier run left unfinished, without writing their parts again`] : run.notes,
    failures: run.failures,
    ...(dryRun ? { plan: [...plan.transfers, ...plan.deletions].map(plannedAction) } : {}),
  };
}

/** The report of a target that was never planned: its listing failed, or the run stopped first. */
export function unlistedTargetReport(target: MirrorTarget, message: string, isFailure: boolean, durationMs: number): TargetReport {
  return {
    target: target.name,
    store: target.store.label,
    mode: 'streaming',
    planned: { copy: 0, replace: 0, delete: 0, unchanged: 0 },
    copied: 0,
    replaced: 0,
    deleted: 0,
    unchanged: 0,
    failed: 0,
    deferred: 0,
    deferredBy: {},
    archived: { count: 0, keys: [] },
    bytesStreamed: 0,
    bytesCopiedServerSide: 0,
    durationMs,
    deleteVerdict: { allowed: true },
    complete: false,
    notes: [...(target.notes ?? []), ...(isFailure ? [] : [message])],
    failures: isFailure ? [{ target: target.name, operation: 'list', message }] : [],
  };
}
