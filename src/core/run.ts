import type { SourceStore, TargetStore } from '../stores/store.ts';
import { ByteBudget, forEachBounded } from './concurrency.ts';
import { RecordedTarget, type CopyRecordStore } from './copy-record.ts';
import { StoreError, describeError } from './errors.ts';
import type { FanOut } from './fan-out.ts';
import { planWhileListing, type ListedPlans } from './listings.ts';
import type { DeleteLimits } from './plan.ts';
import { plannedAction, type RunReport, type TargetReport } from './report.ts';
import { describeWrite, streamObject, type StreamDestination, type TransferTuning, type WrittenCopy } from './transfer.ts';
import type { DeleteAction, Failure, ObjectInfo, Plan, ProviderChoice, TargetName, TransferAction, TransferMode, TransferModeSetting } from './types.ts';

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

export interface RunOptions {
  readonly provider: ProviderChoice;
  /** Plan and report only; change nothing (default false). */
  readonly dryRun?: boolean;
  /** Objects transferred at once (default 16). */
  readonly concurrency?: number;
  readonly tuning: TransferTuning;
  /** Bytes of object data in memory at once across all transfers. */
  readonly memoryBudget: number;
  readonly transferMode?: TransferModeSetting;
  readonly deleteLimits: DeleteLimits;
  /** Lifetime of presigned URLs handed to targets that pull (default 3600 s). */
  readonly presignTtlSeconds?: number;
  /**
   * When to stop: at `stopStartingAt` (epoch ms) no new transfer starts; at `abortAt` transfers still
   * running are cancelled (nothing partial becomes visible). The rest is reported as deferred.
   */
  readonly deadline?: { readonly stopStartingAt: number; readonly abortAt: number };
  /** Uploads interrupted before this time (epoch ms) are cleaned up at the start (default: one hour before the run). */
  readonly cleanupInterruptedBefore?: number;
  /**
   * What must be done before the run's first change (cleanup, transfer or deletion): the adapters take
   * their run lock here. Not called in a dry run. It starts once the listings are under way (a first
   * page is in) and runs beside them, so it costs no time of its own. A rejection ends the run with
   * that error at once: listings stopped, nothing changed.
   */
  readonly beforeFirstChange?: () => Promise<unknown>;
  readonly signal?: AbortSignal;
  readonly onEvent?: (event: RunEvent) => void;
  readonly now?: () => number;
  /** Takes the transfers as the listings find them; a large run's go on the queue (core/fan-out.ts), the rest run here. */
  readonly fanOut?: FanOut<TargetName>;
}

/**
 * A deadline `durationMs` after `startedMs`: new transfers stop min(30 s, a quarter of the time)
 * before the end, so transfers already running have that long to finish before they are cancelled.
 */
export function deadlineAfter(startedMs: number, durationMs: number): { stopStartingAt: number; abortAt: number } {
  const abortAt = startedMs + durationMs;
  return { stopStartingAt: abortAt - Math.min(30_000, durationMs / 4), abortAt };
}

/** setTimeout fires at once for delays above 2^31-1 ms (about 24.8 days). */
const LONGEST_TIMER_MS = 2 ** 31 - 1;

/** One line of a run's structured log. Field names are stable: dashboards query them. */
export type RunEvent =
  | { readonly event: 'run-start'; readonly provider: ProviderChoice; readonly source: string; readonly targets: readonly string[]; readonly dryRun: boolean }
  | { readonly event: 'listed'; readonly store: string; readonly objects: number; readonly durationMs: number }
  | { readonly event: 'plan'; readonly target: TargetName; readonly copy: number; readonly replace: number; readonly delete: number; readonly unchanged: number; readonly deletionsAllowed: boolean }
  | { readonly event: 'transferred'; readonly target: TargetName; readonly key: string; readonly action: 'copy' | 'replace'; readonly bytes: number; readonly mode: TransferMode }
  | { readonly event: 'progress'; readonly target: TargetName; readonly done: number; readonly total: number; readonly bytes: number }
  | { readonly event: 'deleted'; readonly target: TargetName; readonly objects: number }
  | { readonly event: 'fallback'; readonly target: TargetName; readonly reason: string }
  /** What a target's report notes about how its objects were decided (the copy record, the HEADs it cost). */
  | { readonly event: 'note'; readonly target: TargetName; readonly message: string }
  | { readonly event: 'failure'; readonly target: TargetName | 'source'; readonly operation: string; readonly key?: string; readonly message: string }
  | { readonly event: 'target-end'; readonly target: TargetName; readonly copied: number; readonly replaced: number; readonly deleted: number; readonly unchanged: number; readonly failed: number; readonly deferred: number; readonly bytes: number; readonly durationMs: number; readonly complete: boolean }
  | { readonly event: 'run-end'; readonly complete: boolean; readonly failures: number; readonly durationMs: number };

