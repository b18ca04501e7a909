/**
 * The delete guard of event-driven work: at most `limit` deletions per target within a rolling window,
 * however many events ask for them, so a mass delete at the source empties a target no faster than
 * a full run's guard (SYNC_MAX_DELETE_COUNT) allows. What the window refuses is held and reported;
 * the next full run decides about it behind its own guard. The counts live where every worker sees
 * them (a blob in the Functions host's storage, stores/azure-deletion-window.ts) or, without shared
 * storage, in this process for one invocation.
 */
import type { TargetName } from './types.ts';

export interface DeletionWindow {
  /**
   * Takes up to `count` deletions at `target` from what the window still allows and resolves with how
   * many were granted (0..count). A dry run (`take: false`) only says how many would be.
   */
  grant(target: TargetName, count: number, take: boolean, signal?: AbortSignal): Promise<number>;
  /** The rule, for messages: `1000 deletions per target in 3600 s (SYNC_MAX_DELETE_COUNT)`. */
  readonly rule: string;
  /** The setting to raise. */
  readonly setting: string;
}

/** Deletions counted per slot of the window: `{ "<slot start, epoch s>": count }`. */
export type WindowCounts = Readonly<Record<string, number>>;

export interface WindowLimits {
  readonly limit: number;
  readonly windowMs: number;
}

/** Slots per window: the window rolls in steps of a sixtieth of its length. */
const SLOTS = 60;

/** Counts still inside the window at `nowMs`, how many more it allows, and the counts after taking `count` of them (pure). */
export function admitDeletions(counts: WindowCounts, limits: WindowLimits, nowMs: number, count: number): { readonly granted: number; readonly counts: WindowCounts } {
  const slotMs = Math.max(1, Math.ceil(limits.windowMs / SLOTS / 1000)) * 1000;
  const oldest = nowMs - limits.windowMs;
  const kept: Record<string, number> = {};
  let used = 0;
  for (const [slot, slotCount] of Object.entries(counts)) {
    if (Number(slot) * 1000 + slotMs <= oldest) continue;
    kept[slot] = slotCount;
    used += slotCount;
  }
  const granted = Math.max(0, Math.min(count, limits.limit - used));
  if (granted > 0) {
    const slot = String(Math.floor(nowMs / slotMs) * (slotMs / 1000));
    kept[slot] = (kept[slot] ?? 0) + granted;
  }
  return { granted, counts: kept };
}

/** A window kept in this process: what one CLI invocation (or a host without shared storage) may delete. */
export function inProcessDeletionWindow(limits: WindowLimits, rule: string, setting: string, now: () => number = Date.now): DeletionWindow {
  const counts = new Map<TargetName, WindowCounts>();
  return {
    rule,
    setting,
    async grant(target, count, take) {
      const admitted = admitDeletions(counts.get(target) ?? {}, limits, now(), count);
      if (take) counts.set(target, admitted.counts);
      return admitted.granted;
    },
  };
}
