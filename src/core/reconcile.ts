/**
 * Per-key reconcile: bring the named keys of every target in step with the source's CURRENT state,
 * without listing anything. Each key is looked at (HEAD at the source, HEAD at each target), decided
 * with the full run's `replaceReason`, and written with the full run's `transferOne`; a key the
 * source no longer has is deleted at the targets that still hold it, within the deletion window.
 *
 * A key that was changed is looked at again, and acted on again if it is still not in step: two
 * workers racing on one key (or a worker and a full run) may finish in any order, but the one that
 * finishes last sees the source's current version and writes it, so no older version stays last.
 */
import type { SourceStore } from '../stores/store.ts';
import { forEachBounded } from './concurrency.ts';
import type { DeletionWindow } from './delete-window.ts';
import { StoreError, describeError } from './errors.ts';
import { actionForKey, objectOfHead } from './plan.ts';
import type { RunReport, TargetReport } from './report.ts';
import type { RunEvent, RunOptions } from './run.ts';
import { TargetRun, deleteKeys, emitPlan, firstTransferMode, targetReport, type MirrorTarget } from './target-run.ts';
import { transferContext, transferOne } from './transfer-one.ts';
import type { DeleteAction, Failure, ObjectInfo, Plan, TargetName, TransferAction } from './types.ts';

/** A key to reconcile, and when the event that named it happened (absent for `--key`). */
export interface KeyToReconcile {
  readonly key: string;
  readonly eventTimeMs?: number;
}

/** How a key ended at one target. */
export type KeyOutcome = 'copy' | 'replace' | 'delete' | 'unchanged' | 'held' | 'failed';

export type ReconcileEvent =
  | RunEvent
  /**
   * One per key and target: `lagMs` runs from the event's time to the moment the target was in step;
   * `rounds` is how many looks the invocation took at its keys (1: in step at the first look).
   */
  | { readonly event: 'key-mirrored'; readonly target: TargetName; readonly key: string; readonly outcome: KeyOutcome; readonly lagMs?: number; readonly rounds: number };

export interface ReconcileOptions extends Omit<RunOptions, 'deadline' | 'cleanupInterruptedBefore' | 'beforeFirstChange' | 'onEvent' | 'deleteLimits'> {
  readonly deletionWindow: DeletionWindow;
  readonly onEvent?: (event: ReconcileEvent) => void;
}

export interface HeldDeletion {
  readonly target: TargetName;
  readonly key: string;
}

export interface ReconcileReport extends RunReport {
  /** Keys looked at. */
  readonly keys: number;
  /** Deletions the deletion window refused: left to the next full run and its guard. */
  readonly held: readonly HeldDeletion[];
  /** Keys a target cannot hold verbatim (each also a failure): no retry changes that. */
  readonly refused: readonly { readonly target: TargetName; readonly key: string }[];
}

/** Looks at a changed key at most this often; a key still changing after that is left to the next event or full run. */
const MAX_ROUNDS = 3;
/** Outcomes that wrote or deleted something: a key with one is looked at again. */
const CHANGES: ReadonlySet<KeyOutcome> = new Set(['copy', 'replace', 'delete']);
/** HEAD requests in flight while keys are looked at. */
const INSPECT_CONCURRENCY = 16;

/** One look at a key: the source's object (`undefined`: the source has no such key) and each target's. */
interface KeyState {
  readonly key: string;
  readonly source: ObjectInfo | undefined;
  readonly targets: ReadonlyMap<TargetName, ObjectInfo | undefined>;
  /** Targets that cannot hold the key verbatim, and why: never looked at (a HEAD would reach an alias), never written. */
  readonly refused: ReadonlyMap<TargetName, string>;
}

type KeyAction = TransferAction | DeleteAction;

