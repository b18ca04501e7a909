/**
 * Calls the Functions handlers the way the host does, without the host (`func` cannot be installed
 * here): an `HttpRequest` or a `Timer` and an `InvocationContext` whose log handler records every
 * line, so a test can read the response, the thrown error and each log line of one invocation.
 */
import { randomUUID } from 'node:crypto';
import azureFunctions from '@azure/functions';
import type { LogLevel, Timer } from '@azure/functions';
import { syncHttpHandler } from '../../src/functions/sync-http.ts';
import { syncTimerHandler } from '../../src/functions/sync-timer.ts';
import type { SyncRunner } from '../../src/functions/run-sync.ts';

const { HttpRequest, InvocationContext } = azureFunctions;

/** One line as the host received it through the invocation context. */
export interface LoggedLine {
  readonly level: LogLevel;
  readonly text: string;
}

export interface Invocation {
  readonly invocationId: string;
  readonly context: InstanceType<typeof InvocationContext>;
  readonly lines: LoggedLine[];
}

/** `onLine` sees each line as it is logged, while the invocation is still running. */
export function newInvocation(functionName: 'sync' | 'syncTimer' | 'verify', onLine?: (line: LoggedLine) => void): Invocation {
  const invocationId = randomUUID();
  const lines: LoggedLine[] = [];
  const context = new InvocationContext({
    invocationId,
    functionName,
    logHandler: (level, ...args) => {
      const line = { level, text: args.map(String).join(' ') };
      lines.push(line);
      onLine?.(line);
    },
  });
  return { invocationId, context, lines };
}

export interface HttpCall {
  readonly invocationId: string;
  readonly status: number;
  readonly headers: Headers;
  /** The response body as sent. */
  readonly text: string;
  readonly body: Record<string, unknown>;
  readonly lines: readonly LoggedLine[];
}

/**
 * `path` as a client writes it after the host name, e.g. `/api/sync/all?dryRun=true`. The route
 * parameter is taken from the path, as the host's route template `sync/{provider}` would.
 */
export async function callHttp(
  runner: SyncRunner,
  path: string,
  init: { method?: string; body?: string; onLine?: (line: LoggedLine) => void } = {},
): Promise<HttpCall> {
  const url = new URL(path, 'https://artifacts-sync.azurewebsites.net');
  const provider = /^\/api\/sync\/([^/]*)$/.exec(url.pathname)?.[1];
  if (provider === undefined) throw new Error(`callHttp: ${path} does not match the route /api/sync/{provider}`);
  const request = new HttpRequest({
    method: init.method ?? 'POST',
    url: url.href,
    params: { provider: decodeURIComponent(provider) },
    ...(init.body === undefined ? {} : { body: { string: init.body } }),
  });
  const invocation = newInvocation('sync', init.onLine);
  const response = await syncHttpHandler(runner)(request, invocation.context);
  if (typeof response.body !== 'string') throw new Error('the handler answered without a JSON text body');
  return {
    invocationId: invocation.invocationId,
    status: response.status ?? 200,
    headers: new Headers(response.headers),
    text: response.body,
    body: JSON.parse(response.body) as Record<string, unknown>,
    lines: invocation.lines,
  };
}

export interface TimerCall {
  readonly invocationId: string;
  /** What the handler threw (the host then marks the invocation failed), if anything. */
  readonly error: Error | undefined;
  readonly lines: readonly LoggedLine[];
}

export async function callTimer(runner: SyncRunner, options: { isPastDue?: boolean } = {}): Promise<TimerCall> {
  const invocation = newInvocation('syncTimer');
  const due = new Date(Date.now() - (options.isPastDue ? 3 * 3_600_000 : 0));
  const timer: Timer = {
    isPastDue: options.isPastDue ?? false,
    schedule: { adjustForDST: true },
    scheduleStatus: { last: new Date(due.getTime() - 3_600_000).toISOString(), next: due.toISOString(), lastUpdated: due.toISOString() },
  };
  let error: Error | undefined;
  try {
    await syncTimerHandler(runner)(timer, invocation.context);
  } catch (thrown) {
    error = thrown instanceof Error ? thrown : new Error(String(thrown));
  }
  return { invocationId: invocation.invocationId, error, lines: invocation.lines };
}

/** Each line parsed as the JSON object it must be. */
export function loggedEvents(lines: readonly LoggedLine[]): Record<string, unknown>[] {
  return lines.map((line) => JSON.parse(line.text) as Record<string, unknown>);
}