/** HEAD requests in flight while deletions of a target listed out of key order are confirmed at the source. */
const CONFIRMATION_CONCURRENCY = 16;

/** After this many object failures in a row, a target is taken as down: no more transfers, no deletions. */
const CONSECUTIVE_FAILURES_FOR_DOWN = 5;

/** Per-target state while a run executes (a per-key reconcile, core/reconcile.ts, keeps one too). */
export class TargetRun {
  readonly name: TargetName;
  readonly store: TargetStore;
  readonly plan: Plan;
  mode: TransferMode;
  readonly notes: string[];
  readonly failures: Failure[] = [];
  readonly record: RecordedTarget | undefined;
  copied = 0;
  replaced = 0;
  deleted = 0;
  failed = 0;
  deferred = 0;
  bytesStreamed = 0;
  bytesCopiedServerSide = 0;
  consecutiveFailures = 0;
  down: string | undefined;
  finishedMs = 0;
  /**
   * Until one pull has succeeded, the first pull attempt is a probe and others wait for its outcome,
   * so a service that refuses to pull is asked once, not once per object in flight.
   */
  pullProbe: Promise<void> | undefined;
  pullConfirmed = false;

  constructor(target: MirrorTarget, plan: Plan, mode: TransferMode, record: RecordedTarget | undefined) {
    this.record = record;
    this.name = target.name;
    this.store = target.store;
    this.plan = plan;
    this.mode = mode;
    this.notes = [...(target.notes ?? [])];
  }

  get transfersDone(): number {
    return this.copied + this.replaced + this.failed + this.deferred;
  }
}

/** How a run starts writing to a target: pulled server-side where the service can, unless streaming is asked for. */
export function firstTransferMode(store: TargetStore, options: Pick<RunOptions, 'transferMode'>): TransferMode {
  return store.serverSideCopy !== undefined && (options.transferMode ?? 'auto') !== 'streaming' ? 'server-side' : 'streaming';
}

/** The `plan` event: what a target's plan holds, before anything is done. */
export function emitPlan(run: TargetRun, emit: (event: RunEvent) => void): void {
  const plan = run.plan;
  emit({
    event: 'plan',
    target: run.name,
    copy: plan.transfers.filter((action) => action.kind === 'copy').length,
    replace: plan.transfers.filter((action) => action.kind === 'replace').length,
    delete: plan.deletions.length,
    unchanged: plan.unchanged,
    deletionsAllowed: plan.deleteVerdict.allowed,
  });
}

/** What every transfer of one run shares. */
export interface TransferContext {
  readonly source: SourceStore;
  readonly options: RunOptions;
  readonly budget: ByteBudget;
  readonly signal: AbortSignal;
  readonly emit: (event: RunEvent) => void;
}

/** One source object and the targets it must be written to. */
interface WorkItem {
  readonly source: ObjectInfo;
  readonly actions: Map<TargetRun, TransferAction>;
}

/**
 * The whole mirror: list the source and every target (concurrently, all pages), plan each target,
 * transfer with bounded concurrency, delete last (behind the delete guard), and report.
 */