/** Reconciles `keys` on every target; same report as a full run, plus the keys held by the deletion window. */
export async function reconcileKeys(source: SourceStore, targets: readonly MirrorTarget[], keys: readonly KeyToReconcile[], options: ReconcileOptions): Promise<ReconcileReport> {
  const now = options.now ?? Date.now;
  const startedMs = now();
  const emit = options.onEvent ?? (() => undefined);
  const dryRun = options.dryRun ?? false;
  const signal = options.signal ?? new AbortController().signal;
  emit({ event: 'run-start', provider: options.provider, source: source.label, targets: targets.map((target) => target.store.label), dryRun });

  const eventTimes = new Map<string, number | undefined>();
  for (const { key, eventTimeMs } of keys) {
    const known = eventTimes.get(key);
    eventTimes.set(key, known === undefined ? eventTimeMs : Math.min(known, eventTimeMs ?? known));
  }
  const sourceFailures: Failure[] = [];
  const outcomes = new Map<string, Map<TargetName, { outcome: KeyOutcome; atMs: number }>>();
  const settle = (key: string, target: TargetName, outcome: KeyOutcome): void => {
    let byTarget = outcomes.get(key);
    if (byTarget === undefined) outcomes.set(key, (byTarget = new Map()));
    byTarget.set(target, { outcome, atMs: now() });
  };

  const inspectionFailures: { target: TargetName; failure: Failure }[] = [];
  const inspect = async (names: readonly string[]): Promise<KeyState[]> => {
    const looked = new Map<string, KeyState>();
    await forEachBounded(names, INSPECT_CONCURRENCY, async (key) => {
      const state = await inspectKey(key, source, targets, signal, (target, failure) => {
        if (target === 'source') sourceFailures.push(failure);
        else inspectionFailures.push({ target, failure });
        emit({ event: 'failure', ...failure });
        for (const each of targets) if (target === 'source' || each.name === target) settle(key, each.name, 'failed');
      });
      if (state !== undefined) looked.set(key, state);
    });
    // In the order given, so which deletions a window grants does not depend on which HEAD answered first.
    return names.flatMap((key) => looked.get(key) ?? []);
  };

  const held: HeldDeletion[] = [];
  const refusedKeys: { target: TargetName; key: string }[] = [];
  const heldIds = new Set<string>();
  const hold = (target: TargetName, key: string): void => {
    held.push({ target, key });
    heldIds.add(`${target}\n${key}`);
    settle(key, target, 'held');
  };
  // A held deletion stays held for this invocation: later rounds do not ask the window again.
  const notHeld = (run: TargetRun, action: KeyAction): boolean => action.kind !== 'delete' || !heldIds.has(`${run.name}\n${action.key}`);
  // The transfers' options; deletions here are ruled by the window, never by a full run's limits.
  const context = transferContext(options, { source, signal, now, emit: trackTransfers, abortAt: undefined });

  const firstLook = await inspect([...eventTimes.keys()]);
  const runs: TargetRun[] = [];
  for (const target of targets) runs.push(await planTarget(target));
  const roundsTaken = dryRun ? 1 : await actInRounds();
  for (const key of eventTimes.keys()) {
    for (const target of targets) if (!outcomes.get(key)?.has(target.name)) settle(key, target.name, 'unchanged');
  }
  for (const [key, byTarget] of outcomes) {
    const eventTimeMs = eventTimes.get(key);
    for (const [target, { outcome, atMs }] of byTarget) {
      const mirrored = outcome !== 'failed' && outcome !== 'held';
      emit({ event: 'key-mirrored', target, key, outcome, ...(mirrored && eventTimeMs !== undefined ? { lagMs: Math.max(0, atMs - eventTimeMs) } : {}), rounds: roundsTaken });
    }
  }
  return finish();

  /** The first look's plan for one target, with the deletions the window grants now (a dry run only asks). */
  async function planTarget(target: MirrorTarget): Promise<TargetRun> {
    const plan = planKeys(firstLook, target.name);
    const granted = await options.deletionWindow.grant(target.name, plan.deletions.length, !dryRun, signal);
    const refused = plan.deletions.length - granted;
    const run = new TargetRun(target, {
      ...plan,
      deleteVerdict: refused === 0
        ? { allowed: true }
        : { allowed: false, reason: `${refused} of ${plan.deletions.length} deletion(s) are beyond the event deletion window (${options.deletionWindow.rule}): held for the next full run and its guard`, setting: options.deletionWindow.setting },
    }, firstTransferMode(target.store, options), undefined);
    for (const { failure } of inspectionFailures.filter((entry) => entry.target === target.name)) {
      run.failed += 1;
      run.failures.push(failure);
    }
    for (const refusal of plan.refused) {
      const failure: Failure = { target: run.name, operation: 'copy', key: refusal.key, message: `not mirrored: ${refusal.reason}` };
      run.failed += 1;
      run.failures.push(failure);
      emit({ event: 'failure', ...failure });
      settle(refusal.key, run.name, 'failed');
      refusedKeys.push({ target: run.name, key: refusal.key });
    }
    emitPlan(run, emit);
    for (const action of plan.deletions.slice(granted)) hold(run.name, action.key);
    if (refused > 0 && !dryRun) recordHeld(run, refused);
    return run;
  }

  /** Acts, looks again at what changed, and acts again until the keys are in step (at most MAX_ROUNDS); resolves with the rounds taken. */
  async function actInRounds(): Promise<number> {
    let round = 1;
    let pending = actionsOf(firstLook, runs, notHeld);
    while (pending.length > 0 && !signal.aborted) {
      await executeRound(pending, round === 1 ? undefined : options.deletionWindow);
      // Look again at what was changed: a worker that wrote an older version, or a full run that copied
      // a key just deleted, finds it here and acts again.
      const changed = pending.map((entry) => entry.key).filter((key) => [...(outcomes.get(key)?.values() ?? [])].some((entry) => CHANGES.has(entry.outcome)));
      pending = actionsOf(await inspect(changed), runs, notHeld);
      if (round === MAX_ROUNDS) {
        for (const entry of pending) for (const [run] of entry.actions) recordStillChanging(run, entry.key);
        break;
      }
      round += 1;
    }
    return round;
  }

  function recordStillChanging(run: TargetRun, key: string): void {
    const failure: Failure = { target: run.name, operation: 'copy', key, message: `the key changed at the source during each of ${MAX_ROUNDS} rounds; the next event or full run mirrors it` };
    run.failed += 1;
    run.failures.push(failure);
    emit({ event: 'failure', ...failure });
    settle(key, run.name, 'failed');
  }

  /** One failure per target says how many deletions the window held (a worker does not retry for it: see `retryableFailures`). */
  function recordHeld(run: TargetRun, refused: number): void {
    run.defer('delete-guard', refused);
    const heldCount = held.filter((entry) => entry.target === run.name).length;
    const failure: Failure = { target: run.name, operation: 'delete', message: `held ${heldCount} deletion(s) beyond the event deletion window (${options.deletionWindow.rule}): the next full run decides about them, behind its own guard` };
    const earlier = run.failures.findIndex((entry) => entry.operation === 'delete' && entry.key === undefined);
    if (earlier >= 0) run.failures.splice(earlier, 1, failure);
    else run.failures.push(failure);
    emit({ event: 'failure', ...failure });
  }

  function trackTransfers(event: RunEvent): void {
    if (event.event === 'transferred') settle(event.key, event.target, event.action);
    else if (event.event === 'failure' && event.key !== undefined && event.target !== 'source') settle(event.key, event.target, 'failed');
    emit(event);
  }

  async function executeRound(pending: readonly PendingKey[], window: DeletionWindow | undefined): Promise<void> {
    for (const run of runs) {
      const deletions = pending.flatMap((entry) => (entry.actions.get(run)?.kind === 'delete' ? [entry.key] : []));
      if (deletions.length > 0) await deleteWithinWindow(run, deletions, window);
    }
    const transfers = pending
      .map((entry) => ({ key: entry.key, actions: [...entry.actions].filter((pair): pair is [TargetRun, TransferAction] => pair[1].kind !== 'delete') }))
      .filter((entry) => entry.actions.length > 0);
    await forEachBounded(transfers, options.concurrency ?? 16, async (entry) => {
      // A target found down (credentials refused, bucket gone) is not written to again in this invocation.
      for (const [run, action] of entry.actions) if (run.down !== undefined) run.deferTransfer(action, 'target-down', emit);
      const live = entry.actions.filter(([run]) => run.down === undefined);
      if (live.length > 0) await transferOne(entry.key, live, context);
    });
  }

  /** Deletes keys the source was just seen without; later rounds take them from the window too. */
  async function deleteWithinWindow(run: TargetRun, deletions: readonly string[], window: DeletionWindow | undefined): Promise<void> {
    const granted = window === undefined ? deletions.length : await window.grant(run.name, deletions.length, true, signal);
    for (const key of deletions.slice(granted)) hold(run.name, key);
    if (granted < deletions.length) recordHeld(run, deletions.length - granted);
    const allowed = deletions.slice(0, granted);
    if (allowed.length === 0) return;
    const gone = new Set(await deleteKeys(run, allowed, signal, emit));
    for (const key of allowed) settle(key, run.name, gone.has(key) ? 'delete' : 'failed');
  }

  function finish(): ReconcileReport {
    const finishedMs = now();
    const reports: TargetReport[] = runs.map((run) => targetReport(run, dryRun, finishedMs - startedMs, options.failOnArchived ?? false));
    for (const report of reports) {
      emit({
        event: 'target-end', target: report.target, copied: report.copied, replaced: report.replaced, deleted: report.deleted, unchanged: report.unchanged,
        failed: report.failed, deferred: report.deferred, deferredBy: report.deferredBy, archived: report.archived.count, bytes: report.bytesStreamed + report.bytesCopiedServerSide, durationMs: report.durationMs, complete: report.complete,
      });
    }
    const complete = sourceFailures.length === 0 && reports.every((report) => report.complete);
    const failureTotal = sourceFailures.length + reports.reduce((sum, report) => sum + report.failures.length, 0);
    emit({ event: 'run-end', complete, failures: failureTotal, durationMs: finishedMs - startedMs });
    const present = firstLook.filter((state) => state.source !== undefined);
    return {
      provider: options.provider,
      dryRun,
      source: { store: source.label, objects: present.length, bytes: present.reduce((sum, state) => sum + (state.source?.size ?? 0), 0) },
      startedAt: new Date(startedMs).toISOString(),
      durationMs: finishedMs - startedMs,
      complete,
      targets: reports,
      failures: sourceFailures,
      keys: eventTimes.size,
      held,
      refused: refusedKeys,
    };
  }
}

