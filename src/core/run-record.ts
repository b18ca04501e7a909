/**
 * A run's status record: what the planning run found and did, what it put on the queue, and what the
 * queue workers have finished. Pure: every change is a function from the record read to the record
 * written, so the store (run-status.ts) can apply it under an ETag and retry it on a lost race.
 * A run is complete when its planning run and its last piece are, with nothing failed, deferred or poisoned.
 */
import type { RunReport, TargetReport } from './report.ts';
import type { Failure, ProviderChoice, TargetName } from './types.ts';

export type RunState = 'running' | 'complete' | 'incomplete';

/**
 * Counts of one target, summed over the planning run (inline work, deletions) and the finished pieces;
 * `unchanged` counts objects found in step by the plan or by a worker when it looked.
 */
export interface TargetProgress extends Pick<TargetReport, 'copied' | 'replaced' | 'deleted' | 'unchanged' | 'failed' | 'deferred'> {
  /** Keys put on the queue, and in how many messages. */
  readonly enqueued: number;
  readonly messages: number;
  /** Object bytes written (streamed or pulled server-side). */
  readonly bytes: number;
}

/** Failures kept in the record, so a reader sees which keys; the counts above count them all. */
export const MAX_RECORDED_FAILURES = 100;

export interface RunRecord {
  readonly v: 1;
  readonly id: string;
  readonly provider: ProviderChoice;
  /** What started the run: `timer`, `http` or `cli`. */
  readonly trigger: string;
  readonly createdAt: string;
  readonly updatedAt: string;
  readonly state: RunState;
  /** Set when the state left `running`. */
  readonly finishedAt?: string;
  readonly planning: {
    /** The planning run has ended (listed, planned, enqueued, ran its inline work and deletions). */
    readonly done: boolean;
    /** Its own report said complete, but for the transfers it enqueued. */
    readonly complete?: boolean;
    readonly stoppedEarly?: string;
    /** Why it ended without a report (an error thrown before one existed). */
    readonly error?: string;
  };
  readonly pieces: {
    /** Messages enqueued; known once planning is done. */
    readonly enqueued: number;
    /** Pieces whose worker finished, by number. */
    readonly finished: readonly number[];
    /** Pieces that failed on their last attempt: the host moved them to the poison queue. */
    readonly poisoned: readonly number[];
  };
  readonly targets: Partial<Record<TargetName, TargetProgress>>;
  /** The first failures (planning run and workers), at most MAX_RECORDED_FAILURES. */
  readonly failures: readonly Failure[];
  /** The planning run's report (of the whole run when nothing was enqueued). */
  readonly report?: RunReport;
  /** A queued run (`POST /api/sync` with the host storage): the delivery of its queue message that runs it. */
  readonly delivery?: RunDelivery;
}

/** One delivery of a queued run's message, as the queue trigger sees it. */
export interface RunDelivery {
  /** The queue message's id (a copy of the message has another). */
  readonly message: string;
  readonly dequeueCount: number;
  /** The host moves the message to the poison queue if this attempt fails: the run then ends with its error. */
  readonly lastAttempt: boolean;
  readonly startedAt: string;
  /** Why this attempt failed before the run enqueued anything; the next delivery runs it again. */
  readonly error?: string;
}

/**
 * What a delivery of a queued run's message does:
 * - `start`: run it (the record now names this delivery);
 * - `ended`: the run has ended already (a copy of the message, or a late redelivery): nothing to do;
 * - `held`: another delivery is running it;
 * - `abandoned`: an earlier attempt of this same message started it and stopped without ending it
 *   (its instance was stopped): it may have enqueued pieces, so it is not run again but ended as incomplete.
 */
export type RunClaim = 'start' | 'ended' | 'held' | 'abandoned';

/** What a worker did with one piece. */
export interface PieceOutcome {
  readonly piece: number;
  readonly target: TargetName;
  readonly poisoned: boolean;
  readonly counts: Omit<TargetProgress, 'enqueued' | 'messages'>;
  readonly failures: readonly Failure[];
}

const ZERO: TargetProgress = { enqueued: 0, messages: 0, copied: 0, replaced: 0, deleted: 0, unchanged: 0, failed: 0, deferred: 0, bytes: 0 };

/** A sortable, unguessable run id: `20261203T074500Z-3f9c2a1b`. */
export function newRunId(nowMs: number, random: string): string {
  return `${new Date(nowMs).toISOString().replace(/[-:]|\.\d+/g, '')}-${random}`;
}

export function newRunRecord(id: string, provider: ProviderChoice, trigger: string, nowMs: number): RunRecord {
  const at = new Date(nowMs).toISOString();
  return { v: 1, id, provider, trigger, createdAt: at, updatedAt: at, state: 'running', planning: { done: false }, pieces: { enqueued: 0, finished: [], poisoned: [] }, targets: {}, failures: [] };
}

