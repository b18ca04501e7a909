/**
 * `GET|POST /api/sync/{all|azure|oci}[?dryRun=true|false]`: the HTTP adapter. It checks the request
 * and answers with the run's report (or an error) as JSON.
 * - With AzureWebJobsStorage (where runs are kept), a real run never runs in this invocation: the
 *   trigger opens the run's record and puts the run on the object queue, where a queue invocation
 *   runs it (functions/object-queue.ts); it then follows the record for SYNC_HTTP_REPLY_WITHIN_MS and
 *   answers with the report if the run has ended by then, else 202 with `Location: /api/runs/{id}`
 *   (the async request-reply pattern). Nothing is left running when it returns.
 * - Without it, and for dry runs (which keep no record), it runs the mirror itself and answers with
 *   the report, the run cut by SYNC_HTTP_DEADLINE_SECONDS.
 */
import type { HttpHandler, HttpRequest, HttpResponseInit, InvocationContext } from '@azure/functions';
import { ConfigError, describeError } from '../core/errors.ts';
import { failureCount } from '../core/report.ts';
import type { RunRecord } from '../core/run-record.ts';
import type { ProviderChoice } from '../core/types.ts';
import { loadConfig, loadEventConfig, loadFanOutConfig, parseProvider, type Settings } from '../config.ts';
import type { RunService } from '../runs.ts';
import { logLine, redactedJson, type RunOutcome, type RunRequest, type SyncRunner } from './run-sync.ts';

/** How often a request waiting for a queued run reads its record. */
const RECORD_POLL_MS = 150;

/** `settings`: where AzureWebJobsStorage and SYNC_HTTP_REPLY_WITHIN_MS are read, per request (a bad setting is a 503 naming it); without them, every run is answered synchronously. */
export function syncHttpHandler(runner: SyncRunner, settings?: Settings): HttpHandler {
  let runs: RunService | undefined;
  return async (request, context) => {
    const parsed = await parseRequest(request);
    if (typeof parsed === 'string') {
      logLine(context, 'warn', { event: 'invocation-end', trigger: 'http', status: 400, error: parsed });
      return respond(context, 400, { error: parsed });
    }
    let replyWithinMs: number | undefined;
    try {
      if (settings !== undefined && !parsed.dryRun && loadEventConfig(settings).hostStorage !== undefined) {
        replyWithinMs = loadFanOutConfig(settings).httpReplyWithinMs;
        // What the worker would refuse at once is refused here, before anything is enqueued.
        loadConfig(settings, parsed.provider);
        runs ??= (await import('../runs.ts')).createRunService(settings);
      }
    } catch (error) {
      const status = error instanceof ConfigError ? 503 : 500;
      logLine(context, 'error', { event: 'invocation-end', trigger: 'http', status, error: describeError(error) });
      return respond(context, status, { error: describeError(error) });
    }
    if (runs === undefined || replyWithinMs === undefined) return answer(context, await runner.run(context, parsed));
    let id: string;
    try {
      id = await runs.enqueueRun(parsed.provider, 'http');
    } catch (error) {
      logLine(context, 'error', { event: 'invocation-end', trigger: 'http', status: 500, error: describeError(error) });
      return respond(context, 500, { error: describeError(error) });
    }
    logLine(context, 'info', { event: 'run-enqueued', runId: id, provider: parsed.provider });
    const ended = await endedWithin(runs, id, replyWithinMs);
    if (ended !== undefined) {
      const outcome: RunOutcome = ended.report === undefined ? { status: 500, error: ended.planning.error ?? `run ${id} ended ${ended.state} without a report` } : { status: failureCount(ended.report) > 0 ? 500 : 200, report: ended.report };
      logLine(context, outcome.status === 200 ? 'info' : 'error', { event: 'invocation-end', trigger: 'http', status: outcome.status, runId: id, state: ended.state });
      return answer(context, outcome, id);
    }
    const location = new URL(`/api/runs/${id}`, request.url).pathname;
    logLine(context, 'info', { event: 'run-accepted', runId: id, location });
    return { ...respond(context, 202, { runId: id, state: 'running', statusUrl: location }), headers: { ...JSON_HEADERS, location, 'retry-after': '10', 'x-invocation-id': context.invocationId } };
  };
}