/** A key and what each target needs done to it. */
interface PendingKey {
  readonly key: string;
  readonly actions: ReadonlyMap<TargetRun, KeyAction>;
}

/** What a look at `key` found; `undefined` when the source could not be asked (then no target is touched). */
async function inspectKey(
  key: string,
  source: SourceStore,
  targets: readonly MirrorTarget[],
  signal: AbortSignal,
  onFailure: (target: TargetName | 'source', failure: Failure) => void,
): Promise<KeyState | undefined> {
  let sourceObject: ObjectInfo | undefined;
  try {
    sourceObject = objectOfHead(key, await source.head(key, signal));
  } catch (error) {
    if (!(error instanceof StoreError && error.status === 404)) {
      onFailure('source', { target: 'source', operation: 'head', key, message: `not reconciled: ${describeError(error)}` });
      return undefined;
    }
  }
  const found = new Map<TargetName, ObjectInfo | undefined>();
  const refused = new Map<TargetName, string>();
  await Promise.all(targets.map(async (target) => {
    const problem = target.store.keyProblem(key);
    if (problem !== undefined) {
      refused.set(target.name, problem);
      return;
    }
    try {
      found.set(target.name, objectOfHead(key, await target.store.head(key, signal)));
    } catch (error) {
      if (error instanceof StoreError && error.status === 404) {
        found.set(target.name, undefined);
        return;
      }
      onFailure(target.name, { target: target.name, operation: 'head', key, message: `not reconciled: ${describeError(error)}` });
    }
  }));
  return { key, source: sourceObject, targets: found, refused };
}