export async function runMirror(source: SourceStore, targets: readonly MirrorTarget[], options: RunOptions): Promise<RunReport> {
  const now = options.now ?? Date.now;
  const startedMs = now();
  const emit = options.onEvent ?? (() => undefined);
  const dryRun = options.dryRun ?? false;
  emit({ event: 'run-start', provider: options.provider, source: source.label, targets: targets.map((target) => target.store.label), dryRun });

  const cancel = new AbortController();
  const signal = options.signal === undefined ? cancel.signal : AbortSignal.any([options.signal, cancel.signal]);
  let abortTimer: ReturnType<typeof setTimeout> | undefined;
  if (options.deadline !== undefined) {
    const delay = options.deadline.abortAt - now();
    if (delay < LONGEST_TIMER_MS) abortTimer = setTimeout(() => cancel.abort(new Error('the run deadline was reached')), Math.max(0, delay));
  }
  // A failed `beforeFirstChange` stops the listings at once rather than after them.
  const gateFailed = new AbortController();
  let gate: Promise<unknown> | undefined;
  const openGate = (): Promise<unknown> => {
    if (gate === undefined) {
      gate = dryRun ? Promise.resolve() : (options.beforeFirstChange?.() ?? Promise.resolve());
      gate.catch((error: unknown) => gateFailed.abort(error));
    }
    return gate;
  };
  const records = new Map(targets.flatMap((target) => (target.copyRecord === undefined ? [] : [[target, new RecordedTarget(target.store.label, target.copyRecord.store, signal)] as const])));
  try {
    let listed: ListedPlans<TargetName>;
    try {
      listed = await planWhileListing(
        { label: source.label, pages: (listSignal) => source.listPages(listSignal) },
        targets.map((target) => ({
          name: target.name,
          label: target.store.label,
          pages: (listSignal: AbortSignal) => records.get(target)?.annotate(target.store.listPages(listSignal)) ?? target.store.listPages(listSignal),
          keyProblem: (key: string) => target.store.keyProblem(key),
        })),
        options.deleteLimits,
        {
          signal: AbortSignal.any([signal, gateFailed.signal]),
          now,
          onFirstPage: () => void openGate(),
          onListed: (label, objects, durationMs) => emit({ event: 'listed', store: label, objects, durationMs }),
          ...(options.fanOut === undefined || dryRun ? {} : { transferSink: options.fanOut }),
        },
      );
      if (!dryRun) await options.fanOut?.finish();
    } catch (error) {
      if (gateFailed.signal.aborted) throw gateFailed.signal.reason;
      if (cancel.signal.aborted) return deadlineDuringListings();
      const failure: Failure = { target: 'source', operation: 'list', message: describeError(error) };
      emit({ event: 'failure', ...failure });
      return finish({
        sourceObjects: 0,
        sourceBytes: 0,
        runs: [],
        failures: [failure],
        stoppedEarly: 'the source listing failed: nothing was copied or deleted',
        listingFailures: targets.map((target) => ({ target, message: 'not mirrored: the source listing failed', counted: false })),
      });
    }
    if (cancel.signal.aborted) return deadlineDuringListings();

    const runs: TargetRun[] = [];
    const listingFailures: { target: MirrorTarget; message: string; counted: boolean }[] = [];
    for (const target of targets) {
      const listedPlan = listed.plans.get(target.name);
      const record = records.get(target);
      const fanOut = dryRun ? undefined : options.fanOut;
      const kept = listedPlan === undefined || fanOut === undefined ? listedPlan : { ...listedPlan, transfers: fanOut.inline(target.name) };
      if (kept === undefined) {
        const message = describeError(listed.failedTargets.get(target.name));
        listingFailures.push({ target, message, counted: true });
        emit({ event: 'failure', target: target.name, operation: 'list', message });
        continue;
      }
      const plan = record === undefined ? kept : await record.resolve(kept, target.store, signal, { stopAt: options.deadline?.stopStartingAt, now });
      const run = new TargetRun(target, plan, firstTransferMode(target.store, options), record);
      if (plan.confirmDeletions !== undefined && dryRun) run.notes.push(plan.confirmDeletions);
      for (const refusal of plan.refused) recordFailure(run, { target: run.name, operation: 'copy', key: refusal.key, message: `not mirrored: ${refusal.reason}` }, emit);
      const handedOff = fanOut?.handedOff(target.name);
      if (handedOff !== undefined) {
        // Left to the queue workers: this run's report is not the target's last word.
        run.deferred += handedOff.keys;
        run.notes.push(handedOff.note);
      }
      runs.push(run);
      emitPlan(run, emit);
    }

    if (!dryRun) {
      await openGate();
      await cleanupInterruptedWrites(runs, options.cleanupInterruptedBefore ?? startedMs - 3_600_000, signal);
      await transferAll(runs, source, options, signal, emit, now);
      for (const run of runs) await deleteExtras(run, source, signal, emit);
      // Not cut by the deadline (see `RecordedTarget.save`); the caller's signal aborts when the lock is lost.
      await Promise.all(runs.map((run) => run.record?.save(options.signal)));
    }
    for (const run of runs) {
      for (const message of run.record?.notes ?? []) {
        run.notes.push(message);
        emit({ event: 'note', target: run.name, message });
      }
    }
    const deadlinePassed = options.deadline !== undefined && runs.some((run) => run.deferred > (options.fanOut?.handedOff(run.name)?.keys ?? 0));
    return finish({
      sourceObjects: listed.sourceObjects,
      sourceBytes: listed.sourceBytes,
      runs,
      failures: [],
      stoppedEarly: deadlinePassed ? 'the run deadline was reached: the next run continues where this one stopped' : undefined,
      listingFailures,
    });
  } finally {
    clearTimeout(abortTimer);
  }

  /** The deadline came during the listings: nothing was written, nothing failed; the next run starts over. */
  function deadlineDuringListings(): RunReport {
    return finish({
      sourceObjects: 0,
      sourceBytes: 0,
      runs: [],
      failures: [],
      stoppedEarly: 'the run deadline was reached before the listings finished: nothing was changed',
      listingFailures: targets.map((target) => ({ target, message: 'not mirrored: the run deadline came first', counted: false })),
    });
  }

  function finish(result: {
    sourceObjects: number;
    sourceBytes: number;
    runs: TargetRun[];
    failures: Failure[];
    stoppedEarly: string | undefined;
    /** Targets that were never planned; `counted` is false when the cause is already a failure elsewhere (the source). */
    listingFailures: { target: MirrorTarget; message: string; counted: boolean }[];
  }): RunReport {
    const finishedMs = now();
    const reports: TargetReport[] = [];
    for (const target of targets) {
      const run = result.runs.find((candidate) => candidate.store === target.store);
      if (run !== undefined) {
        reports.push(targetReport(run, dryRun, (run.finishedMs || finishedMs) - startedMs));
        continue;
      }
      const listingFailure = result.listingFailures.find((entry) => entry.target === target);
      reports.push(unlistedTargetReport(target, listingFailure?.message ?? 'not listed', listingFailure?.counted ?? true, finishedMs - startedMs));
    }
    for (const report of reports) {
      emit({
        event: 'target-end',
        target: report.target,
        copied: report.copied,
        replaced: report.replaced,
        deleted: report.deleted,
        unchanged: report.unchanged,
        failed: report.failed,
        deferred: report.deferred,
        bytes: report.bytesStreamed + report.bytesCopiedServerSide,
        durationMs: report.durationMs,
        complete: report.complete,
      });
    }
    const complete = result.failures.length === 0 && reports.every((report) => report.complete);
    const failures = result.failures.length + reports.reduce((sum, report) => sum + report.failures.length, 0);
    emit({ event: 'run-end', complete, failures, durationMs: finishedMs - startedMs });
    return {
      provider: options.provider,
      dryRun,
      source: { store: source.label, objects: result.sourceObjects, bytes: result.sourceBytes },
      startedAt: new Date(startedMs).toISOString(),
      durationMs: finishedMs - startedMs,
      complete,
      ...(result.stoppedEarly === undefined ? {} : { stoppedEarly: result.stoppedEarly }),
      targets: reports,
      failures: result.failures,
    };
  }
}

