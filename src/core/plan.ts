import type { ObjectHead } from '../stores/store.ts';
import { compareUtf8 } from './listings.ts';
import type { Action, DeleteAction, DeleteVerdict, KeyRefusal, ObjectInfo, Plan, ReplaceReason, TransferAction } from './types.ts';

/** Limits on what one run may delete; see `deleteGuard`. */
export interface DeleteLimits {
  /** Most deletions one run may make (default 1000). */
  readonly maxDeleteCount: number;
  /** Most deletions one run may make, as a percentage of the target's objects (default 50). */
  readonly maxDeletePercent: number;
  /** An empty source may empty a non-empty target (default false: an empty source listing deletes nothing). */
  readonly allowEmptySource: boolean;
}

export const DEFAULT_DELETE_LIMITS: DeleteLimits = { maxDeleteCount: 1000, maxDeletePercent: 50, allowEmptySource: false };

const MS_PER_SECOND = 1000;

/** Listings from different services carry different precision; compare in whole seconds, the coarsest any of them gives. */
function wholeSeconds(ms: number): number {
  return Math.floor(ms / MS_PER_SECOND);
}

/**
 * Why `target` no longer mirrors `source`, or `undefined` when it still does: the one decision, shared
 * by full runs and per-key work.
 *
 * - A different size always means replace.
 * - A target that recorded its source's ETag (Azure listings return metadata; for OCI the copy record
 *   or a HEAD supplies it) is current exactly when that ETag still matches; timestamps are then
 *   ignored, so neither clock skew nor an overwrite in the same second can mislead it. Where it also
 *   recorded the source's LastModified, a source modified in a later second with the same ETag had its
 *   headers or metadata changed (a CopyObject onto itself): replaced.
 * - A target whose source is not known yet (`provenance: 'unknown'`) is `unverified`: the runner looks
 *   (HEAD) and asks again; a caller that does not look copies it, which is never wrong.
 * - A target rewritten by someone else since our copy (`provenance: 'rewritten'`) is replaced.
 * - Otherwise (a copy by the old tool, which recorded nothing), the target is stale when the source was
 *   modified in a later second than the target was written.
 */
export function replaceReason(source: ObjectInfo, target: ObjectInfo): ReplaceReason | undefined {
  if (source.size !== target.size) return { why: 'size', sourceSize: source.size, targetSize: target.size };
  const recorded = target.recordedSource;
  if (recorded !== undefined) {
    if (recorded.etag !== source.etag) return { why: 'source-etag', sourceEtag: source.etag, recordedEtag: recorded.etag };
    if (recorded.lastModifiedMs !== undefined && wholeSeconds(source.lastModifiedMs) > wholeSeconds(recorded.lastModifiedMs)) {
      return { why: 'source-metadata', sourceModifiedMs: source.lastModifiedMs, recordedModifiedMs: recorded.lastModifiedMs };
    }
    return undefined;
  }
  if (target.provenance === 'unknown') return { why: 'unverified' };
  if (target.provenance === 'rewritten') return { why: 'target-rewritten' };
  if (wholeSeconds(source.lastModifiedMs) > wholeSeconds(target.lastModifiedMs)) {
    return { why: 'source-newer', sourceModifiedMs: source.lastModifiedMs, targetModifiedMs: target.lastModifiedMs };
  }
  return undefined;
}

/**
 * What one key needs at a target, from what each side holds (`undefined`: no such key), or `undefined`
 * when the target mirrors it: the planner's rule for one pair, used as is by the per-key reconcile.
 */
export function actionForKey(key: string, source: ObjectInfo | undefined, target: ObjectInfo | undefined): Action | undefined {
  if (source === undefined) return target === undefined ? undefined : { kind: 'delete', key, target };
  if (target === undefined) return { kind: 'copy', key, source };
  const reason = replaceReason(source, target);
  return reason === undefined ? undefined : { kind: 'replace', key, source, target, reason };
}

/** An object as a HEAD shows it: what a listing with metadata shows, so `replaceReason` decides it as it decides a listed one. */
export function objectOfHead(key: string, head: ObjectHead): ObjectInfo {
  return {
    key,
    size: head.size,
    lastModifiedMs: head.lastModifiedMs,
    etag: head.etag,
    ...(head.recordedSource === undefined ? {} : { recordedSource: head.recordedSource }),
  };
}