/**
 * What `target` needs done to a key, decided as a full run decides (`actionForKey`); `undefined` when it
 * is in step or could not be looked at. The HEAD gave the recorded source ETag, so no copy record is needed.
 */
function actionFor(state: KeyState, target: TargetName): KeyAction | undefined {
  if (!state.targets.has(target)) return undefined;
  return actionForKey(state.key, state.source, state.targets.get(target));
}

/** The first look's plan for one target, as a full run's report shows plans (its verdict is set by the caller). */
function planKeys(states: readonly KeyState[], target: TargetName): Omit<Plan, 'deleteVerdict'> {
  const transfers: TransferAction[] = [];
  const deletions: DeleteAction[] = [];
  let unchanged = 0;
  for (const state of states) {
    const action = actionFor(state, target);
    if (action === undefined) {
      if (state.targets.has(target) && state.source !== undefined) unchanged += 1;
    } else if (action.kind === 'delete') deletions.push(action);
    else transfers.push(action);
  }
  return {
    transfers,
    // A per-key look does not read storage classes: an archived object's GET fails and is reported then.
    archived: [],
    refused: states.flatMap((state) => {
      const reason = state.refused.get(target);
      return state.source === undefined || reason === undefined ? [] : [{ key: state.key, reason }];
    }),
    deletions,
    unchanged,
    sourceObjects: states.filter((state) => state.source !== undefined).length,
    targetObjects: states.filter((state) => state.targets.get(target) !== undefined).length,
  };
}

function actionsOf(states: readonly KeyState[], runs: readonly TargetRun[], keep: (run: TargetRun, action: KeyAction) => boolean): PendingKey[] {
  const pending: PendingKey[] = [];
  for (const state of states) {
    const actions = new Map<TargetRun, KeyAction>();
    for (const run of runs) {
      const action = actionFor(state, run.name);
      if (action !== undefined && keep(run, action)) actions.set(run, action);
    }
    if (actions.size > 0) pending.push({ key: state.key, actions });
  }
  return pending;
}

/**
 * The failures a retry may cure: all but the one keyless "held" entry a target gets when the deletion
 * window refused its deletions, and keys a target cannot hold verbatim.
 */
export function retryableFailureList(report: ReconcileReport): Failure[] {
  const heldTargets = new Set<string>(report.held.map((held) => held.target));
  const refused = new Set(report.refused.map((entry) => `${entry.target}\n${entry.key}`));
  const held = (failure: Failure): boolean => heldTargets.has(failure.target) && failure.operation === 'delete' && failure.key === undefined;
  const cannotHold = (failure: Failure): boolean => failure.key !== undefined && refused.has(`${failure.target}\n${failure.key}`);
  return [...report.failures, ...report.targets.flatMap((target) => target.failures.filter((failure) => !held(failure) && !cannotHold(failure)))];
}
