/**
 * Scenario 4: the planner alone (`planWhileListing`, as a run plans) on synthetic listings of N objects
 * per side arriving in pages, 1% of them different, in a child process of its own (./planner-child.ts)
 * so the memory measured is the planner's.
 */
import process from 'node:process';
import { fileURLToPath } from 'node:url';
import { verdict, type BenchContext, type ScenarioOutcome, type Verdict } from './context.ts';
import { measure } from './measure.ts';
import type { PlannerChildResult, TargetShape } from './planner-child.ts';
import { count, megabytes, renderTable, seconds } from './table.ts';

const TIME_GOAL_MS = 2000;
const RSS_GOAL_BYTES = 400_000_000;
const SHAPES: readonly TargetShape[] = ['azure', 'oci'];

const ownExtension = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
const CHILD_PATH = fileURLToPath(new URL(`./planner-child${ownExtension}`, import.meta.url));

export interface PlannerData {
  readonly objectsPerSide: number;
  readonly runs: readonly (PlannerChildResult & { readonly childWallMs: number; readonly childPeakRssBytes: number | undefined })[];
}

export async function plannerAlone(progress: BenchContext['progress'], objectsPerSide: number): Promise<ScenarioOutcome<PlannerData>> {
  const runs: PlannerData['runs'][number][] = [];
  for (const shape of SHAPES) {
    progress(`planner: ${count(objectsPerSide)} objects per side, ${shape}-shaped target listing`);
    // --expose-gc: the child collects the garbage of building its inputs before it starts the clock.
    const run = await measure({ command: process.execPath, args: ['--expose-gc', CHILD_PATH, String(objectsPerSide), shape], env: process.env });
    if (run.exitCode !== 0) throw new Error(`the planner child failed (exit ${run.exitCode}):\n${run.stderr}`);
    const result = JSON.parse(run.stdout) as PlannerChildResult;
    runs.push({ ...result, childWallMs: run.wallMs, childPeakRssBytes: run.peakRssBytes });
  }
  const data: PlannerData = { objectsPerSide, runs };
  return { text: render(data), verdicts: verdicts(data), data };
}

function render(data: PlannerData): string {
  const rows = data.runs.map((run) => [
    run.shape === 'azure' ? 'azure (recorded ETag, 5,000/page)' : 'oci (timestamps, 1,000/page)',
    seconds(run.planMs),
    seconds(run.planCpuMs),
    `${seconds(run.listAndPlanMs)} - ${seconds(run.listOnlyMs)}`,
    `${Math.round(run.gcMs)} ms`,
    count(run.peakUnmatched),
    megabytes(run.baselineRssBytes),
    megabytes(run.peakRssBytes),
    `${count(run.transfers)} / ${count(run.deletions)}`,
  ]);
  return [
    `4. Planner alone: planWhileListing over ${count(data.objectsPerSide)} objects per side (1% differ), pages arriving in key order, in a child process of its own`,
    renderTable(['target listing', 'plan time', 'plan CPU', 'list+plan - list only (medians)', 'GC (list+plan)', 'held unmatched at most', 'RSS of bare Node', 'peak RSS', 'transfers / deletions'], rows),
    '  plan time = a pass that lists and plans less the same listing without planning, median of 3 rounds (plan CPU: the same in CPU time);',
    '  peak RSS is the child\'s VmHWM after the first pass (the figure judged).',
    '  "held unmatched at most": objects the planner kept waiting for their counterpart, copies and deletions found so far included.',
  ].join('\n');
}

function verdicts(data: PlannerData): Verdict[] {
  return data.runs.flatMap((run) => [
    verdict('planner', `${run.shape}-shaped: ${count(data.objectsPerSide)} per side in < ${seconds(TIME_GOAL_MS)}`, seconds(run.planMs), data.objectsPerSide >= 1_000_000 ? run.planMs < TIME_GOAL_MS : undefined),
    verdict(
      'planner',
      `${run.shape}-shaped: ${count(data.objectsPerSide)} per side in < ${megabytes(RSS_GOAL_BYTES)} peak RSS`,
      `${megabytes(run.peakRssBytes, 1)} (bare Node ${megabytes(run.baselineRssBytes)}; ${count(run.peakUnmatched)} objects held at most)`,
      data.objectsPerSide >= 1_000_000 ? run.peakRssBytes < RSS_GOAL_BYTES : undefined,
    ),
  ]);
}
