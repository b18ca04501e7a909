/**
 * `GET|POST /api/sync/{all|azure|oci}[?dryRun=true|false]`: the HTTP adapter. It checks the request,
 * runs the mirror through the shared runner, and answers with the report (or an error) as JSON.
 * With AzureWebJobsStorage (where runs are kept) it answers within `replyWithinMs`: the report when
 * the run has ended by then, else 202 with `Location: /api/runs/{id}` while the run goes on (the
 * async request-reply pattern). Dry runs keep no record and are always answered with their report.
 */
import type { HttpHandler, HttpRequest, HttpResponseInit, InvocationContext } from '@azure/functions';
import { describeError } from '../core/errors.ts';
import type { ProviderChoice } from '../core/types.ts';
import { parseProvider } from '../config.ts';
import { logLine, redactedJson, type RunOutcome, type RunRequest, type SyncRunner } from './run-sync.ts';

/** `replyWithin`: how long a request waits for the run's report before a 202 (read per request: a bad setting is a 503 naming it). */
export function syncHttpHandler(runner: SyncRunner, replyWithin: () => number = () => Number.POSITIVE_INFINITY): HttpHandler {
  return async (request, context) => {
    const parsed = await parseRequest(request);
    if (typeof parsed === 'string') {
      logLine(context, 'warn', { event: 'invocation-end', trigger: 'http', status: 400, error: parsed });
      return respond(context, 400, { error: parsed });
    }
    let replyWithinMs: number;
    try {
      replyWithinMs = replyWithin();
    } catch (error) {
      logLine(context, 'error', { event: 'invocation-end', trigger: 'http', status: 503, error: describeError(error) });
      return respond(context, 503, { error: describeError(error) });
    }
    let statusId: string | undefined;
    let opened: () => void = () => undefined;
    const openedOnce = new Promise<void>((resolve) => (opened = resolve));
    const running = runner.run(context, { ...parsed, onRunOpened: (id) => { statusId = id; opened(); } });
    const answer = (outcome: RunOutcome): HttpResponseInit => respond(context, outcome.status, 'report' in outcome ? { ...(statusId === undefined ? {} : { runId: statusId }), ...outcome.report } : { error: outcome.error });
    if (!Number.isFinite(replyWithinMs) || parsed.dryRun) return answer(await running);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const replyBy = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), replyWithinMs)));
    // Late and with a record: answer 202; the run goes on in this instance and its record says how it ends.
    const first = await Promise.race([running, replyBy.then(async () => {
      await Promise.race([openedOnce, running]);
      return 'late' as const;
    })]);
    clearTimeout(timer);
    if (first !== 'late') return answer(first);
    if (statusId === undefined) return answer(await running);
    const location = new URL(`/api/runs/${statusId}`, request.url).pathname;
    logLine(context, 'info', { event: 'run-accepted', runId: statusId, location });
    return { ...respond(context, 202, { runId: statusId, state: 'running', statusUrl: location }), headers: { ...JSON_HEADERS, location, 'retry-after': '10', 'x-invocation-id': context.invocationId } };
  };
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