async function cleanupInterruptedWrites(runs: readonly TargetRun[], before: number, signal: AbortSignal): Promise<void> {
  await Promise.all(runs.map(async (run) => {
    if (run.store.cleanupInterruptedWrites === undefined) return;
    try {
      const removed = await run.store.cleanupInterruptedWrites(before, signal);
      if (removed > 0) run.notes.push(`removed ${removed} interrupted upload(s) left by an earlier run`);
    } catch (error) {
      // An emulator without ListMultipartUploads answers 501; real S3 and OCI implement it.
      if (error instanceof StoreError && error.status === 501) return;
      run.notes.push(`could not clean up interrupted uploads: ${describeError(error)}`);
    }
  }));
}

/**
 * Groups the transfers of every target by key, so an object needed by several targets is read once;
 * largest first, so the longest transfers overlap with the many small ones instead of trailing them.
 */
function workItems(runs: readonly TargetRun[]): WorkItem[] {
  const byKey = new Map<string, WorkItem>();
  for (const run of runs) {
    for (const action of run.plan.transfers) {
      let item = byKey.get(action.key);
      if (item === undefined) {
        item = { source: action.source, actions: new Map() };
        byKey.set(action.key, item);
      }
      item.actions.set(run, action);
    }
  }
  return [...byKey.values()].sort((a, b) => b.source.size - a.source.size);
}

