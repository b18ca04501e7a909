/**
 * Async HTTP runs (the async request-reply pattern): `POST /api/sync/{provider}` answers with the
 * report when the run ends within SYNC_HTTP_REPLY_WITHIN_MS, else 202 with `Location: /api/runs/{id}`;
 * `GET /api/runs/{id}` follows the run to its end, `GET /api/status` names the last complete run per
 * target. Handlers are called as the host calls them (the host is not available here); Azurite (blob,
 * queue) and s3rver are real. A fanned-out run is drained by the CLI worker, which runs the queue
 * function's own handler.
 */
import { afterAll, describe, expect, inject, it } from 'vitest';
import { createSyncRunner } from '../src/functions/run-sync.ts';
import { runCli } from './support/cli-run.ts';
import { uniqueName } from './support/emulators.ts';
import { callHttp, callRuns } from './support/functions-invocation.ts';
import { createScenario, mirrorDifferences, putSource, readAll, type Scenario } from './support/scenario.ts';

const emulators = inject('emulators');
const scenarios: Scenario[] = [];
afterAll(() => {
  for (const scenario of scenarios) scenario.s3.destroy();
});

async function queueScenario(extra: Record<string, string> = {}): Promise<Scenario> {
  const created = await createScenario(emulators, 'runshttp', { AzureWebJobsStorage: emulators.azurite.connectionString, SYNC_QUEUE_NAME: uniqueName('runs'), ...extra });
  scenarios.push(created);
  return created;
}

/** Reads `GET /api/runs/{id}` until `done` says so; a bounded number of looks, no time asserted. */
async function pollRun(s: Scenario, id: string, done: (body: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
  for (let look = 0; look < 300; look += 1) {
    const call = await callRuns(s.settings, id);
    expect(call.status).toBe(200);
    if (done(call.body)) return call.body;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`run ${id} did not get there`);
}

describe('async HTTP runs', () => {
  it('a small run is answered 200 with its report and run id; GET /api/runs/{id} shows it complete', async () => {
    const s = await queueScenario();
    await putSource(s, 'small/one.txt', 'one');
    const call = await callHttp(createSyncRunner({ settings: s.settings }), '/api/sync/azure', { replyWithinMs: 60_000 });

    expect(call.status).toBe(200);
    expect(call.body).toMatchObject({ complete: true, runId: expect.stringMatching(/^\d{8}T\d{6}Z-[0-9a-f]{8}$/) });
    const run = await callRuns(s.settings, call.body['runId'] as string);
    expect(run.body).toMatchObject({ state: 'complete', targets: { azure: { copied: 1, failed: 0 } }, report: { complete: true } });
  });

  it('a large run is answered 202 with Location: /api/runs/{id}, and that URL reaches complete once the workers are done', async () => {
    const s = await queueScenario({ SYNC_FAN_OUT_MIN_TRANSFERS: '10', SYNC_FAN_OUT_KEYS_PER_MESSAGE: '5' });
    for (let index = 0; index < 30; index += 1) await putSource(s, `large/${String(index).padStart(2, '0')}.txt`, `large ${index}`);
    const call = await callHttp(createSyncRunner({ settings: s.settings }), '/api/sync/all', { replyWithinMs: 0 });

    expect(call.status).toBe(202);
    const id = call.body['runId'] as string;
    expect(call.headers.get('location')).toBe(`/api/runs/${id}`);
    expect(call.body).toMatchObject({ state: 'running', statusUrl: `/api/runs/${id}` });

    const planned = await pollRun(s, id, (body) => (body['planning'] as { done: boolean }).done);
    expect(planned).toMatchObject({ state: 'running', pieces: { enqueued: 12 } });
    expect((await runCli(['work', '--until-empty'], s.settings)).exitCode).toBe(0);
    const ended = await pollRun(s, id, (body) => body['state'] !== 'running');

    expect(ended).toMatchObject({ state: 'complete', pieces: { enqueued: 12, finished: 12, pending: 0 }, targets: { azure: { enqueued: 30, copied: 30 }, oci: { enqueued: 30, copied: 30 } } });
    const state = await readAll(s);
    expect(mirrorDifferences(state.source, state.azure)).toEqual([]);
    expect(mirrorDifferences(state.source, state.oci)).toEqual([]);
    const status = await callRuns(s.settings);
    expect(status.body).toMatchObject({ targets: { azure: { lastCompleteRun: { id } }, oci: { lastCompleteRun: { id } } }, queue: { pending: 0, poisoned: 0 } });
  });

  it('GET /api/runs/{id} answers 404 for an unknown or malformed id', async () => {
    const s = await queueScenario();
    expect((await callRuns(s.settings, '20200101T000000Z-00000000')).status).toBe(404);
    const malformed = await callRuns(s.settings, '../etc/passwd');
    expect(malformed.status).toBe(404);
    expect(malformed.body['error']).toContain('run ids look like');
  });
});
