/**
 * What the two Functions adapters (`sync` over HTTP, `syncTimer` on a schedule) share: one SyncService
 * per instance, a deadline under the trigger's limit, one JSON log line per event carrying the
 * invocation id, and the classes a run ends in (the HTTP statuses; the timer uses the same classes).
 */
import type { InvocationContext } from '@azure/functions';
import { ConfigError, LockHeldError, describeError, redactSecrets } from '../core/errors.ts';
import { failureCount, type RunReport } from '../core/report.ts';
import { deadlineAfter, type RunEvent } from '../core/run.ts';
import type { ProviderChoice } from '../core/types.ts';
import { SettingsReader, type Settings } from '../config.ts';
import { SecretsError } from '../secrets.ts';
import { createSyncService, type SyncService, type SyncServiceOptions } from '../sync.ts';

/** `queue`: a queued run's message (functions/object-queue.ts), under the timer's deadline rules: a queue invocation is bounded by the function timeout. */
export type Trigger = 'http' | 'timer' | 'queue';

export interface RunRequest {
  readonly trigger: Trigger;
  readonly provider: ProviderChoice;
  readonly dryRun: boolean;
  /** Called with the run's status id once its record is open (with AzureWebJobsStorage; not for dry runs). */
  readonly onRunOpened?: (statusId: string) => void;
  /** The open record a queued run updates (see SyncRequest). */
  readonly statusId?: string;
}

/**
 * How a run ended:
 * - 200: the report of a complete run, or of one the deadline cut short with nothing partial left behind;
 * - 500 with a report: objects or listings failed, the run lock was lost, or an object was deferred too many runs in a row;
 * - 409: another run holds a target's lock, 503: settings or Key Vault secrets are unusable (nothing
 *   was attempted in either); 500 with an error: anything else, thrown before a report existed.
 */
export type RunOutcome =
  | { readonly status: 200 | 500; readonly report: RunReport }
  | { readonly status: 409 | 500 | 503; readonly error: string };

export interface SyncRunner {
  run(context: InvocationContext, request: RunRequest): Promise<RunOutcome>;
}

export interface SyncRunnerOptions {
  /** App settings (default `process.env`, which the host fills from the Function App's settings). */
  readonly settings?: Settings;
  /** Passed to `createSyncService` (tests: a local Key Vault). */
  readonly serviceOptions?: SyncServiceOptions;
  /** The service runs go through (default: created here, once, so Key Vault keys stay cached across runs). */
  readonly service?: Pick<SyncService, 'sync'>;
  /** The clock a run's deadline is measured from (default `Date.now`). */
  readonly now?: () => number;
}

/** Azure's front end drops an HTTP request after 230 s, on every plan: the HTTP deadline stays under it. */
export const HTTP_LIMIT_SECONDS = 230;
/** host.json `functionTimeout` (the Consumption plan's maximum); the app setting AzureFunctionsJobHost__functionTimeout overrides both. */
export const FUNCTION_TIMEOUT = '00:10:00';
/** Between the deadline and the platform's limit: cancelled transfers settle and the report is written. */
const SETTLE_SECONDS = 10;

/** One runner per Functions instance: the module that registers the functions creates it once. */
export function createSyncRunner(options: SyncRunnerOptions = {}): SyncRunner {
  const settings = options.settings ?? process.env;
  const service = options.service ?? createSyncService(settings, options.serviceOptions);
  const now = options.now ?? Date.now;

  return {
    async run(context, request) {
      const startedMs = now();
      let outcome: RunOutcome;
      try {
        const deadline = runDeadline(settings, request.trigger, startedMs);
        logLine(context, 'info', {
          event: 'invocation-start',
          trigger: request.trigger,
          provider: request.provider,
          dryRun: request.dryRun,
          stopStartingAt: new Date(deadline.stopStartingAt).toISOString(),
          abortAt: new Date(deadline.abortAt).toISOString(),
        });
        const report = await service.sync({
          provider: request.provider,
          dryRun: request.dryRun,
          deadline,
          // A run that finds the lock held is told this invocation holds it.
          runId: context.invocationId,
          trigger: request.trigger,
          ...(request.onRunOpened === undefined ? {} : { onRunOpened: request.onRunOpened }),
          ...(request.statusId === undefined ? {} : { statusId: request.statusId }),
          onEvent: (event) => logLine(context, EVENT_LEVELS[event.event] ?? 'info', event),
        });
        outcome = { status: failureCount(report) > 0 ? 500 : 200, report };
      } catch (error) {
        outcome = { status: statusOf(error), error: describeError(error) };
      }
      const durationMs = now() - startedMs;
      if ('report' in outcome) {
        const { report } = outcome;
        logLine(context, outcome.status === 200 ? 'info' : 'error', {
          event: 'invocation-end',
          trigger: request.trigger,
          status: outcome.status,
          complete: report.complete,
          failures: failureCount(report),
          ...(report.stoppedEarly === undefined ? {} : { stoppedEarly: report.stoppedEarly }),
          durationMs,
        });
      } else {
        logLine(context, outcome.status === 409 ? 'warn' : 'error', { event: 'invocation-end', trigger: request.trigger, status: outcome.status, error: outcome.error, durationMs });
      }
      return outcome;
    },
  };
}

