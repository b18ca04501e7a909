/**
 * Scenario 4 runs here, in a process of its own, so the peak RSS measured is the planner's alone:
 * `node planner-child.js <objects per side> <azure|oci>`.
 *
 * The listings arrive as a real run receives them: in key order, in pages (1,000 objects for S3 and
 * OCI, 5,000 for Azure), each page parsed from text into fresh objects with flat strings. They go
 * through the run's own `planWhileListing`, which plans while the pages arrive. Planning time is what
 * planning adds: the time of that pass less the time of making and reading the same pages without
 * planning (a real run spends that time waiting for the network), garbage collection of the planner's
 * own objects included; the median of three rounds. The memory is the whole process's. Prints one JSON line: `PlannerChildResult`.
 */
import { PerformanceObserver, performance } from 'node:perf_hooks';
import process from 'node:process';
import { planWhileListing, type ListedPlans } from '../src/core/listings.ts';
import { DEFAULT_DELETE_LIMITS } from '../src/core/plan.ts';
import type { ObjectInfo } from '../src/core/types.ts';
import { peakRssBytes } from './process-rss.ts';

/** `azure`: targets carry the recorded source ETag (Azure listings return metadata); `oci`: only timestamps. */
export type TargetShape = 'azure' | 'oci';

export interface PlannerChildResult {
  readonly objectsPerSide: number;
  readonly shape: TargetShape;
  readonly sourceObjects: number;
  readonly targetObjects: number;
  /** What planning adds: the median over three rounds of (list and plan) less (list only), in wall time. */
  readonly planMs: number;
  /** The same in CPU time of the process. */
  readonly planCpuMs: number;
  /** Making, parsing and reading both sides' pages while planning them (median). */
  readonly listAndPlanMs: number;
  /** Making, parsing and reading the same pages without planning (median; each round lists without planning after the one with). */
  readonly listOnlyMs: number;
  readonly transfers: number;
  readonly deletions: number;
  readonly unchanged: number;
  /** Garbage-collection pauses during a list-and-plan pass (pages and planning; median). */
  readonly gcMs: number;
  /** The most objects held unmatched at once (copies and deletions found so far included). */
  readonly peakUnmatched: number;
  /** VmHWM of the process before any listing: Node itself, for scale. */
  readonly baselineRssBytes: number;
  /** VmHWM after the first list-and-plan pass: the peak of one run, the figure judged. */
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

const objectsPerSide = Number(process.argv[2] ?? '1000000');
const shape: TargetShape = process.argv[3] === 'oci' ? 'oci' : 'azure';
const baselineRssBytes = peakRssBytes();

/** Lists both sides and plans them, as a run does: wall and CPU milliseconds, the plan, GC pauses. */
async function listAndPlan(): Promise<{ wallMs: number; cpuMs: number; gcMs: number; listed: ListedPlans<TargetShape> }> {
  let gcMs = 0;
  const gcObserver = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) gcMs += entry.duration;
  });
  gcObserver.observe({ entryTypes: ['gc'] });
  const cpu = process.cpuUsage();
  const started = performance.now();
  const listed = await planWhileListing(
    { label: 'source', pages: () => pages(objectsPerSide, 'source', shape) },
    [{ name: shape, label: 'target', pages: () => pages(objectsPerSide, 'target', shape) }],
    DEFAULT_DELETE_LIMITS,
  );
  const wallMs = performance.now() - started;
  const cpuMs = cpuMilliseconds(process.cpuUsage(cpu));
  // Observer callbacks run on later turns of the event loop.
  await new Promise((resolve) => setTimeout(resolve, 50));
  gcObserver.disconnect();
  return { wallMs, cpuMs, gcMs, listed };
}

/** Makes and reads the same pages without planning. */
async function listOnly(): Promise<{ wallMs: number; cpuMs: number }> {
  const cpu = process.cpuUsage();
  const started = performance.now();
  await Promise.all([pages(objectsPerSide, 'source', shape), pages(objectsPerSide, 'target', shape)].map(async (side) => {
    for await (const page of side) if (page.length === 0) throw new Error('empty page');
  }));
  return { wallMs: performance.now() - started, cpuMs: cpuMilliseconds(process.cpuUsage(cpu)) };
}

function cpuMilliseconds(usage: NodeJS.CpuUsage): number {
  return (usage.user + usage.system) / 1000;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

// Rounds alternate, and the median difference is taken: one pass takes seconds, and on a shared
// machine a single difference of two such passes is noisier than the planning itself.
const ROUNDS = 3;
const first = await listAndPlan();
const { listed } = first;
const plan = listed.plans.get(shape)!;
// The peak of one run: taken before the other rounds add their garbage.
const peakRssAfterPlanBytes = peakRssBytes();
collectGarbage();
const heapWithPlanBytes = process.memoryUsage().heapUsed;
const rounds: { planned: { wallMs: number; cpuMs: number; gcMs: number }; unplanned: { wallMs: number; cpuMs: number } }[] = [];
for (let round = 0; round < ROUNDS; round += 1) {
  const planned = round === 0 ? first : await listAndPlan();
  collectGarbage();
  const unplanned = await listOnly();
  collectGarbage();
  rounds.push({ planned: { wallMs: planned.wallMs, cpuMs: planned.cpuMs, gcMs: planned.gcMs }, unplanned });
}
const planMs = median(rounds.map((round) => round.planned.wallMs - round.unplanned.wallMs));
const planCpuMs = median(rounds.map((round) => round.planned.cpuMs - round.unplanned.cpuMs));
const listAndPlanMs = median(rounds.map((round) => round.planned.wallMs));
const listOnlyMs = median(rounds.map((round) => round.unplanned.wallMs));
const gcMs = median(rounds.map((round) => round.planned.gcMs));

const result: PlannerChildResult = {
  objectsPerSide,
  shape,
  sourceObjects: plan.sourceObjects,
  targetObjects: plan.targetObjects,
  planMs,
  planCpuMs,
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