async function transferAll(
  runs: readonly TargetRun[],
  source: SourceStore,
  options: RunOptions,
  signal: AbortSignal,
  emit: (event: RunEvent) => void,
  now: () => number,
): Promise<void> {
  const context: TransferContext = { source, options, budget: new ByteBudget(options.memoryBudget), signal, emit };
  const progressEveryMs = 2000;
  let lastProgress = now();
  const reportProgress = (force: boolean): void => {
    if (!force && now() - lastProgress < progressEveryMs) return;
    lastProgress = now();
    for (const run of runs) {
      if (run.plan.transfers.length === 0) continue;
      emit({ event: 'progress', target: run.name, done: run.transfersDone, total: run.plan.transfers.length, bytes: run.bytesStreamed + run.bytesCopiedServerSide });
    }
  };

  await forEachBounded(workItems(runs), options.concurrency ?? 16, async (item) => {
    const pending = [...item.actions.entries()].filter(([run]) => run.down === undefined);
    for (const [run] of item.actions) if (run.down !== undefined) run.deferred += 1;
    if (pending.length === 0) return;
    if (signal.aborted || (options.deadline !== undefined && now() >= options.deadline.stopStartingAt)) {
      for (const [run] of pending) run.deferred += 1;
      return;
    }
    await transferOne(item.source.key, pending, context);
    reportProgress(false);
  });
  reportProgress(true);
  const finishedMs = now();
  for (const run of runs) run.finishedMs = finishedMs;
}

/** Writes one object to the targets that need it: pulled server-side where the target can, streamed (read once) to the rest. */
export async function transferOne(
  key: string,
  pending: readonly [TargetRun, TransferAction][],
  context: TransferContext,
): Promise<void> {
  let endProbe: (() => void) | undefined;
  for (const [run] of pending) {
    if (run.mode !== 'server-side' || run.pullConfirmed) continue;
    if (run.pullProbe === undefined) run.pullProbe = new Promise<void>((resolve) => (endProbe = resolve));
    else await run.pullProbe;
  }
  let streaming: [TargetRun, TransferAction][];
  try {
    const pulling = pending.filter(([run]) => run.mode === 'server-side');
    const refused = pulling.length === 0 ? [] : await pullFromUrl(key, pulling, context);
    streaming = [...pending.filter(([run]) => run.mode === 'streaming' && !pulling.some(([pulled]) => pulled === run)), ...refused];
  } finally {
    endProbe?.();
  }
  if (streaming.length > 0) await streamToTargets(key, streaming, context);
}

