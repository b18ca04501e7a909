/**
 * Scenario fan-out-plan: planning a bucket whose objects are all missing at the target, with the
 * transfers streamed into the queue as they are found (core/fan-out.ts), in a child process of its own
 * (./fan-out-plan-child.ts) so the memory measured is the planning run's. No emulator.
 */
import process from 'node:process';
import { fileURLToPath } from 'node:url';
import { verdict, type BenchContext, type ScenarioOutcome } from './context.ts';
import type { FanOutPlanResult } from './fan-out-plan-child.ts';
import { measure } from './measure.ts';
import { count, megabytes, renderTable, seconds } from './table.ts';

/** The bound stated in docs/fan-out.md: a million missing objects planned and enqueued under this peak RSS. */
export const FAN_OUT_RSS_GOAL_BYTES = 200_000_000;

const ownExtension = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
const CHILD_PATH = fileURLToPath(new URL(`./fan-out-plan-child${ownExtension}`, import.meta.url));

export async function fanOutPlan(progress: BenchContext['progress'], objects: number): Promise<ScenarioOutcome<FanOutPlanResult>> {
  progress(`fan-out-plan: ${count(objects)} objects missing at the target, planned and enqueued`);
  const run = await measure({ command: process.execPath, args: [CHILD_PATH, String(objects)], env: process.env });
  if (run.exitCode !== 0) throw new Error(`the fan-out child failed (exit ${run.exitCode}):\n${run.stderr}`);
  const data = JSON.parse(run.stdout) as FanOutPlanResult;
  const text = [
    `Fan-out: planning ${count(data.objects)} objects all missing at the target, transfers streamed into queue messages (default settings), in a child process of its own`,
    renderTable(['objects', 'keys enqueued', 'messages', 'largest message', 'held unmatched at most', 'time', 'RSS of bare Node', 'peak RSS'], [[
      count(data.objects), count(data.keysEnqueued), count(data.messages), `${count(data.largestMessageBytes)} B`, count(data.peakUnmatched), seconds(data.wallMs), megabytes(data.baselineRssBytes), megabytes(data.peakRssBytes),
    ]]),
  ].join('\n');
  const judged = data.objects >= 1_000_000 ? data.peakRssBytes < FAN_OUT_RSS_GOAL_BYTES && data.keysEnqueued === data.objects : undefined;
  return { text, data, verdicts: [verdict('fan-out-plan', `${count(data.objects)} missing objects planned and enqueued in < ${megabytes(FAN_OUT_RSS_GOAL_BYTES)} peak RSS`, megabytes(data.peakRssBytes, 1), judged)] };
}