function statusOf(error: unknown): 409 | 500 | 503 {
  if (error instanceof LockHeldError) return 409;
  if (error instanceof ConfigError || error instanceof SecretsError) return 503;
  return 500;
}

/**
 * When the run stops starting transfers and when it cancels the rest: the deadline setting of the
 * trigger (validated; throws `ConfigError`), measured from the invocation's start.
 */
export function runDeadline(settings: Settings, trigger: Trigger, startedMs: number): { stopStartingAt: number; abortAt: number } {
  const read = new SettingsReader(settings);
  let seconds: number;
  if (trigger === 'http') {
    seconds = read.integer('SYNC_HTTP_DEADLINE_SECONDS', { default: 200, min: 10, max: HTTP_LIMIT_SECONDS - SETTLE_SECONDS });
  } else {
    const limit = functionTimeoutSeconds(read);
    seconds = read.integer('SYNC_TIMER_DEADLINE_SECONDS', { default: Math.max(10, Math.min(540, limit - 60)), min: 10, max: Math.min(604_800, limit - SETTLE_SECONDS) });
  }
  read.throwIfProblems();
  return deadlineAfter(startedMs, seconds * 1000);
}

/** The function timeout the host applies: host.json's, unless the app setting overrides it; -1 (no limit) counts as unbounded. */
function functionTimeoutSeconds(read: SettingsReader): number {
  const value = read.optional('AzureFunctionsJobHost__functionTimeout') ?? FUNCTION_TIMEOUT;
  if (value === '-1') return Number.POSITIVE_INFINITY;
  const match = /^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})$/.exec(value);
  if (match === null) {
    read.problem(`AzureFunctionsJobHost__functionTimeout ${JSON.stringify(value)} is not a timeout: expected hh:mm:ss, such as 00:10:00`);
    return 600;
  }
  const part = (index: number): number => Number(match[index] ?? 0);
  return ((part(1) * 24 + part(2)) * 60 + part(3)) * 60 + part(4);
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** A log line's fields: `event` names what happened; counts and durations are numbers. */
export interface LogFields {
  readonly event: string;
  readonly [field: string]: unknown;
}

/** Events not at 'info': a line per copied object is debug (off in host.json's default level), failures are errors. */
export const EVENT_LEVELS: Partial<Record<RunEvent['event'], LogLevel>> = {
  transferred: 'debug',
  // One line per object; their counts are in `target-end`.
  deferred: 'debug',
  archived: 'debug',
  fallback: 'warn',
  failure: 'error',
};

/** One event as one JSON line, with the invocation id and every string masked. Application Insights: `traces | extend e = parse_json(message)`. */
export function logLine(context: InvocationContext, level: LogLevel, fields: LogFields): void {
  context[level](redactedJson({ ...fields, invocationId: context.invocationId, functionName: context.functionName }));
}

/** JSON with every string value passed through `redactSecrets`: what leaves the process in a log line or a response. */
export function redactedJson(value: unknown): string {
  // An object key is a name, never a secret: masking could only change it.
  return JSON.stringify(value, (name, field: unknown) => (typeof field === 'string' && name !== 'key' ? redactSecrets(field) : field));
}