/** Lets each target pull the object from a presigned URL; resolves with the ones that refused and should stream it instead. */
async function pullFromUrl(
  key: string,
  pulling: readonly [TargetRun, TransferAction][],
  context: TransferContext,
): Promise<[TargetRun, TransferAction][]> {
  const { source, options, signal, emit } = context;
  const refused: [TargetRun, TransferAction][] = [];
  let head: Awaited<ReturnType<SourceStore['head']>>;
  let url: string;
  try {
    head = await source.head(key, signal);
    url = await source.presignGet(key, options.presignTtlSeconds ?? 3600);
  } catch (error) {
    for (const [run, action] of pulling) fail(run, action, error, signal, emit);
    return refused;
  }
  await Promise.all(pulling.map(async ([run, action]) => {
    try {
      const description = describeWrite(key, head);
      const version = await run.store.serverSideCopy!.copyFromUrl(url, description, signal);
      run.pullConfirmed = true;
      succeed(run, action, head.size, 'server-side', emit, { source: description.recordedSource, targetEtag: version.etag });
    } catch (error) {
      if (!(error instanceof StoreError && error.scope === 'refused-pull' && (options.transferMode ?? 'auto') === 'auto')) {
        fail(run, action, error, signal, emit);
        return;
      }
      if (run.mode === 'server-side') {
        run.mode = 'streaming';
        const reason = `${run.store.label} refused to pull from the source (${error.code ?? error.status ?? 'refused'}); streaming through this process instead`;
        run.notes.push(reason);
        emit({ event: 'fallback', target: run.name, reason });
      }
      refused.push([run, action]);
    }
  }));
  return refused;
}

/** Streams the object through this process to every target in `streaming`, reading the source once. */
async function streamToTargets(
  key: string,
  streaming: readonly [TargetRun, TransferAction][],
  context: TransferContext,
): Promise<void> {
  const { source, options, budget, signal, emit } = context;
  const byName = new Map(streaming.map(([run, action]) => [run.name, { run, action }]));
  const destinations: StreamDestination<TargetName>[] = streaming.map(([run]) => ({ name: run.name, store: run.store }));
  try {
    const outcomes = await streamObject({ source, key, destinations, tuning: options.tuning, budget, signal });
    for (const [name, outcome] of outcomes) {
      const { run, action } = byName.get(name)!;
      if (outcome.ok) succeed(run, action, outcome.bytes, 'streaming', emit, outcome.written);
      else fail(run, action, outcome.error, signal, emit);
    }
  } catch (error) {
    for (const { run, action } of byName.values()) fail(run, action, error, signal, emit);
  }
}

function succeed(run: TargetRun, action: TransferAction, bytes: number, mode: TransferMode, emit: (event: RunEvent) => void, written: WrittenCopy): void {
  run.consecutiveFailures = 0;
  run.record?.wrote(action.key, written);
  if (action.kind === 'copy') run.copied += 1;
  else run.replaced += 1;
  if (mode === 'server-side') run.bytesCopiedServerSide += bytes;
  else run.bytesStreamed += bytes;
  emit({ event: 'transferred', target: run.name, key: action.key, action: action.kind, bytes, mode });
}

function fail(run: TargetRun, action: TransferAction, error: unknown, signal: AbortSignal, emit: (event: RunEvent) => void): void {
  if (signal.aborted) {
    // Cancelled by the deadline or the caller: nothing partial is visible, the next run picks it up.
    run.deferred += 1;
    return;
  }
  // An object that can never be written as it is says nothing about the store's health.
  if (!(error instanceof StoreError && error.scope === 'unmirrorable')) run.consecutiveFailures += 1;
  recordFailure(run, { target: run.name, operation: action.kind, key: action.key, message: describeError(error) }, emit);
  const storeWide = error instanceof StoreError && error.scope === 'store' && error.store === run.store.label;
  if (run.down === undefined && (storeWide || run.consecutiveFailures >= CONSECUTIVE_FAILURES_FOR_DOWN)) {
    run.down = storeWide ? describeError(error) : `${run.consecutiveFailures} transfers in a row failed; last: ${describeError(error)}`;
    run.notes.push(`stopped using ${run.store.label}: ${run.down}; nothing was deleted`);
  }
}

/** One object that did not end as planned: counted, kept for the report, logged. */
function recordFailure(run: TargetRun, failure: Failure, emit: (event: RunEvent) => void): void {
  run.failed += 1;
  run.failures.push(failure);
  emit({ event: 'failure', ...failure });
}

