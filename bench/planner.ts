/**
 * Scenario 4: `planMirror` alone on synthetic listings of N objects per side, 1% of them different,
 * in a child process of its own (./planner-child.ts) so the memory measured is the planner's and its inputs'.
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

export async function plannerAlone(context: BenchContext, objectsPerSide: number): Promise<ScenarioOutcome<PlannerData>> {
  const runs: PlannerData['runs'][number][] = [];
  for (const shape of SHAPES) {
    context.progress(`planner: ${count(objectsPerSide)} objects per side, ${shape}-shaped target listing`);
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
    run.shape === 'azure' ? 'azure (recorded ETag)' : 'oci (timestamps)',
    seconds(run.planMs),
    `${Math.round(run.gcDuringPlanMs)} ms`,
    seconds(run.bareTargetMapMs),
    megabytes(run.inputsHeapBytes),
    megabytes(run.peakRssBeforePlanBytes),
    megabytes(run.peakRssAfterPlanBytes),
    `${count(run.transfers)} / ${count(run.deletions)}`,
  ]);
  return [
    `4. Planner alone: planMirror over ${count(data.objectsPerSide)} objects per side (1% differ), in a child process of its own`,
    renderTable(['target listing', 'plan time', 'GC in plan', 'bare Map of target keys', 'inputs (live heap)', 'peak RSS before plan', 'peak RSS after plan', 'transfers / deletions'], rows),
    '  peak RSS is the child\'s VmHWM: "before plan" = the two listings alone, "after plan" = the figure judged.',
    '  "bare Map of target keys": the same child afterwards builds only a Map of the target keys, for scale on this machine.',
  ].join('\n');
}

function verdicts(data: PlannerData): Verdict[] {
  return data.runs.flatMap((run) => [
    verdict('planner', `${run.shape}-shaped: ${count(data.objectsPerSide)} per side in < ${seconds(TIME_GOAL_MS)}`, seconds(run.planMs), data.objectsPerSide >= 1_000_000 ? run.planMs < TIME_GOAL_MS : undefined),
    verdict(
      'planner',
      `${run.shape}-shaped: ${count(data.objectsPerSide)} per side in < ${megabytes(RSS_GOAL_BYTES)} peak RSS`,
      `${megabytes(run.peakRssAfterPlanBytes, 1)} (inputs alone: ${megabytes(run.inputsHeapBytes)} live heap, ${megabytes(run.peakRssBeforePlanBytes)} RSS)`,
      data.objectsPerSide >= 1_000_000 ? run.peakRssAfterPlanBytes < RSS_GOAL_BYTES : undefined,
    ),
  ]);
}
