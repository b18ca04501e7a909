/**
 * A whole mirror run: list, plan, transfer, delete, report. How a target is run lives in
 * ./target-run.ts, how one object is transferred in ./transfer-one.ts.
 */
import type { SourceStore } from '../stores/store.ts';
import { forEachBounded } from './concurrency.ts';
import { RecordedTarget } from './copy-record.ts';
import { DeadlineError, StoreError, describeError } from './errors.ts';
import type { FanOut } from './fan-out.ts';
import type { LedgerEntry, ProgressLedger } from './ledger.ts';
import { planWhileListing, type ListedPlans } from './listings.ts';
import type { DeleteLimits } from './plan.ts';
import type { RunReport, TargetReport } from './report.ts';
import { TargetRun, deferReasonOf, deleteExtras, emitPlan, firstTransferMode, targetReport, unlistedTargetReport, type MirrorTarget, type TargetEvent } from './target-run.ts';
import { transferContext, transferOne, type TransferContext } from './transfer-one.ts';
import type { TransferTuning } from './transfer.ts';
import type { DeferReason, Failure, ObjectInfo, ProviderChoice, TargetName, TransferAction, TransferModeSetting } from './types.ts';

export type { MirrorTarget } from './target-run.ts';

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
  /** Longest lifetime of presigned URLs handed to targets that pull (default 3600 s); each URL lives as long as its pull may take. */
  readonly presignTtlSeconds?: number;
  /**
   * When to stop: at `stopStartingAt` (epoch ms) no new transfer (or part) starts, and multi-part uploads
   * in flight keep their parts for the next run; at `abortAt` transfers still running are cancelled
   * (nothing partial becomes visible). The rest is reported as deferred.
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
  /** Per target, where deferred objects and unfinished uploads are remembered between runs (read and written after `beforeFirstChange`). */
  readonly ledgers?: Partial<Record<TargetName, ProgressLedger>>;
  /** A run in which an object is deferred for this many runs in a row fails (default 10). */
  readonly maxDeferredRuns?: number;
  /** Archived source objects fail the run (default false: they are reported). */
  readonly failOnArchived?: boolean;
  /** How long a target must keep failing, 5 transfers or more in a row, before it is taken as down (default 60 s). */
  readonly downAfterMs?: number;
  /** Aborting it stops the run: its reason (`DeadlineError`, `LockLostError`, `InterruptedError`) names why in the report. */
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

/** Writing a ledger waits at most this long (its storage may be the target that went down). */
const LEDGER_SAVE_TIMEOUT_MS = 5000;

/** setTimeout fires at once for delays above 2^31-1 ms (about 24.8 days). */
const LONGEST_TIMER_MS = 2 ** 31 - 1;

/** One line of a run's structured log. Field names are stable: dashboards query them. */
export type RunEvent =
  | TargetEvent
  | { readonly event: 'run-start'; readonly provider: ProviderChoice; readonly source: string; readonly targets: readonly string[]; readonly dryRun: boolean }
  | { readonly event: 'listed'; readonly store: string; readonly objects: number; readonly durationMs: number }
  | { readonly event: 'plan'; readonly target: TargetName; readonly copy: number; readonly replace: number; readonly delete: number; readonly unchanged: number; readonly archived: number; readonly deletionsAllowed: boolean }
  | { readonly event: 'progress'; readonly target: TargetName; readonly done: number; readonly total: number; readonly bytes: number }
  | { readonly event: 'fallback'; readonly target: TargetName; readonly reason: string }
  /** What a target's report notes about how its objects were decided (the copy record, the HEADs it cost). */
  | { readonly event: 'note'; readonly target: TargetName; readonly message: string }
  | { readonly event: 'target-end'; readonly target: TargetName; readonly copied: number; readonly replaced: number; readonly deleted: number; readonly unchanged: number; readonly failed: number; readonly deferred: number; readonly deferredBy: Partial<Record<DeferReason, number>>; readonly archived: number; readonly bytes: number; readonly durationMs: number; readonly complete: boolean }
  | { readonly event: 'run-end'; readonly complete: boolean; readonly failures: number; readonly stoppedBy?: string; readonly durationMs: number };

/** One source object and the targets it must be written to. */
interface WorkItem {
  readonly source: ObjectInfo;
  readonly actions: Map<TargetRun, TransferAction>;
}