/** Deletions come last, and only when the target is healthy, the run was not cut short, and the delete guard allows them. */
async function deleteExtras(run: TargetRun, source: SourceStore, signal: AbortSignal, emit: (event: RunEvent) => void): Promise<void> {
  let deletions = run.plan.deletions;
  if (deletions.length === 0) return;
  const verdict = run.plan.deleteVerdict;
  if (!verdict.allowed) {
    run.deferred += deletions.length;
    const failure: Failure = {
      target: run.name,
      operation: 'delete',
      message: `deleted nothing: ${verdict.reason}${verdict.setting ? `; raise ${verdict.setting} if this is intended` : ''}`,
    };
    run.failures.push(failure);
    emit({ event: 'failure', ...failure });
    return;
  }
  if (run.down !== undefined || signal.aborted || run.deferred > 0) {
    run.deferred += deletions.length;
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
export async function deleteKeys(run: TargetRun, keys: readonly string[], signal: AbortSignal, emit: (event: RunEvent) => void): Promise<string[]> {
  let gone: string[] = [];
  try {
    const failures = await run.store.deleteMany(keys, signal);
    const failedKeys = new Set(failures.map((failure) => failure.key));
    gone = keys.filter((key) => !failedKeys.has(key));
    run.deleted += keys.length - failures.length;
    for (const failure of failures) {
      run.failed += 1;
      const entry: Failure = { target: run.name, operation: 'delete', key: failure.key, message: failure.message };
      run.failures.push(entry);
      emit({ event: 'failure', ...entry });
    }
  } catch (error) {
    if (signal.aborted) {
      run.deferred += keys.length;
      return gone;
    }
    run.failed += keys.length;
    const entry: Failure = { target: run.name, operation: 'delete', message: describeError(error) };
    run.failures.push(entry);
    emit({ event: 'failure', ...entry });
  }
  emit({ event: 'deleted', target: run.name, objects: run.deleted });
  return gone;
}

/** Keeps only the deletions whose key the source does not have (a HEAD answered 404); says how many were kept and why. */
async function confirmedAtSource(run: TargetRun, deletions: readonly DeleteAction[], source: SourceStore, signal: AbortSignal, emit: (event: RunEvent) => void): Promise<DeleteAction[]> {
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
      const failure: Failure = { target: run.name, operation: 'delete', key: action.key, message: `not deleted: the source could not confirm it no longer has the key: ${describeError(error)}` };
      run.failures.push(failure);
      emit({ event: 'failure', ...failure });
    }
  });
  if (run.plan.confirmDeletions !== undefined || kept > 0) {
    const why = run.plan.confirmDeletions ?? 'each deletion is confirmed at the source right before it (the key may have come back since the listing)';
    run.notes.push(`${why}: ${confirmed.length} deletion(s) confirmed at the source, ${kept} kept because the source has them`);
  }
  return confirmed;
}

export function targetReport(run: TargetRun, dryRun: boolean, durationMs: number): TargetReport {
  const plan = run.plan;
  const planned = {
    copy: plan.transfers.filter((action) => action.kind === 'copy').length,
    replace: plan.transfers.filter((action) => action.kind === 'replace').length,
    delete: plan.deletions.length,
    unchanged: plan.unchanged,
  };
  const nothingPending = run.failures.length === 0 && run.deferred === 0 && run.down === undefined;
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
    bytesStreamed: run.bytesStreamed,
    bytesCopiedServerSide: run.bytesCopiedServerSide,
    durationMs,
    deleteVerdict: plan.deleteVerdict,
    complete: dryRun ? plan.transfers.length === 0 && plan.deletions.length === 0 : nothingPending,
    notes: run.notes,
    failures: run.failures,
    ...(dryRun ? { plan: [...plan.transfers, ...plan.deletions].map(plannedAction) } : {}),
  };
}

function unlistedTargetReport(target: MirrorTarget, message: string, isFailure: boolean, durationMs: number): TargetReport {
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
    bytesStreamed: 0,
    bytesCopiedServerSide: 0,
    durationMs,
    deleteVerdict: { allowed: true },
    complete: false,
    notes: [...(target.notes ?? []), ...(isFailure ? [] : [message])],
    failures: isFailure ? [{ target: target.name, operation: 'list', message }] : [],
  };
}
