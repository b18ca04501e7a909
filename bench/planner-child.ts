/**
 * Scenario 4 runs here, in a process of its own, so the peak RSS measured is the planner's alone:
 * `node planner-child.js <objects per side> <azure|oci>`.
 *
 * The listings arrive as a real run receives them: in key order, in pages (1,000 objects for S3 and
 * OCI, 5,000 for Azure), each page parsed from text into fresh objects with flat strings. They go
 * through the run's own `planWhileListing`, which plans while the pages arrive. Planning time is what
 * planning adds: the time of that run less the time of making and reading the same pages without
 * planning (a real run spends that time waiting for the network), garbage collection of the planner's
 * own objects included. The memory is the whole process's. Prints one JSON line: `PlannerChildResult`.
 */
import { readFileSync } from 'node:fs';
import { PerformanceObserver, performance } from 'node:perf_hooks';
import process from 'node:process';
import { planWhileListing } from '../src/core/listings.ts';
import { DEFAULT_DELETE_LIMITS } from '../src/core/plan.ts';
import type { ObjectInfo } from '../src/core/types.ts';

/** `azure`: targets carry the recorded source ETag (Azure listings return metadata); `oci`: only timestamps. */
export type TargetShape = 'azure' | 'oci';

export interface PlannerChildResult {
  readonly objectsPerSide: number;
  readonly shape: TargetShape;
  readonly sourceObjects: number;
  readonly targetObjects: number;
  /** What planning adds: `listAndPlanMs` less `listOnlyMs`. */
  readonly planMs: number;
  /** Making, parsing and reading both sides' pages while planning them. */
  readonly listAndPlanMs: number;
  /** Making, parsing and reading the same pages without planning (after the planning run, so page making is warm: this errs towards a longer planning time). */
  readonly listOnlyMs: number;
  readonly transfers: number;
  readonly deletions: number;
  readonly unchanged: number;
  /** Garbage-collection pauses during the planning run (pages and planning). */
  readonly gcMs: number;
  /** The most objects held unmatched at once (copies and deletions found so far included). */
  readonly peakUnmatched: number;
  /** VmHWM of the process before any listing: Node itself, for scale. */
  readonly baselineRssBytes: number;
  /** VmHWM at the end: the figure judged. */
  readonly peakRssBytes: number;
  /** Live heap at the end, after a full collection, with the plan still held. */
  readonly heapWithPlanBytes: number;
}

/** Objects per page: S3 and OCI list 1,000 per request, Azure 5,000. */
const PAGE_SIZE = { source: 1000, azure: 5000, oci: 1000 } as const;
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

/** Keys ascend with the index, as a listing returns them. */
function keyOf(index: number): string {
  return `releases/${String(Math.floor(index / 1000)).padStart(4, '0')}/build-${String(index).padStart(7, '0')}/artifact-${index.toString(36)}.tar.gz`;
}

/** 32 hex digits like an MD5 ETag, distinct per object and salt; cheap, since a million are made per side. */
function etagOf(index: number, salt: number): string {
  return `${salt.toString(16)}${((index * 2654435761) >>> 0).toString(16).padStart(8, '0')}${index.toString(16).padStart(23, '0')}`;
}

function sizeOf(index: number): number {
  return 1024 + ((index * 7919) % 50_000_000);
}

/** One side's listing, a page at a time, each page made as text and parsed: fresh objects and flat strings per entry, as a listing gives. */
async function* pages(count: number, side: 'source' | 'target', shape: TargetShape): AsyncIterable<readonly ObjectInfo[]> {
  const end = side === 'source' ? count : count + missingCount(count);
  const pageSize = side === 'source' ? PAGE_SIZE.source : PAGE_SIZE[shape];
  for (let start = 0; start < end; start += pageSize) {
    const entries: string[] = [];
    for (let index = start; index < Math.min(end, start + pageSize); index += 1) {
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
    const page = JSON.parse(`[${entries.join(',')}]`) as ObjectInfo[];
    // A page arrives on a later turn of the event loop, as a response does.
    await new Promise((resolve) => setImmediate(resolve));
    yield page;
  }
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
const baselineRssBytes = peakRssBytes();

let gcMs = 0;
const gcObserver = new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) gcMs += entry.duration;
});
gcObserver.observe({ entryTypes: ['gc'] });
const started = performance.now();
const listed = await planWhileListing(
  { label: 'source', pages: () => pages(objectsPerSide, 'source', shape) },
  [{ name: shape, label: 'target', pages: () => pages(objectsPerSide, 'target', shape) }],
  DEFAULT_DELETE_LIMITS,
);
const listAndPlanMs = performance.now() - started;
// Observer callbacks run on later turns of the event loop.
await new Promise((resolve) => setTimeout(resolve, 50));
gcObserver.disconnect();
const plan = listed.plans.get(shape)!;
collectGarbage();
const heapWithPlanBytes = process.memoryUsage().heapUsed;
const peakRssAfterPlanBytes = peakRssBytes();

const listOnlyStarted = performance.now();
await Promise.all([pages(objectsPerSide, 'source', shape), pages(objectsPerSide, 'target', shape)].map(async (side) => {
  for await (const page of side) if (page.length === 0) throw new Error('empty page');
}));
const listOnlyMs = performance.now() - listOnlyStarted;

const result: PlannerChildResult = {
  objectsPerSide,
  shape,
  sourceObjects: plan.sourceObjects,
  targetObjects: plan.targetObjects,
  planMs: listAndPlanMs - listOnlyMs,
  listAndPlanMs,
  listOnlyMs,
  transfers: plan.transfers.length,
  deletions: plan.deletions.length,
  unchanged: plan.unchanged,
  gcMs,
  peakUnmatched: listed.peakUnmatched,
  baselineRssBytes,
  peakRssBytes: peakRssAfterPlanBytes,
  heapWithPlanBytes,
};
process.stdout.write(`${JSON.stringify(result)}\n`);
