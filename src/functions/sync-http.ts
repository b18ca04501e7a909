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

/** `code` is how a function key may travel in the URL; the host checks it, and it is never echoed or logged. */
const QUERY_PARAMETERS = new Set(['dryRun', 'code']);
const ALLOWED = 'allowed is dryRun=true or dryRun=false (and code, the function key)';

/** The run a request asks for, or what is wrong with it (for a 400). */
async function parseRequest(request: HttpRequest): Promise<RunRequest | string> {
  let provider: ProviderChoice;
  try {
    provider = parseProvider(request.params['provider']);
  } catch (error) {
    return describeError(error);
  }
  const unknown = [...new Set(request.query.keys())].filter((name) => !QUERY_PARAMETERS.has(name));
  if (unknown.length > 0) {
    return `unknown query parameter${unknown.length === 1 ? '' : 's'} ${unknown.map((name) => JSON.stringify(name.slice(0, 64))).join(', ')}: ${ALLOWED}`;
  }
  const dryRun = request.query.getAll('dryRun');
  if (dryRun.length > 1) return `dryRun is given ${dryRun.length} times: give it once; ${ALLOWED}`;
  if (dryRun[0] !== undefined && dryRun[0] !== 'true' && dryRun[0] !== 'false') {
    return `dryRun ${JSON.stringify(dryRun[0].slice(0, 64))} is not true or false: ${ALLOWED}`;
  }
  // A body such as {"dryRun": true} would otherwise be ignored, and a real run would follow.
  const body = (await request.text()).trim();
  if (body !== '' && body !== '{}') return `the request body is not read, so it must be empty: parameters go in the query string; ${ALLOWED}`;
  return { trigger: 'http', provider, dryRun: dryRun[0] === 'true' };
}

function respond(context: InvocationContext, status: number, payload: object): HttpResponseInit {
  return {
    status,
    headers: { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'x-invocation-id': context.invocationId },
    body: redactedJson({ invocationId: context.invocationId, ...payload }),
  };
}
