/**
 * `GET /api/verify/{all|azure|oci}[?checksum=true|false]` (function key): the `verify` command over
 * HTTP. It compares until the HTTP deadline (SYNC_HTTP_DEADLINE_SECONDS, under Azure's 230 s limit);
 * objects not compared by then are counted as unchecked and the answer is not exact.
 * 200: exact; 500 with the report: differences, or not every object compared; 400: bad request;
 * 503: settings or secrets unusable; 500 with an error: the source could not be listed, or anything else.
 */
import type { HttpHandler, HttpRequest } from '@azure/functions';
import { ConfigError, describeError } from '../core/errors.ts';
import type { ProviderChoice } from '../core/types.ts';
import { describeDifference } from '../core/verify.ts';
import type { Settings } from '../config.ts';
import { SecretsError } from '../secrets.ts';
import type { SyncService } from '../sync.ts';
import { logLine, runDeadline } from './run-sync.ts';
import { booleanQueryParameter, providerParameter, respond } from './sync-http.ts';

/** Difference log lines per invocation: each difference is in the response; the log keeps the first ones and a count. */
const LOGGED_DIFFERENCES = 1000;

export function verifyHttpHandler(options: { readonly service: Pick<SyncService, 'verify'>; readonly settings: Settings; readonly now?: () => number }): HttpHandler {
  const now = options.now ?? Date.now;
  return async (request, context) => {
    const parsed = parseVerifyRequest(request);
    if (typeof parsed === 'string') {
      logLine(context, 'warn', { event: 'invocation-end', trigger: 'http-verify', status: 400, error: parsed });
      return respond(context, 400, { error: parsed });
    }
    const startedMs = now();
    try {
      const deadline = runDeadline(options.settings, 'http', startedMs);
      logLine(context, 'info', { event: 'invocation-start', trigger: 'http-verify', ...parsed, stopAt: new Date(deadline.stopStartingAt).toISOString() });
      const report = await options.service.verify({ ...parsed, stopAt: deadline.stopStartingAt, signal: AbortSignal.timeout(Math.max(0, deadline.abortAt - startedMs)) });
      let logged = 0;
      for (const target of report.targets) {
        for (const difference of target.differences) {
          if (logged++ < LOGGED_DIFFERENCES) logLine(context, 'warn', { event: 'verify-difference', target: target.target, ...difference, text: describeDifference(difference) });
        }
      }
      const differences = report.targets.reduce((sum, target) => sum + target.differences.length, 0);
      const unchecked = report.targets.reduce((sum, target) => sum + target.unchecked, 0);
      const status = report.exact ? 200 : 500;
      logLine(context, report.exact ? 'info' : 'error', { event: 'invocation-end', trigger: 'http-verify', status, exact: report.exact, differences, unchecked, durationMs: now() - startedMs });
      return respond(context, status, report);
    } catch (error) {
      const status = error instanceof ConfigError || error instanceof SecretsError ? 503 : 500;
      logLine(context, 'error', { event: 'invocation-end', trigger: 'http-verify', status, error: describeError(error), durationMs: now() - startedMs });
      return respond(context, status, { error: describeError(error) });
    }
  };
}

function parseVerifyRequest(request: HttpRequest): { provider: ProviderChoice; checksum: boolean } | string {
  const provider = providerParameter(request);
  if (provider.problem !== undefined) return provider.problem;
  const checksum = booleanQueryParameter(request, 'checksum');
  return typeof checksum === 'string' ? checksum : { provider: provider.provider, checksum };
}