/** The run's record once it has ended, read every RECORD_POLL_MS for `withinMs`; `undefined` while it still runs. */
async function endedWithin(runs: Pick<RunService, 'get'>, id: string, withinMs: number): Promise<RunRecord | undefined> {
  const until = Date.now() + withinMs;
  while (Date.now() < until) {
    await new Promise((resolve) => setTimeout(resolve, Math.min(RECORD_POLL_MS, Math.max(0, until - Date.now()))));
    const record = await runs.get(id);
    if (record !== undefined && record.state !== 'running') return record;
  }
  return undefined;
}

/** A run's outcome as the answer; `runId` names its record when one is kept. */
function answer(context: InvocationContext, outcome: RunOutcome, runId?: string): HttpResponseInit {
  return respond(context, outcome.status, 'report' in outcome ? { ...(runId === undefined ? {} : { runId }), ...outcome.report } : { ...(runId === undefined ? {} : { runId }), error: outcome.error });
}

/** The run a request asks for, or what is wrong with it (for a 400). */
async function parseRequest(request: HttpRequest): Promise<RunRequest | string> {
  const provider = providerParameter(request);
  if (provider.problem !== undefined) return provider.problem;
  const dryRun = booleanQueryParameter(request, 'dryRun');
  if (typeof dryRun === 'string') return dryRun;
  // A body such as {"dryRun": true} would otherwise be ignored, and a real run would follow.
  const body = (await request.text()).trim();
  if (body !== '' && body !== '{}') return `the request body is not read, so it must be empty: parameters go in the query string; allowed is dryRun=true or dryRun=false (and code, the function key)`;
  return { trigger: 'http', provider: provider.provider, dryRun };
}

/** The route's `{provider}`, or what is wrong with it (for a 400). */
export function providerParameter(request: HttpRequest): { provider: ProviderChoice; problem?: undefined } | { problem: string } {
  try {
    return { provider: parseProvider(request.params['provider']) };
  } catch (error) {
    return { problem: describeError(error) };
  }
}

/**
 * The one query parameter `name` (true or false, default false) of a request that takes no other; or
 * what is wrong with the query, for a 400. `code` is how a function key may travel in the URL: the
 * host checks it, and it is never echoed or logged.
 */
export function booleanQueryParameter(request: HttpRequest, name: string): boolean | string {
  const allowed = `allowed is ${name}=true or ${name}=false (and code, the function key)`;
  const unknown = [...new Set(request.query.keys())].filter((parameter) => parameter !== name && parameter !== 'code');
  if (unknown.length > 0) {
    return `unknown query parameter${unknown.length === 1 ? '' : 's'} ${unknown.map((parameter) => JSON.stringify(parameter.slice(0, 64))).join(', ')}: ${allowed}`;
  }
  const values = request.query.getAll(name);
  if (values.length > 1) return `${name} is given ${values.length} times: give it once; ${allowed}`;
  if (values[0] !== undefined && values[0] !== 'true' && values[0] !== 'false') return `${name} ${JSON.stringify(values[0].slice(0, 64))} is not true or false: ${allowed}`;
  return values[0] === 'true';
}

const JSON_HEADERS = { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' };

/** A JSON answer carrying the invocation id, every string masked. */
export function respond(context: InvocationContext, status: number, payload: object): HttpResponseInit {
  return {
    status,
    headers: { ...JSON_HEADERS, 'x-invocation-id': context.invocationId },
    body: redactedJson({ invocationId: context.invocationId, ...payload }),
  };
}
