/**
 * The CLI's queue commands: `artifacts-sync work [--until-empty]` (a queue worker running the queue
 * function's own handler) and `artifacts-sync status [<run-id>] [--json]` (what the status endpoints
 * answer). Exit codes of `status <run-id>`: 0 complete, 1 ended incomplete or stalled, 4 still running.
 */
import { SettingsReader, type Settings } from './config.ts';
import { ConfigError, describeError } from './core/errors.ts';
import type { RunRecord } from './core/run-record.ts';
import { createEventService } from './events.ts';
import { MAX_DEQUEUE_COUNT, objectQueueHandler } from './functions/object-queue.ts';
import { createSyncRunner } from './functions/run-sync.ts';
import type { RunService, StatusOverview } from './runs.ts';
import type { SyncServiceOptions } from './sync.ts';

/** `status <run-id>` while the run is still running. */
export const EXIT_RUNNING = 4;

interface Io {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
}

/** Runs `work` or `status`; returns the exit code. Bad arguments or settings: 2. */
export async function runQueueCommand(args: readonly string[], settings: Settings, io: Io, options: SyncServiceOptions = {}): Promise<number> {
  const [command, ...rest] = args;
  try {
    const { createRunService, runView, viewedState } = await import('./runs.ts');
    if (command === 'work') {
      const unknown = rest.filter((arg) => arg !== '--until-empty');
      if (unknown.length > 0) throw new ConfigError([`unknown argument ${unknown.map((arg) => JSON.stringify(arg)).join(', ')} for work: allowed is --until-empty`]);
      const runs = createRunService(settings);
      return await work(runs, settings, io, rest.includes('--until-empty'), options);
    }
    const json = rest.includes('--json');
    const positional = rest.filter((arg) => arg !== '--json');
    if (positional.some((arg) => arg.startsWith('-')) || positional.length > 1) throw new ConfigError([`unexpected ${positional.map((arg) => JSON.stringify(arg)).join(' ')} for status: give at most one run id, and --json`]);
    const runs = createRunService(settings);
    const id = positional[0];
    if (id === undefined) {
      const overview = await runs.overview();
      io.out(json ? JSON.stringify(overview, null, 2) : renderOverview(overview));
      return 0;
    }
    const record = await runs.get(id);
    if (record === undefined) {
      io.err(`artifacts-sync: no run ${JSON.stringify(id)} in the host storage (run ids look like 20261203T074500Z-3f9c2a1b; artifacts-sync status lists the last ones)`);
      return 2;
    }
    const state = viewedState(record, Date.now());
    io.out(json ? JSON.stringify(runView(record), null, 2) : renderRun(record, state));
    return state === 'complete' ? 0 : state === 'running' ? EXIT_RUNNING : 1;
  } catch (error) {
    io.err(`artifacts-sync: ${describeError(error)}`);
    return error instanceof ConfigError ? 2 : 1;
  }
}

async function work(runs: RunService, settings: Settings, io: Io, untilEmpty: boolean, options: SyncServiceOptions): Promise<number> {
  const read = new SettingsReader(settings);
  const maxDequeueCount = read.integer('AzureFunctionsJobHost__extensions__queues__maxDequeueCount', { default: MAX_DEQUEUE_COUNT, min: 1, max: 1000 });
  read.throwIfProblems();
  const clients = await runs.clients();
  const { workQueue } = await import('./queue-worker.ts');
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const result = await workQueue(clients.queues.getQueueClient(runs.queueName), clients.queues.getQueueClient(`${runs.queueName}-poison`), objectQueueHandler(createEventService(settings, options), settings, createSyncRunner({ settings, serviceOptions: options })), {
      untilEmpty,
      visibilitySeconds: runs.config.workVisibilitySeconds,
      retrySeconds: runs.config.workRetrySeconds,
      maxDequeueCount,
      batchSize: 16,
      signal: stop.signal,
      log: (_level, line) => io.err(line),
    });
    io.out(JSON.stringify({ event: 'work-end', ...result }));
    return result.poisoned > 0 ? 1 : 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

function renderOverview(overview: StatusOverview): string {
  const lines = Object.entries(overview.targets).map(([target, entry]) =>
    `${target}: last complete run ${entry?.lastCompleteRun === null || entry === undefined ? 'none' : `${entry.lastCompleteRun.id} at ${entry.lastCompleteRun.finishedAt}`}; last run ${entry?.lastRun === null || entry === undefined ? 'none' : `${entry.lastRun.id} ${entry.lastRun.state}`}`);
  lines.push(`queue ${overview.queue.name}: ${overview.queue.pending} pending, ${overview.queue.poisoned} poisoned`);
  return lines.join('\n');
}

function renderRun(record: RunRecord, state: string): string {
  const lines = [`run ${record.id} (${record.provider}, ${record.trigger}): ${state}${record.finishedAt === undefined ? '' : ` at ${record.finishedAt}`}`];
  lines.push(`  planning: ${record.planning.done ? 'done' : 'in progress'}${record.planning.error === undefined ? '' : ` (${record.planning.error})`}; pieces: ${record.pieces.finished.length} of ${record.pieces.enqueued} finished, ${record.pieces.poisoned.length} poisoned`);
  for (const [target, counts] of Object.entries(record.targets)) {
    lines.push(`  ${target}: enqueued ${counts.enqueued}, copied ${counts.copied}, replaced ${counts.replaced}, deleted ${counts.deleted}, unchanged ${counts.unchanged}, failed ${counts.failed}, deferred ${counts.deferred}`);
  }
  for (const failure of record.failures) lines.push(`  FAILED ${failure.target} ${failure.operation}${failure.key === undefined ? '' : ` ${JSON.stringify(failure.key)}`}: ${failure.message}`);
  return lines.join('\n');
}
