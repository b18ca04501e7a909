/**
 * The queue worker (`app.storageQueue` on SYNC_QUEUE_NAME). Three kinds of message: an S3 event's
 * key, a piece of a fanned-out run (keys of one target), and a queued full run (`POST /api/sync`
 * with the host storage), which it runs to the end within this invocation and records in the run's
 * record. For a key, the worker reconciles it on every target to the source's current state. It throws when the key could not be
 * reconciled, so the host makes the message visible again and, after host.json `maxDequeueCount`
 * attempts, moves it to `<queue>-poison`. Deletions held by the deletion window are not retried here:
 * they are logged and left to the next full run, which decides behind its own guard.
 */
import type { InvocationContext, StorageQueueHandler } from '@azure/functions';
import { SettingsReader, type Settings } from '../config.ts';
import { describeError } from '../core/errors.ts';
import { retryableFailureList, type ReconcileEvent, type ReconcileReport } from '../core/reconcile.ts';
import { readRunPiece, readRunStart, type RunStartMessage } from '../core/fan-out.ts';
import { readEventMessage } from '../core/s3-events.ts';
import type { RunService } from '../runs.ts';
import type { EventService } from '../events.ts';
import { EVENT_LEVELS, createSyncRunner, logLine, type LogLevel, type SyncRunner } from './run-sync.ts';

/** host.json `extensions.queues.maxDequeueCount`; the app setting below overrides it, as it overrides host.json. */
export const MAX_DEQUEUE_COUNT = 5;

/** `runner` runs queued full runs (default: one of its own over `settings`, created on the first such message). */
export function objectQueueHandler(service: EventService, settings: Settings = process.env, runner?: SyncRunner): StorageQueueHandler {
  const read = new SettingsReader(settings);
  const maxDequeueCount = read.integer('AzureFunctionsJobHost__extensions__queues__maxDequeueCount', { default: MAX_DEQUEUE_COUNT, min: 1, max: 1000 });
  read.throwIfProblems();
  let runs: RunService | undefined;
  const runService = async (): Promise<RunService> => (runs ??= (await import('../runs.ts')).createRunService(settings));
  let queuedRunner = runner;
  return async (entry, context) => {
    const dequeueCount = Number(context.triggerMetadata?.['dequeueCount'] ?? 1);
    const lastAttempt = dequeueCount >= maxDequeueCount;
    let start: RunStartMessage | undefined;
    try {
      // A queued full run, a piece of a fanned-out run (src/runs.ts), or one S3 event's key.
      start = readRunStart(entry);
      const piece = start === undefined ? readRunPiece(entry) : undefined;
      if (start !== undefined) await runQueued(await runService(), (queuedRunner ??= createSyncRunner({ settings })), start, { message: String(context.triggerMetadata?.['id'] ?? context.invocationId), dequeueCount, lastAttempt }, context);
      else if (piece === undefined) await reconcileMessage(service, entry, context);
      else await (await runService()).workPiece(service, piece, lastAttempt, (line) => logLine(context, levelOf(line), { ...line, run: piece.run, piece: piece.piece }));
    } catch (error) {
      if (lastAttempt) {
        // A queued run never stays `running` once its message is poisoned.
        if (start !== undefined) await runs?.endRun(start.start, `its queue message failed ${dequeueCount} time(s) and went to the poison queue: ${describeError(error)}`).catch(() => undefined);
        // The host moves the message to the poison queue after this attempt: one line to count and alert on.
        logLine(context, 'error', { event: 'message-poisoned', dequeueCount, error: describeError(error) });
      }
      throw error;
    }
  };
}

/**
 * Runs a queued full run once: the delivery claims the run's record under its ETag, so a copy of the
 * message or a redelivery never runs the mirror a second time (the run lock guards the targets too).
 * Throws when the run failed before a report existed, so the host tries the message again.
 */
async function runQueued(runs: RunService, runner: SyncRunner, start: RunStartMessage, delivery: { message: string; dequeueCount: number; lastAttempt: boolean }, context: InvocationContext): Promise<void> {
  const claim = await runs.claimRun(start.start, delivery);
  if (claim !== 'start') {
    logLine(context, 'warn', { event: 'queued-run-skipped', run: start.start, claim, dequeueCount: delivery.dequeueCount });
    if (claim === 'abandoned') await runs.endRun(start.start, `attempt ${delivery.dequeueCount - 1} of its queue message stopped without ending the run (its instance was stopped); transfers it enqueued may still run, and the next run mirrors the rest`);
    return;
  }
  const outcome = await runner.run(context, { trigger: 'queue', provider: start.provider, dryRun: false, statusId: start.start });
  if (!('error' in outcome)) return;
  // The run's record may have ended already (the attempt enqueued pieces before it failed): then there is nothing to try again.
  const open = await runs.failAttempt(start.start, delivery, outcome.error);
  if (open || delivery.lastAttempt) throw new Error(`run ${start.start}: ${outcome.error}${open ? '; the host tries the message again' : ''}`);
  logLine(context, 'warn', { event: 'queued-run-failed', run: start.start, error: outcome.error });
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