/** Why a run stopped, in words, by the reason its signal was aborted with. */
const STOPPED_BECAUSE: Record<DeferReason, string> = {
  deadline: 'the run deadline was reached: the next run continues where this one stopped',
  'lock-lost': 'the run lock was lost, so the run stopped before another run could take over: nothing partial was left visible',
  interrupted: 'the run was interrupted: transfers in flight were cancelled, nothing partial was left visible',
  cancelled: 'the run was cancelled: transfers in flight were cancelled, nothing partial was left visible',
  'target-down': 'a target went down',
  'delete-guard': 'a delete guard held deletions back',
  enqueued: 'the transfers were put on the queue: the workers finish them, and the run record says when',
};

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
  const stopStarting = new AbortController();
  const signal = options.signal === undefined ? cancel.signal : AbortSignal.any([options.signal, cancel.signal]);
  const frame: RunFrame = { source, targets, options, startedMs, now, emit, dryRun, signal };
  const timers: ReturnType<typeof setTimeout>[] = [];
  if (options.deadline !== undefined) {
    const at = (epochMs: number, action: () => void): void => {
      const delay = epochMs - now();
      if (delay < LONGEST_TIMER_MS) timers.push(setTimeout(action, Math.max(0, delay)));
    };
    at(options.deadline.abortAt, () => cancel.abort(new DeadlineError('the run deadline was reached')));
    at(options.deadline.stopStartingAt, () => stopStarting.abort());
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
      // Stopped, not failed: say why (a lost lock is not a failed listing).
      if (signal.aborted) return stoppedDuringListings(frame, deferReasonOf(signal));
      const failure: Failure = { target: 'source', operation: 'list', message: describeError(error) };
      emit({ event: 'failure', ...failure });
      return finishRun(frame, {
        sourceObjects: 0,
        sourceBytes: 0,
        runs: [],
        failures: [failure],
        stoppedBy: 'source-listing',
        stoppedEarly: 'the source listing failed: nothing was copied or deleted',
        listingFailures: targets.map((target) => ({ target, message: 'not mirrored: the source listing failed', counted: false })),
      });
    }
    if (signal.aborted) return stoppedDuringListings(frame, deferReasonOf(signal));

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
      for (const refusal of plan.refused) {
        run.failed += 1;
        run.recordFailure({ operation: 'copy', key: refusal.key, message: `not mirrored: ${refusal.reason}` }, emit);
      }
      const handedOff = fanOut?.handedOff(target.name);
      if (handedOff !== undefined) {
        // Left to the queue workers: this run's report is not the target's last word.
        run.defer('enqueued', handedOff.keys);
        run.notes.push(handedOff.note);
      }
      runs.push(run);
      emitPlan(run, emit);
    }

    if (!dryRun) {
      await openGate();
      await changeTargets(frame, runs, stopStarting.signal);
    }
    for (const run of runs) {
      for (const message of run.record?.notes ?? []) {
        run.notes.push(message);
        emit({ event: 'note', target: run.name, message });
      }
    }
    // A transfer deferred because it would not end before the cut-off counts too, also when the run ended before the deadline itself.
    const stoppedBy = signal.aborted ? deferReasonOf(signal) : runs.some((run) => run.deferredBy.has('deadline')) ? 'deadline' : undefined;
    return finishRun(frame, {
      sourceObjects: listed.sourceObjects,
      sourceBytes: listed.sourceBytes,
      runs,
      failures: [],
      stoppedBy,
      stoppedEarly: stoppedBy === undefined ? undefined : STOPPED_BECAUSE[stoppedBy],
      listingFailures,
    });
  } finally {
    for (const timer of timers) clearTimeout(timer);
  }
}

/** What a run's report is made from, besides each target's state. */
interface RunFrame {
  readonly source: SourceStore;
  readonly targets: readonly MirrorTarget[];
  readonly options: RunOptions;
  readonly startedMs: number;
  readonly now: () => number;
  readonly emit: (event: RunEvent) => void;
  readonly dryRun: boolean;
  readonly signal: AbortSignal;
}

interface RunResult {
  readonly sourceObjects: number;
  readonly sourceBytes: number;
  readonly runs: readonly TargetRun[];
  readonly failures: Failure[];
  readonly stoppedBy: RunReport['stoppedBy'];
  readonly stoppedEarly: string | undefined;
  /** Targets that were never planned; `counted` is false when the cause is already a failure elsewhere (the source). */
  readonly listingFailures: readonly { target: MirrorTarget; message: string; counted: boolean }[];
}

/**
 * Everything a run changes, once its lock is held: what earlier runs left is read, leftovers cleaned up,
 * objects transferred, extras deleted, and what is still deferred recorded for the next run.
 */