/**
 * Plans one target while the two listings arrive, in any order and interleaving: each object is
 * matched against the other side's objects not yet matched, so only those (and the actions) are held.
 * When both listings come in key order, as stores list, that is about a page per side, however
 * large the bucket. Keys are compared byte-exact. Pure: no I/O.
 */
export class MirrorPlanner {
  readonly #limits: DeleteLimits;
  readonly #keyProblem: (key: string) => string | undefined;
  readonly #onMatch: ((source: ObjectInfo, target: ObjectInfo, reason: ReplaceReason | undefined) => void) | undefined;
  readonly #refused: KeyRefusal[] = [];
  /** Source objects the target has not listed yet: copies, unless the target lists them later. */
  readonly #unmatchedSource = new Map<string, ObjectInfo>();
  /** Target objects the source has not listed yet: deletions, unless the source lists them later. */
  readonly #unmatchedTarget = new Map<string, ObjectInfo>();
  readonly #replacements: TransferAction[] = [];
  /** Keys archived at the source that the target lacks or holds in another version. */
  readonly #archived: string[] = [];
  #unchanged = 0;
  #sourceObjects = 0;
  #targetObjects = 0;

  /**
   * `keyProblem` says why the target cannot hold a key verbatim (`TargetStore.keyProblem`); such keys
   * are refused. `onMatch` sees every key listed on both sides, with the decision (verify checks more).
   */
  constructor(
    limits: DeleteLimits = DEFAULT_DELETE_LIMITS,
    keyProblem: (key: string) => string | undefined = () => undefined,
    onMatch?: (source: ObjectInfo, target: ObjectInfo, reason: ReplaceReason | undefined) => void,
  ) {
    this.#limits = limits;
    this.#keyProblem = keyProblem;
    this.#onMatch = onMatch;
  }

  addSource(object: ObjectInfo): void {
    this.#sourceObjects += 1;
    const problem = this.#keyProblem(object.key);
    if (problem !== undefined) {
      this.#refused.push({ key: object.key, reason: problem });
      return;
    }
    const existing = this.#unmatchedTarget.get(object.key);
    if (existing === undefined) this.#unmatchedSource.set(object.key, object);
    else {
      this.#unmatchedTarget.delete(object.key);
      this.#compare(object, existing);
    }
  }

