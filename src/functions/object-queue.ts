/**
 * The queue worker (`app.storageQueue` on SYNC_QUEUE_NAME): one message names one key; the worker
 * reconciles it on every target to the source's current state. It throws when the key could not be
 * reconciled, so the host makes the message visible again and, after host.json `maxDequeueCount`
 * attempts, moves it to `<queue>-poison`. Deletions held by the deletion window are not retried here:
 * they are logged and left to the next full run, which decides behind its own guard.
 */
import type { InvocationContext, StorageQueueHandler } from '@azure/functions';
import { SettingsReader, type Settings } from '../config.ts';
import { describeError } from '../core/errors.ts';
import { retryableFailureList, type ReconcileEvent, type ReconcileReport } from '../core/reconcile.ts';
import { readRunPiece } from '../core/fan-out.ts';
import { readEventMessage } from '../core/s3-events.ts';
import type { RunService } from '../runs.ts';
import type { EventService } from '../events.ts';
import { EVENT_LEVELS, logLine, type LogLevel } from './run-sync.ts';

/** host.json `extensions.queues.maxDequeueCount`; the app setting below overrides it, as it overrides host.json. */
export const MAX_DEQUEUE_COUNT = 5;

export function objectQueueHandler(service: EventService, settings: Settings = process.env): StorageQueueHandler {
  const read = new SettingsReader(settings);
  const maxDequeueCount = read.integer('AzureFunctionsJobHost__extensions__queues__maxDequeueCount', { default: MAX_DEQUEUE_COUNT, min: 1, max: 1000 });
  read.throwIfProblems();
  let runs: RunService | undefined;
  return async (entry, context) => {
    const dequeueCount = Number(context.triggerMetadata?.['dequeueCount'] ?? 1);
    try {
      // A piece of a fanned-out full run (src/runs.ts), or one S3 event's key.
      const piece = readRunPiece(entry);
      if (piece === undefined) await reconcileMessage(service, entry, context);
      else {
        runs ??= (await import('../runs.ts')).createRunService(settings);
        await runs.workPiece(service, piece, dequeueCount >= maxDequeueCount, (line) => logLine(context, levelOf(line), { ...line, run: piece.run, piece: piece.piece }));
      }
    } catch (error) {
      // The host moves the message to the poison queue after this attempt: one line to count and alert on.
      if (dequeueCount >= maxDequeueCount) logLine(context, 'error', { event: 'message-poisoned', dequeueCount, error: describeError(error) });
      throw error;
    }
  };
}

async function reconcileMessage(service: EventService, entry: unknown, context: InvocationContext): Promise<void> {
  const event = readEventMessage(entry);
  const report = await service.reconcile({
    provider: 'all',
    keys: [{ key: event.key, eventTimeMs: event.eventTimeMs }],
    onEvent: (line) => logLine(context, levelOf(line), { ...line, ...(event.eventId === undefined ? {} : { eventId: event.eventId }) }),
  });
  for (const held of report.held) logLine(context, 'warn', { event: 'event-deletion-held', target: held.target, key: held.key });
  const failures = retryableFailures(report);
  if (failures > 0) {
    throw new Error(`key ${JSON.stringify(event.key)} was not reconciled (${failures} failure(s)): see its "failure" log lines; the host retries, then moves the message to the poison queue`);
  }
}

/** Failures a retry may cure (`retryableFailureList`). */
export function retryableFailures(report: ReconcileReport): number {
  return retryableFailureList(report).length;
}

function levelOf(line: ReconcileEvent): LogLevel {
  return line.event === 'key-mirrored' ? 'info' : EVENT_LEVELS[line.event] ?? 'info';
}