async function changeTargets(frame: RunFrame, runs: readonly TargetRun[], stopStarting: AbortSignal): Promise<void> {
  const { source, options, startedMs, now, emit, signal } = frame;
  // Read once the lock is held: only the holder writes it.
  // Only a target with transfers to make needs to know what earlier runs left (a no-op run makes no request for it).
  for (const [name, loaded] of await loadLedgers(runs.filter((run) => run.plan.transfers.length > 0).map((run) => run.name), options.ledgers, signal)) {
    const run = runs.find((candidate) => candidate.name === name)!;
    run.earlier = loaded.entries;
    if (loaded.error !== undefined) run.notes.push(loaded.error);
  }
  await cleanupInterruptedWrites(runs, options.cleanupInterruptedBefore ?? startedMs - 3_600_000, signal);
  // Deletions come last. Under a deadline they start once every transfer has started (or the deadline
  // stops new ones), beside the transfers still running: a transfer too long for the run never holds
  // them back (they touch other keys).
  let deleting: Promise<unknown> | undefined;
  const deleteAll = (): Promise<unknown> => (deleting ??= Promise.all(runs.map((run) => deleteExtras(run, source, signal, emit))));
  const deleteAtStop = (): void => void deleteAll();
  stopStarting.addEventListener('abort', deleteAtStop, { once: true });
  await transferAll(runs, transferContext(options, {
    source,
    signal,
    ...(options.deadline === undefined ? {} : { stopStarting }),
    abortAt: options.deadline?.abortAt,
    now,
    emit,
  }), options.concurrency ?? 16, emit, options.deadline === undefined ? undefined : deleteAtStop);
  stopStarting.removeEventListener('abort', deleteAtStop);
  await deleteAll();
  for (const run of runs) run.failLongDeferred(options.maxDeferredRuns ?? 10, emit);
  // Neither is cut by the deadline (see `RecordedTarget.save`); the caller's signal aborts when the lock is lost.
  await Promise.all([saveLedgers(runs, options.ledgers), ...runs.map((run) => run.record?.save(options.signal))]);
}

/** The run stopped during the listings: nothing was written; the next run starts over. */
function stoppedDuringListings(frame: RunFrame, reason: DeferReason): RunReport {
  const before = reason === 'deadline' ? 'the run deadline was reached before the listings finished' : STOPPED_BECAUSE[reason].split(':')[0]!;
  return finishRun(frame, {
    sourceObjects: 0,
    sourceBytes: 0,
    runs: [],
    failures: [],
    stoppedBy: reason,
    stoppedEarly: `${before}: nothing was changed`,
    listingFailures: frame.targets.map((target) => ({ target, message: `not mirrored: ${reason === 'deadline' ? 'the run deadline came first' : before}`, counted: false })),
  });
}

/** The run's report from what each target did; emits the closing events. */
function finishRun(frame: RunFrame, result: RunResult): RunReport {
  const { source, targets, options, startedMs, now, emit, dryRun, signal } = frame;
  const finishedMs = now();
  const failOnArchived = options.failOnArchived ?? false;
  // A lost lock is a failed run, at every target it stopped: never a success.
  const lockLost = result.stoppedBy === 'lock-lost' ? describeError(signal.reason) : undefined;
  const reports: TargetReport[] = [];
  for (const target of targets) {
    const run = result.runs.find((candidate) => candidate.store === target.store);
    let report: TargetReport;
    if (run !== undefined) {
      if (lockLost !== undefined) run.recordFailure({ operation: 'lock', message: lockLost }, emit);
      if (failOnArchived && run.archived.length > 0) {
        run.recordFailure({ operation: 'copy', message: `${run.archived.length} object(s) archived at the source were not mirrored; restore them at the source, or set SYNC_FAIL_ON_ARCHIVED=false to report them without failing` }, emit);
      }
      report = targetReport(run, dryRun, (run.finishedMs || finishedMs) - startedMs, failOnArchived);
    } else {
      const listingFailure = result.listingFailures.find((entry) => entry.target === target);
      report = unlistedTargetReport(target, listingFailure?.message ?? 'not listed', listingFailure?.counted ?? true, finishedMs - startedMs);
      if (lockLost !== undefined) report = { ...report, failures: [...report.failures, { target: target.name, operation: 'lock', message: lockLost }] };
    }
    reports.push(report);
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
      deferredBy: report.deferredBy,
      archived: report.archived.count,
      bytes: report.bytesStreamed + report.bytesCopiedServerSide,
      durationMs: report.durationMs,
      complete: report.complete,
    });
  }
  const complete = result.failures.length === 0 && reports.every((report) => report.complete);
  const failures = result.failures.length + reports.reduce((sum, report) => sum + report.failures.length, 0);
  emit({ event: 'run-end', complete, failures, ...(result.stoppedBy === undefined ? {} : { stoppedBy: result.stoppedBy }), durationMs: finishedMs - startedMs });
  return {
    provider: options.provider,
    dryRun,
    source: { store: source.label, objects: result.sourceObjects, bytes: result.sourceBytes },
    startedAt: new Date(startedMs).toISOString(),
    durationMs: finishedMs - startedMs,
    complete,
    ...(result.stoppedEarly === undefined ? {} : { stoppedEarly: result.stoppedEarly }),
    ...(result.stoppedBy === undefined ? {} : { stoppedBy: result.stoppedBy }),
    targets: reports,
    failures: result.failures,
  };
}

