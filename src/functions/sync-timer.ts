/**
 * The timer adapter: mirrors `all` on SYNC_SCHEDULE. A run with failures (a lost lock, an object deferred
 * SYNC_MAX_DEFERRED_RUNS runs in a row, archived objects with SYNC_FAIL_ON_ARCHIVED=true among them), or
 * one that could not start (settings, Key Vault), throws, so the invocation counts as failed in
 * Application Insights; a run the deadline cut short, or one that found the lock taken, is a success:
 * the next run continues.
 */
import type { TimerHandler } from '@azure/functions';
import { logLine, type SyncRunner } from './run-sync.ts';

export function syncTimerHandler(runner: SyncRunner): TimerHandler {
  return async (timer, context) => {
    if (timer.isPastDue) {
      logLine(context, 'warn', { event: 'timer-past-due', scheduledLast: timer.scheduleStatus?.last, scheduledNext: timer.scheduleStatus?.next });
    }
    const outcome = await runner.run(context, { trigger: 'timer', provider: 'all', dryRun: false });
    if (outcome.status === 200 || outcome.status === 409) return;
    throw new Error('report' in outcome
      ? `the mirror run ended with failures (invocation ${context.invocationId}): see its "failure" log lines`
      : `the mirror run could not start (invocation ${context.invocationId}): ${outcome.error}`);
  };
}
