import type { Action, DeleteAction, DeleteVerdict, ObjectInfo, Plan, ReplaceReason, TransferAction } from './types.ts';

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
 * Why `target` no longer mirrors `source`, or `undefined` when it still does.
 *
 * - A different size always means replace.
 * - A target that recorded its source's ETag (Azure returns metadata in listings) is current exactly
 *   when that ETag still matches; timestamps are then ignored, so clock skew cannot cause re-copies.
 * - Otherwise (OCI listings carry no metadata; copies made by the old tool record nothing), the target
 *   is stale when the source was modified in a later second than the target was written.
 */
export function replaceReason(source: ObjectInfo, target: ObjectInfo): ReplaceReason | undefined {
  if (source.size !== target.size) return { why: 'size', sourceSize: source.size, targetSize: target.size };
  const recorded = target.recordedSource;
  if (recorded !== undefined) {
    return recorded.etag === source.etag ? undefined : { why: 'source-etag', sourceEtag: source.etag, recordedEtag: recorded.etag };
  }
  if (wholeSeconds(source.lastModifiedMs) > wholeSeconds(target.lastModifiedMs)) {
    return { why: 'source-newer', sourceModifiedMs: source.lastModifiedMs, targetModifiedMs: target.lastModifiedMs };
  }
  return undefined;
}

/**
 * The plan that makes `target` an exact mirror of `source`: pure, no I/O.
 * Listings may come in any order; keys are compared byte-exact.
 */
export function planMirror(source: Iterable<ObjectInfo>, target: Iterable<ObjectInfo>, limits: DeleteLimits = DEFAULT_DELETE_LIMITS): Plan {
  const targetByKey = new Map<string, ObjectInfo>();
  for (const object of target) targetByKey.set(object.key, object);
  const targetObjects = targetByKey.size;

  const transfers: TransferAction[] = [];
  let unchanged = 0;
  let sourceObjects = 0;
  for (const object of source) {
    sourceObjects += 1;
    const existing = targetByKey.get(object.key);
    if (existing === undefined) {
      transfers.push({ kind: 'copy', key: object.key, source: object });
      continue;
    }
    targetByKey.delete(object.key);
    const reason = replaceReason(object, existing);
    if (reason === undefined) unchanged += 1;
    else transfers.push({ kind: 'replace', key: object.key, source: object, target: existing, reason });
  }

  const deletions: DeleteAction[] = [];
  for (const leftover of targetByKey.values()) deletions.push({ kind: 'delete', key: leftover.key, target: leftover });

  return {
    transfers,
    deletions,
    unchanged,
    sourceObjects,
    targetObjects,
    deleteVerdict: deleteGuard({ deletions: deletions.length, sourceObjects, targetObjects }, limits),
  };
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
  }
}
