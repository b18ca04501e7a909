/**
 * Scenario 4 runs here, in a process of its own, so the peak RSS measured is the planner's and its
 * inputs' alone: `node planner-child.js <objects per side> <azure|oci>`.
 *
 * The listings are built the way a real run holds them: fresh objects with flat strings parsed from
 * text, one page at a time (not shared or concatenated strings, which would understate or overstate
 * memory). Prints one JSON line: `PlannerChildResult`.
 */
import { readFileSync } from 'node:fs';
import { PerformanceObserver, performance } from 'node:perf_hooks';
import process from 'node:process';
import { planMirror } from '../src/core/plan.ts';
import type { ObjectInfo } from '../src/core/types.ts';

/** `azure`: targets carry the recorded source ETag (Azure listings return metadata); `oci`: only timestamps. */
export type TargetShape = 'azure' | 'oci';

export interface PlannerChildResult {
  readonly objectsPerSide: number;
  readonly shape: TargetShape;
  readonly sourceObjects: number;
  readonly targetObjects: number;
  readonly planMs: number;
  readonly transfers: number;
  readonly deletions: number;
  readonly unchanged: number;
  /** Garbage-collection pauses during planning (run with --expose-gc so the inputs' garbage is collected before). */
  readonly gcDuringPlanMs: number;
  /** Live heap after the listings were built and a full collection: what the inputs themselves occupy. */
  readonly inputsHeapBytes: number;
  /** VmHWM after the listings were built, before planning (inputs alone). */
  readonly peakRssBeforePlanBytes: number;
  /** VmHWM after planning. */
  readonly peakRssAfterPlanBytes: number;
  /** For scale: a bare `Map` of the target's keys alone, built after the plan (the floor of any keyed comparison). */
  readonly bareTargetMapMs: number;
}

/** Objects per parsed page, as a listing arrives in pages. */
const PAGE = 10_000;
const SOURCE_SECONDS = Date.UTC(2025, 0, 1) / 1000;

/** Every 100th object differs: 40% of those by size, 30% by content (same size), 30% missing at the target; as many extra objects at the target keep both sides at N. */
function kind(index: number, count: number): 'same' | 'size' | 'content' | 'missing' | 'extra' {
  if (index >= count) return 'extra';
  if (index % 100 !== 0) return 'same';
  const bucket = (index / 100) % 10;
  if (bucket < 4) return 'size';
  if (bucket < 7) return 'content';
  return 'missing';
}

function missingCount(count: number): number {
  let missing = 0;
  for (let index = 0; index < count; index += 100) if (kind(index, count) === 'missing') missing += 1;
  return missing;
}

function keyOf(index: number): string {
  return `releases/${String(index % 997).padStart(3, '0')}/build-${String(index).padStart(7, '0')}/artifact-${index.toString(36)}.tar.gz`;
}

/** 32 hex digits like an MD5 ETag, distinct per object and salt; cheap, since a million are made per side. */
function etagOf(index: number, salt: number): string {
  return `${salt.toString(16)}${((index * 2654435761) >>> 0).toString(16).padStart(8, '0')}${index.toString(16).padStart(23, '0')}`;
}

function sizeOf(index: number): number {
  return 1024 + ((index * 7919) % 50_000_000);
}

function listing(count: number, side: 'source' | 'target', shape: TargetShape): ObjectInfo[] {
  const objects: ObjectInfo[] = [];
  const end = side === 'source' ? count : count + missingCount(count);
  for (let start = 0; start < end; start += PAGE) {
    // One page as text, then parsed: what a listing gives, a fresh object and flat strings per entry.
    const entries: string[] = [];
    for (let index = start; index < Math.min(end, start + PAGE); index += 1) {
      const difference = kind(index, count);
      if (side === 'source') {
        const modifiedMs = (SOURCE_SECONDS + (difference === 'content' ? 7200 : 0)) * 1000;
        entries.push(`{"key":"${keyOf(index)}","size":${sizeOf(index)},"lastModifiedMs":${modifiedMs},"etag":"${etagOf(index, difference === 'content' ? 2 : 1)}"}`);
        continue;
      }
      if (difference === 'missing') continue;
      const recorded = shape === 'azure' ? `,"recordedSource":{"etag":"${etagOf(index, 1)}","lastModifiedMs":${SOURCE_SECONDS * 1000}}` : '';
      entries.push(
        `{"key":"${keyOf(index)}","size":${sizeOf(index) + (difference === 'size' ? 1 : 0)},"lastModifiedMs":${(SOURCE_SECONDS + 3600) * 1000},"etag":"0x8DC${etagOf(index, 3).slice(0, 12).toUpperCase()}"${recorded}}`,
      );
    }
    for (const object of JSON.parse(`[${entries.join(',')}]`) as ObjectInfo[]) objects.push(object);
    // Collect the page texts as we go, so the peak RSS measured is the listings', not this generator's garbage.
    if ((start / PAGE) % 10 === 9) collectGarbage();
  }
  return objects;
}

/** A full collection when the child runs with --expose-gc (the benchmark starts it so); otherwise nothing. */
function collectGarbage(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

function peakRssBytes(): number {
  const kib = Number(/^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]);
  return Number.isFinite(kib) ? kib * 1024 : process.resourceUsage().maxRSS * 1024;
}

const objectsPerSide = Number(process.argv[2] ?? '1000000');
const shape: TargetShape = process.argv[3] === 'oci' ? 'oci' : 'azure';
const source = listing(objectsPerSide, 'source', shape);
const target = listing(objectsPerSide, 'target', shape);
collectGarbage();
const inputsHeapBytes = process.memoryUsage().heapUsed;
const before = peakRssBytes();

let gcDuringPlanMs = 0;
const gcObserver = new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) gcDuringPlanMs += entry.duration;
});
gcObserver.observe({ entryTypes: ['gc'] });
const started = performance.now();
const plan = planMirror(source, target);
const planMs = performance.now() - started;
// Observer callbacks run after the synchronous planning, on the next turns of the event loop.
await new Promise((resolve) => setTimeout(resolve, 50));
gcObserver.disconnect();

const peakRssAfterPlanBytes = peakRssBytes();
const bareStarted = performance.now();
const bare = new Map<string, ObjectInfo>();
for (const object of target) bare.set(object.key, object);
const bareTargetMapMs = performance.now() - bareStarted;

const result: PlannerChildResult = {
  objectsPerSide,
  shape,
  sourceObjects: plan.sourceObjects,
  targetObjects: plan.targetObjects,
  planMs,
  gcDuringPlanMs,
  inputsHeapBytes,
  transfers: plan.transfers.length,
  deletions: plan.deletions.length,
  unchanged: plan.unchanged,
  peakRssBeforePlanBytes: before,
  peakRssAfterPlanBytes,
  bareTargetMapMs,
};
process.stdout.write(`${JSON.stringify(result)}\n`);