  addTarget(object: ObjectInfo): void {
    this.#targetObjects += 1;
    // Only an emulator lists such a name (Azurite keeps a trailing dot): it is neither a copy to trust nor an extra to delete.
    if (this.#keyProblem(object.key) !== undefined) return;
    const source = this.#unmatchedSource.get(object.key);
    if (source === undefined) this.#unmatchedTarget.set(object.key, object);
    else {
      this.#unmatchedSource.delete(object.key);
      this.#compare(source, object);
    }
  }

  /** Objects listed on one side and not (yet) on the other: what this planner holds besides its replacements. */
  get unmatched(): number {
    return this.#unmatchedSource.size + this.#unmatchedTarget.size;
  }

  /**
   * Takes out the transfers that are certain before the listings end, so a caller can start (or
   * enqueue) them and the planner does not hold them: every replacement, and every source object the
   * target's listing has passed in both key orders (`targetListedUpTo`, its last key so far) or that
   * it can no longer list (`targetFinished`). A target listed out of order might still list a key
   * taken here: it then plans that key's deletion, which `Plan.confirmDeletions` checks at the source.
   */
  takeSettled(targetListedUpTo: string | undefined, targetFinished: boolean): TransferAction[] {
    const settled = this.#replacements.splice(0);
    if (!targetFinished && targetListedUpTo === undefined) return settled;
    for (const [key, object] of this.#unmatchedSource) {
      if (targetFinished || (key < targetListedUpTo! && compareUtf8(key, targetListedUpTo!) < 0)) {
        this.#unmatchedSource.delete(key);
        // Archived at the source: nothing to copy, reported with the plan's archived keys.
        if (object.archived) this.#archived.push(key);
        else settled.push({ kind: 'copy', key, source: object });
      }
    }
    return settled;
  }

  /** The plan, once both listings are complete: what is still unmatched is copied or deleted. */
  finish(): Plan {
    const transfers: TransferAction[] = [...this.#replacements];
    const archived = [...this.#archived];
    for (const object of this.#unmatchedSource.values()) {
      if (object.archived) archived.push(object.key);
      else transfers.push({ kind: 'copy', key: object.key, source: object });
    }
    const deletions: DeleteAction[] = [];
    for (const object of this.#unmatchedTarget.values()) deletions.push({ kind: 'delete', key: object.key, target: object });
    const counts = { sourceObjects: this.#sourceObjects, targetObjects: this.#targetObjects };
    return {
      transfers,
      refused: this.#refused,
      deletions,
      archived,
      unchanged: this.#unchanged,
      ...counts,
      deleteVerdict: deleteGuard({ deletions: deletions.length, ...counts }, this.#limits),
    };
  }

  #compare(source: ObjectInfo, target: ObjectInfo): void {
    const action = actionForKey(source.key, source, target);
    this.#onMatch?.(source, target, action?.kind === 'replace' ? action.reason : undefined);
    if (action === undefined) this.#unchanged += 1;
    // The source cannot serve the new bytes: the target keeps what it has.
    else if (source.archived) this.#archived.push(source.key);
    else if (action.kind !== 'delete') this.#replacements.push(action);
  }
}

/** The plan that makes `target` an exact mirror of `source`, from complete listings: pure, no I/O. */
export function planMirror(
  source: Iterable<ObjectInfo>,
  target: Iterable<ObjectInfo>,
  limits: DeleteLimits = DEFAULT_DELETE_LIMITS,
  keyProblem?: (key: string) => string | undefined,
): Plan {
  const planner = new MirrorPlanner(limits, keyProblem);
  for (const object of target) planner.addTarget(object);
  for (const object of source) planner.addSource(object);
  return planner.finish();
}

/** Whether a plan's deletions may run: a guard against a bad source listing wiping a target. */
export function deleteGuard(counts: { deletions: number; sourceObjects: number; targetObjects: number }, limits: DeleteLimits): DeleteVerdict {
  const { deletions, sourceObjects, targetObjects } = counts;
  if (deletions === 0) return { allowed: true };
  if (sourceObjects === 0 && !limits.allowEmptySource) {
    return {
      allowed: false,
      reason: `the source listing is empty while the target holds ${targetObjects} objects; refusing to empty the target`,
      setting: 'SYNC_ALLOW_EMPTY_SOURCE',
    };
  }
  if (deletions > limits.maxDeleteCount) {
    return {
      allowed: false,
      reason: `the plan deletes ${deletions} objects, more than the ${limits.maxDeleteCount} one run may delete`,
      setting: 'SYNC_MAX_DELETE_COUNT',
    };
  }
  const percent = (deletions / targetObjects) * 100;
  // An intentionally empty source means emptying the target: only the count limit still applies.
  const emptyingOnPurpose = sourceObjects === 0 && limits.allowEmptySource;
  if (percent > limits.maxDeletePercent && !emptyingOnPurpose) {
    return {
      allowed: false,
      reason: `the plan deletes ${deletions} of the target's ${targetObjects} objects (${percent.toFixed(1)}%), more than the ${limits.maxDeletePercent}% one run may delete`,
      setting: 'SYNC_MAX_DELETE_PERCENT',
    };
  }
  return { allowed: true };
}

/** The reason of an action as a dry run prints it: `copy missing`, `replace size 10 → 12`, `delete not in source`. */
export function describeAction(action: Action): string {
  switch (action.kind) {
    case 'copy':
      return 'copy missing';
    case 'delete':
      return 'delete not in source';
    case 'replace':
      return `replace ${describeReplaceReason(action.reason)}`;
  }
}

function describeReplaceReason(reason: ReplaceReason): string {
  switch (reason.why) {
    case 'size':
      return `size ${reason.targetSize} → ${reason.sourceSize}`;
    case 'source-newer':
      return 'source newer';
    case 'source-etag':
      return 'source etag changed';
    case 'source-metadata':
      return 'source metadata changed';
    case 'unverified':
      return 'unverified';
    case 'target-rewritten':
      return 'target rewritten elsewhere';
  }
}