/** Each target's ledger, read after the lock is held; one that cannot be read costs only the resumes (said in a note). */
async function loadLedgers(
  names: readonly TargetName[],
  ledgers: RunOptions['ledgers'],
  signal: AbortSignal,
): Promise<Map<TargetName, { entries: Map<string, LedgerEntry>; error?: string }>> {
  const loaded = new Map<TargetName, { entries: Map<string, LedgerEntry>; error?: string }>();
  await Promise.all(names.map(async (name) => {
    const ledger = ledgers?.[name];
    if (ledger === undefined) return;
    try {
      loaded.set(name, { entries: await ledger.load(signal) });
    } catch (error) {
      loaded.set(name, { entries: new Map(), error: `could not read what earlier runs left (${ledger.label}), so no upload is continued and deferrals count from 1: ${describeError(error)}` });
    }
  }));
  return loaded;
}

/** Writes what this run deferred; an object no longer deferred leaves the ledger. Failing to write is a note: the next run merely starts over. */
async function saveLedgers(runs: readonly TargetRun[], ledgers: RunOptions['ledgers']): Promise<void> {
  await Promise.all(runs.map(async (run) => {
    const ledger = ledgers?.[run.name];
    if (ledger === undefined || (run.deferredNow.size === 0 && run.earlier.size === 0)) return;
    try {
      // Not bound to the run's signal: a cancelled run still records where its uploads stand; briefly, as releasing the lock.
      await ledger.save(run.deferredNow, AbortSignal.timeout(LEDGER_SAVE_TIMEOUT_MS));
    } catch (error) {
      run.notes.push(`could not record the deferred objects (${ledger.label}): ${describeError(error)}`);
    }
  }));
}

async function cleanupInterruptedWrites(runs: readonly TargetRun[], before: number, signal: AbortSignal): Promise<void> {
  await Promise.all(runs.map(async (run) => {
    if (run.store.cleanupInterruptedWrites === undefined) return;
    // Uploads that a current source version will continue are kept; any other is a leftover.
    const keep = new Set<string>();
    for (const action of run.plan.transfers) {
      const token = run.earlier.get(action.key)?.upload?.token;
      if (token !== undefined && run.earlier.get(action.key)?.etag === action.source.etag) keep.add(token);
    }
    try {
      const removed = await run.store.cleanupInterruptedWrites(before, keep, signal);
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
 * The smallest object a pulling target needs goes first: it is the probe that tells whether the target
 * pulls at all, and it answers in a moment, so the other lanes are not held behind a large copy.
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
  const items = [...byKey.values()].sort((a, b) => b.source.size - a.source.size);
  const pulling = new Set(runs.filter((run) => run.mode === 'server-side'));
  for (let index = items.length - 1; index > 0 && pulling.size > 0; index -= 1) {
    const item = items[index]!;
    if (![...item.actions.keys()].some((run) => pulling.has(run))) continue;
    items.splice(index, 1);
    items.unshift(item);
    break;
  }
  return items;
}

/** Transfers every planned object; `onAllStarted` is called once the last one has started. */
async function transferAll(runs: readonly TargetRun[], context: TransferContext, concurrency: number, emit: (event: RunEvent) => void, onAllStarted?: () => void): Promise<void> {
  const { signal, now } = context;
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

  function* queue(): Generator<WorkItem> {
    yield* workItems(runs);
    onAllStarted?.();
  }
  await forEachBounded(queue(), concurrency, async (item) => {
    const pending = [...item.actions.entries()].filter(([run]) => run.down === undefined);
    for (const [run, action] of item.actions) if (run.down !== undefined) run.deferTransfer(action, 'target-down', emit);
    if (pending.length === 0) return;
    if (signal.aborted || context.stopStarting?.aborted === true) {
      const reason = signal.aborted ? deferReasonOf(signal) : 'deadline';
      for (const [run, action] of pending) run.deferTransfer(action, reason, emit);
      return;
    }
    await transferOne(item.source.key, pending, context);
    reportProgress(false);
  });
  reportProgress(true);
  const finishedMs = now();
  for (const run of runs) run.finishedMs = finishedMs;
}
