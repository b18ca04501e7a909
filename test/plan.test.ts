import { describe, expect, it } from 'vitest';
import { DEFAULT_DELETE_LIMITS, deleteGuard, describeAction, planMirror } from '../src/core/plan.ts';
import type { ObjectInfo } from '../src/core/types.ts';

const T0 = Date.parse('2026-01-01T00:00:00Z');
const object = (key: string, size: number, lastModifiedMs: number, extra: Partial<ObjectInfo> = {}): ObjectInfo => ({ key, size, lastModifiedMs, etag: `etag-${key}-${size}`, ...extra });

describe('planMirror', () => {
  it('copies an object the target does not have', () => {
    const plan = planMirror([object('a.zip', 10, T0)], []);
    expect(plan.transfers.map(describeAction)).toEqual(['copy missing']);
    expect(plan.transfers[0]!.key).toBe('a.zip');
  });

  it('replaces an object whose size differs, naming both sizes', () => {
    const plan = planMirror([object('a.zip', 12, T0)], [object('a.zip', 10, T0 + 60_000)]);
    expect(plan.transfers.map(describeAction)).toEqual(['replace size 10 → 12']);
  });

  it('replaces a same-size object whose source was modified in a later second than the copy', () => {
    const plan = planMirror([object('a.zip', 10, T0 + 5_000)], [object('a.zip', 10, T0 + 2_000)]);
    expect(plan.transfers.map(describeAction)).toEqual(['replace source newer']);
  });

  it('leaves alone a copy written after its source (a mirror made by the old tool)', () => {
    const source = [object('a.zip', 10, T0), object('b/c.exe', 2000, T0 + 1000)];
    const target = [object('a.zip', 10, T0 + 30_000), object('b/c.exe', 2000, T0 + 31_000)];
    const plan = planMirror(source, target);
    expect(plan.transfers).toEqual([]);
    expect(plan.deletions).toEqual([]);
    expect(plan.unchanged).toBe(2);
  });

  it('does not replace when source and copy fall in the same second (listings carry whole seconds)', () => {
    const plan = planMirror([object('a.zip', 10, T0 + 900)], [object('a.zip', 10, T0 + 100)]);
    expect(plan.transfers).toEqual([]);
  });

  it('trusts a recorded source ETag over timestamps, so clock skew causes no re-copy', () => {
    const source = object('a.zip', 10, T0 + 50_000, { etag: 'abc' });
    const target = object('a.zip', 10, T0, { recordedSource: { etag: 'abc' } });
    expect(planMirror([source], [target]).transfers).toEqual([]);
  });

  it('replaces when the recorded source ETag differs, even if the copy looks newer', () => {
    const source = object('a.zip', 10, T0, { etag: 'new' });
    const target = object('a.zip', 10, T0 + 50_000, { recordedSource: { etag: 'old' } });
    expect(planMirror([source], [target]).transfers.map(describeAction)).toEqual(['replace source etag changed']);
  });

  it('deletes target objects that are not in the source', () => {
    const plan = planMirror([object('keep', 1, T0), object('keep2', 1, T0)], [object('keep', 1, T0), object('keep2', 1, T0), object('gone', 1, T0)]);
    expect(plan.deletions.map(describeAction)).toEqual(['delete not in source']);
    expect(plan.deletions[0]!.key).toBe('gone');
    expect(plan.deleteVerdict).toEqual({ allowed: true });
  });

  it('compares keys byte-exact: case, unicode forms and trailing slashes are different keys', () => {
    const composed = 'caf\u00e9.txt';
    const decomposed = 'cafe\u0301.txt';
    const plan = planMirror([object(composed, 1, T0), object('Dir/', 0, T0)], [object(decomposed, 1, T0), object('dir/', 0, T0)], { ...DEFAULT_DELETE_LIMITS, maxDeletePercent: 100 });
    expect(plan.transfers.map((action) => action.key).sort()).toEqual(['Dir/', composed].sort());
    expect(plan.deletions.map((action) => action.key).sort()).toEqual(['dir/', decomposed].sort());
  });

  it('counts source and target objects and unchanged ones', () => {
    const plan = planMirror([object('a', 1, T0), object('b', 2, T0)], [object('a', 1, T0 + 5000)]);
    expect(plan).toMatchObject({ sourceObjects: 2, targetObjects: 1, unchanged: 1 });
  });
});

describe('deleteGuard', () => {
  it('refuses to empty a target when the source listing is empty', () => {
    const plan = planMirror([], [object('a', 1, T0), object('b', 1, T0)]);
    expect(plan.deleteVerdict).toMatchObject({ allowed: false, setting: 'SYNC_ALLOW_EMPTY_SOURCE' });
  });

  it('lets an intentionally empty source empty the target', () => {
    const plan = planMirror([], [object('a', 1, T0)], { ...DEFAULT_DELETE_LIMITS, allowEmptySource: true });
    expect(plan.deleteVerdict).toEqual({ allowed: true });
  });

  it('refuses more deletions than SYNC_MAX_DELETE_COUNT, giving the counts', () => {
    const verdict = deleteGuard({ deletions: 11, sourceObjects: 100, targetObjects: 111 }, { ...DEFAULT_DELETE_LIMITS, maxDeleteCount: 10 });
    expect(verdict).toMatchObject({ allowed: false, setting: 'SYNC_MAX_DELETE_COUNT' });
    expect(verdict.allowed ? '' : verdict.reason).toContain('11');
  });

  it('refuses deleting a larger share of the target than SYNC_MAX_DELETE_PERCENT', () => {
    const verdict = deleteGuard({ deletions: 6, sourceObjects: 4, targetObjects: 10 }, DEFAULT_DELETE_LIMITS);
    expect(verdict).toMatchObject({ allowed: false, setting: 'SYNC_MAX_DELETE_PERCENT' });
    expect(verdict.allowed ? '' : verdict.reason).toContain('6 of the target\'s 10');
  });

  it('allows deletions within both limits', () => {
    expect(deleteGuard({ deletions: 5, sourceObjects: 5, targetObjects: 10 }, DEFAULT_DELETE_LIMITS)).toEqual({ allowed: true });
  });
});
