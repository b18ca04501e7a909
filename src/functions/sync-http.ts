/**
 * `GET|POST /api/sync/{all|azure|oci}[?dryRun=true|false]`: the HTTP adapter. It checks the request,
 * runs the mirror through the shared runner, and answers with the report (or an error) as JSON.
 */
import type { HttpHandler, HttpRequest, HttpResponseInit, InvocationContext } from '@azure/functions';
import { describeError } from '../core/errors.ts';
import type { ProviderChoice } from '../core/types.ts';
import { parseProvider } from '../config.ts';
import { logLine, redactedJson, type RunRequest, type SyncRunner } from './run-sync.ts';

export function syncHttpHandler(runner: SyncRunner): HttpHandler {
  return async (request, context) => {
    const parsed = await parseRequest(request);
    if (typeof parsed === 'string') {
      logLine(context, 'warn', { event: 'invocation-end', trigger: 'http', status: 400, error: parsed });
      return respond(context, 400, { error: parsed });
    }
    const outcome = await runner.run(context, parsed);
    return respond(context, outcome.status, 'report' in outcome ? outcome.report : { error: outcome.error });
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

/** A JSON answer carrying the invocation id, every string masked. */
export function respond(context: InvocationContext, status: number, payload: object): HttpResponseInit {
  return {
    status,
    headers: { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'x-invocation-id': context.invocationId },
    body: redactedJson({ invocationId: context.invocationId, ...payload }),
  };
}
