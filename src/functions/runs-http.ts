/**
 * `GET /api/runs/{id}`: a run's status record (its report once complete); `GET /api/status`: per
 * target the last complete run and the last run, and the queue's pending and poisoned messages.
 * Function keys on both (the record names keys and stores, never a secret). 404: no such run;
 * 503: no AzureWebJobsStorage, where runs are kept.
 */
import type { HttpHandler } from '@azure/functions';
import type { Settings } from '../config.ts';
import { ConfigError, describeError } from '../core/errors.ts';
import type { RunService } from '../runs.ts';
import { logLine } from './run-sync.ts';
import { respond } from './sync-http.ts';

/** The run service, created on first use; settings errors surface as 503 on each call. */
function lazyRuns(settings: Settings): () => Promise<RunService> {
  let runs: RunService | undefined;
  return async () => (runs ??= (await import('../runs.ts')).createRunService(settings));
}

export function runStatusHttpHandler(settings: Settings = process.env): HttpHandler {
  const runs = lazyRuns(settings);
  return async (request, context) => {
    const id = request.params['id'] ?? '';
    try {
      const service = await runs();
      const record = await service.get(id);
      if (record === undefined) return respond(context, 404, { error: `no run ${JSON.stringify(id.slice(0, 64))}: run ids look like 20261203T074500Z-3f9c2a1b, as POST /api/sync answers them` });
      const { runView } = await import('../runs.ts');
      return respond(context, 200, runView(record));
    } catch (error) {
      logLine(context, 'error', { event: 'run-status-failed', runId: id.slice(0, 64), error: describeError(error) });
      return respond(context, error instanceof ConfigError ? 503 : 500, { error: describeError(error) });
    }
  };
}

export function statusHttpHandler(settings: Settings = process.env): HttpHandler {
  const runs = lazyRuns(settings);
  return async (_request, context) => {
    try {
      return respond(context, 200, await (await runs()).overview());
    } catch (error) {
      logLine(context, 'error', { event: 'status-failed', error: describeError(error) });
      return respond(context, error instanceof ConfigError ? 503 : 500, { error: describeError(error) });
    }
  };
}