/** The planning run ended with `report`, after enqueuing `pieces` messages (`enqueued`: per target). */
export function recordPlanning(record: RunRecord, ended: { report?: RunReport; error?: string; pieces: number; enqueued: ReadonlyMap<TargetName, { keys: number; messages: number }> }, nowMs: number): RunRecord {
  const targets = { ...record.targets };
  for (const target of ended.report?.targets ?? []) {
    const queued = ended.enqueued.get(target.target);
    // Enqueued keys show as deferred in the planning report: the workers account for them.
    targets[target.target] = add(targets[target.target], {
      enqueued: queued?.keys ?? 0,
      messages: queued?.messages ?? 0,
      copied: target.copied,
      replaced: target.replaced,
      deleted: target.deleted,
      unchanged: target.unchanged,
      failed: target.failed,
      deferred: target.deferred - (queued?.keys ?? 0),
      bytes: target.bytesStreamed + target.bytesCopiedServerSide,
    });
  }
  const failures = [...(ended.report?.failures ?? []), ...(ended.report?.targets.flatMap((target) => target.failures) ?? [])];
  const planning = {
    done: true,
    complete: ended.report !== undefined && ended.error === undefined && failures.length === 0 && Object.values(targets).every((target) => target.failed === 0 && target.deferred === 0),
    ...(ended.report?.stoppedEarly === undefined ? {} : { stoppedEarly: ended.report.stoppedEarly }),
    ...(ended.error === undefined ? {} : { error: ended.error }),
  };
  return settle({
    ...record,
    planning,
    pieces: { ...record.pieces, enqueued: ended.pieces },
    targets,
    failures: [...record.failures, ...failures].slice(0, MAX_RECORDED_FAILURES),
    ...(ended.report === undefined ? {} : { report: ended.report }),
  }, nowMs);
}

/** A worker finished a piece (or gave up on it). Applying the same piece twice changes nothing: a message may be delivered twice. */
export function recordPiece(record: RunRecord, outcome: PieceOutcome, nowMs: number): RunRecord {
  if (record.pieces.finished.includes(outcome.piece) || record.pieces.poisoned.includes(outcome.piece)) return record;
  const pieces = outcome.poisoned
    ? { ...record.pieces, poisoned: [...record.pieces.poisoned, outcome.piece] }
    : { ...record.pieces, finished: [...record.pieces.finished, outcome.piece] };
  return settle({
    ...record,
    pieces,
    targets: { ...record.targets, [outcome.target]: add(record.targets[outcome.target], { ...outcome.counts, enqueued: 0, messages: 0 }) },
    failures: [...record.failures, ...outcome.failures].slice(0, MAX_RECORDED_FAILURES),
  }, nowMs);
}

/** A delivery of the run's queue message claims the run (applied under the record's ETag: one delivery wins). */
export function claimRun(record: RunRecord, delivery: Omit<RunDelivery, 'startedAt' | 'error'>, nowMs: number): { readonly record: RunRecord; readonly claim: RunClaim } {
  if (record.state !== 'running' || record.planning.done) return { record, claim: 'ended' };
  const earlier = record.delivery;
  if (earlier === undefined || earlier.error !== undefined) {
    const at = new Date(nowMs).toISOString();
    return { record: { ...record, updatedAt: at, delivery: { ...delivery, startedAt: at } }, claim: 'start' };
  }
  return { record, claim: earlier.message === delivery.message && delivery.dequeueCount > earlier.dequeueCount ? 'abandoned' : 'held' };
}

/** The delivery's attempt failed before the run enqueued anything: the run stays open for the next delivery. */
export function releaseRun(record: RunRecord, error: string, nowMs: number): RunRecord {
  if (record.delivery === undefined) return record;
  return { ...record, updatedAt: new Date(nowMs).toISOString(), delivery: { ...record.delivery, error } };
}

/** Pieces not yet finished or poisoned. */
export function piecesPending(record: RunRecord): number {
  return record.pieces.enqueued - record.pieces.finished.length - record.pieces.poisoned.length;
}

/** The state follows from the counts: running until the planning run and every piece ended. */
function settle(record: RunRecord, nowMs: number): RunRecord {
  const at = new Date(nowMs).toISOString();
  if (record.state !== 'running' || !record.planning.done || piecesPending(record) > 0) return { ...record, updatedAt: at };
  const clean = record.planning.complete === true && record.pieces.poisoned.length === 0 && Object.values(record.targets).every((target) => target.failed === 0 && target.deferred === 0);
  return { ...record, updatedAt: at, state: clean ? 'complete' : 'incomplete', finishedAt: at };
}

function add(into: TargetProgress | undefined, more: TargetProgress): TargetProgress {
  const base = into ?? ZERO;
  return {
    enqueued: base.enqueued + more.enqueued,
    messages: base.messages + more.messages,
    copied: base.copied + more.copied,
    replaced: base.replaced + more.replaced,
    deleted: base.deleted + more.deleted,
    unchanged: base.unchanged + more.unchanged,
    failed: base.failed + more.failed,
    deferred: base.deferred + more.deferred,
    bytes: base.bytes + more.bytes,
  };
}
