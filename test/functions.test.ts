/**
 * The Functions adapters (src/functions) against the shared Azurite and s3rver: the HTTP contract
 * (every status), the timer, deadlines, structured logs, and that no secret leaves the process.
 * The handlers are called the way the host calls them; see test/functions-registration.test.ts for
 * what registers with the host, and test/functions-key-vault.test.ts for keys from Key Vault.
 */
import { afterAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { LockHeldError } from '../src/core/errors.ts';
import type { RunReport, TargetReport } from '../src/core/report.ts';
import { createSyncRunner, type SyncRunner } from '../src/functions/run-sync.ts';
import { callHttp, callTimer, loggedEvents, type HttpCall, type LoggedLine } from './support/functions-invocation.ts';
import { blobServiceClientFor } from './support/emulators.ts';
import { createScenario, mirrorDifferences, pseudoRandomBytes, putSource, readAll, type Scenario } from './support/scenario.ts';

const emulators = inject('emulators');

/** Distinctive values (s3rver checks no signature, so any secret works): any leak is found by a plain search. */
const PLANTED = {
  awsSecret: 'planted/aws+Secret=0123456789abcdefAWS',
  ociSecret: 'planted/oci+Secret=0123456789abcdefOCI',
  functionKey: 'planted-function-key-0123456789abcdef',
} as const;

const SOURCE_OBJECTS: Record<string, string> = {
  'releases/1.0.0/app.tar.gz': 'app 1.0.0 bytes',
  'releases/1.0.1/app.tar.gz': 'app 1.0.1 bytes, a little longer',
  'checksums/SHA256SUMS': 'abc123  app.tar.gz\n',
  'README.txt': 'release artifacts',
};

let scenario: Scenario;
const scenarios: Scenario[] = [];

async function seededScenario(extraSettings: Record<string, string> = {}): Promise<Scenario> {
  const created = await createScenario(emulators, 'fn', {
    AWS_SECRET_ACCESS_KEY: PLANTED.awsSecret,
    OCI_SECRET_KEY: PLANTED.ociSecret,
    ...extraSettings,
  });
  scenarios.push(created);
  for (const [key, body] of Object.entries(SOURCE_OBJECTS)) await putSource(created, key, body);
  return created;
}

beforeEach(async () => {
  scenario = await seededScenario();
});
afterAll(() => {
  for (const created of scenarios) created.s3.destroy();
});

function runnerFor(settings: Record<string, string>, now?: () => number): SyncRunner {
  return createSyncRunner({ settings, ...(now === undefined ? {} : { now }) });
}

function reportOf(call: HttpCall): RunReport & { invocationId: string } {
  return call.body as unknown as RunReport & { invocationId: string };
}

function target(report: RunReport, name: 'azure' | 'oci'): TargetReport {
  const found = report.targets.find((entry) => entry.target === name);
  if (found === undefined) throw new Error(`no ${name} target in the report`);
  return found;
}

/** What every response and every log line of an invocation must carry. */
function expectInvocationIdEverywhere(call: { invocationId: string; lines: readonly LoggedLine[]; headers?: Headers; body?: Record<string, unknown> }): void {
  expect(call.lines.length).toBeGreaterThan(0);
  for (const event of loggedEvents(call.lines)) expect(event['invocationId']).toBe(call.invocationId);
  if (call.headers !== undefined) expect(call.headers.get('x-invocation-id')).toBe(call.invocationId);
  if (call.body !== undefined) expect(call.body['invocationId']).toBe(call.invocationId);
}

async function expectTargetsUntouched(): Promise<void> {
  const stored = await readAll(scenario);
  expect([...stored.azure.keys()]).toEqual([]);
  expect([...stored.oci.keys()]).toEqual([]);
}

describe('the HTTP trigger', () => {
  it('POST /api/sync/all mirrors the bucket to both targets and answers 200 with the report', async () => {
    const call = await callHttp(runnerFor(scenario.settings), '/api/sync/all');

    expect(call.status).toBe(200);
    expect(call.headers.get('content-type')).toBe('application/json; charset=utf-8');
    const report = reportOf(call);
    expect(report).toMatchObject({ provider: 'all', dryRun: false, complete: true, failures: [] });
    expect(target(report, 'azure')).toMatchObject({ copied: 4, failed: 0, complete: true });
    expect(target(report, 'oci')).toMatchObject({ copied: 4, failed: 0, complete: true });
    const stored = await readAll(scenario);
    expect(mirrorDifferences(stored.source, stored.azure)).toEqual([]);
    expect(mirrorDifferences(stored.source, stored.oci)).toEqual([]);
    expectInvocationIdEverywhere(call);
  });

  it('GET works too: GET /api/sync/azure mirrors only Azure, and a second call finds nothing to do', async () => {
    const runner = runnerFor(scenario.settings);
    const first = await callHttp(runner, '/api/sync/azure', { method: 'GET' });
    const second = await callHttp(runner, '/api/sync/azure', { method: 'GET' });

    expect(first.status).toBe(200);
    expect(reportOf(first).targets.map((entry) => entry.target)).toEqual(['azure']);
    expect(second.status).toBe(200);
    expect(target(reportOf(second), 'azure')).toMatchObject({ copied: 0, unchanged: 4, complete: true });
    const stored = await readAll(scenario);
    expect(mirrorDifferences(stored.source, stored.azure)).toEqual([]);
    expect([...stored.oci.keys()]).toEqual([]);
    expect(second.invocationId).not.toBe(first.invocationId);
    expectInvocationIdEverywhere(second);
  });

  it('?dryRun=true answers 200 with the plan, each action with its reason, and changes nothing', async () => {
    const call = await callHttp(runnerFor(scenario.settings), '/api/sync/all?dryRun=true', { method: 'GET' });

    expect(call.status).toBe(200);
    const report = reportOf(call);
    expect(report.dryRun).toBe(true);
    for (const name of ['azure', 'oci'] as const) {
      const plan = target(report, name).plan ?? [];
      expect(plan.map((action) => action.key).sort()).toEqual(Object.keys(SOURCE_OBJECTS).sort());
      for (const action of plan) expect(action).toMatchObject({ action: 'copy', reason: expect.stringContaining('missing') });
    }
    await expectTargetsUntouched();
    expectInvocationIdEverywhere(call);
  });

  it('?dryRun=false is a real run', async () => {
    const call = await callHttp(runnerFor(scenario.settings), '/api/sync/oci?dryRun=false');

    expect(call.status).toBe(200);
    expect(reportOf(call)).toMatchObject({ dryRun: false, complete: true });
  });

  it('an unknown provider answers 400 naming all, azure and oci, and nothing is attempted', async () => {
    const call = await callHttp(runnerFor(scenario.settings), '/api/sync/gcp');

    expect(call.status).toBe(400);
    expect(call.body['error']).toMatch(/unknown provider "gcp".*all, azure, oci/);
    expect(Object.keys(call.body).sort()).toEqual(['error', 'invocationId']);
    await expectTargetsUntouched();
    expectInvocationIdEverywhere(call);
  });

  it.each([
    ['an unknown parameter', '?force=true', /unknown query parameter "force": allowed is dryRun=true or dryRun=false/],
    ['a misspelt dryRun', '?dryrun=true', /unknown query parameter "dryrun": allowed is dryRun=true or dryRun=false/],
    ['two unknown parameters', '?dryRun=true&a=1&b=2', /unknown query parameters "a", "b"/],
    ['a dryRun that is not a boolean', '?dryRun=yes', /dryRun "yes" is not true or false/],
    ['an empty dryRun', '?dryRun=', /dryRun "" is not true or false/],
    ['dryRun given twice', '?dryRun=true&dryRun=false', /dryRun is given 2 times/],
  ])('%s answers 400 naming what is allowed, and nothing is attempted', async (_case, query, message) => {
    const call = await callHttp(runnerFor(scenario.settings), `/api/sync/all${query}`);

    expect(call.status).toBe(400);
    expect(call.body['error']).toMatch(message);
    await expectTargetsUntouched();
    expectInvocationIdEverywhere(call);
  });

  it('the function key may come as ?code=, and it is neither rejected nor echoed', async () => {
    const call = await callHttp(runnerFor(scenario.settings), `/api/sync/all?dryRun=true&code=${PLANTED.functionKey}`);

    expect(call.status).toBe(200);
    expect(call.text).not.toContain(PLANTED.functionKey);
    for (const line of call.lines) expect(line.text).not.toContain(PLANTED.functionKey);
  });

  it('a POST whose body carries parameters answers 400 instead of ignoring them and running for real', async () => {
    const call = await callHttp(runnerFor(scenario.settings), '/api/sync/all', { body: '{"dryRun": true}' });

    expect(call.status).toBe(400);
    expect(call.body['error']).toMatch(/parameters go in the query string/);
    await expectTargetsUntouched();
  });

  it('a POST with an empty JSON object as its body runs', async () => {
    const call = await callHttp(runnerFor(scenario.settings), '/api/sync/azure?dryRun=true', { body: '{}' });

    expect(call.status).toBe(200);
  });

  it('a target whose bucket is missing answers 500 with the report naming the failure, and the other target is still mirrored', async () => {
    const settings = { ...scenario.settings, OCI_BUCKET: 'fn-oci-bucket-that-does-not-exist' };
    const call = await callHttp(runnerFor(settings), '/api/sync/all');

    expect(call.status).toBe(500);
    const report = reportOf(call);
    expect(report.complete).toBe(false);
    expect(target(report, 'oci')).toMatchObject({ complete: false, failures: [expect.objectContaining({ target: 'oci', operation: 'list' })] });
    expect(target(report, 'azure')).toMatchObject({ copied: 4, complete: true });
    const stored = await readAll(scenario);
    expect(mirrorDifferences(stored.source, stored.azure)).toEqual([]);
    const failureLines = call.lines.filter((line) => JSON.parse(line.text).event === 'failure');
    expect(failureLines.length).toBeGreaterThan(0);
    expect(failureLines.every((line) => line.level === 'error')).toBe(true);
    expectInvocationIdEverywhere(call);
  });

  it('missing settings answer 503 naming the settings, and nothing is attempted', async () => {
    const call = await callHttp(runnerFor({}), '/api/sync/all');

    expect(call.status).toBe(503);
    expect(Object.keys(call.body).sort()).toEqual(['error', 'invocationId']);
    expect(call.body['error']).toContain('AWS_S3_BUCKET is required');
    expect(call.body['error']).toContain('AZURE_STORAGE_CONTAINER is required');
    expect(call.body['error']).toContain('OCI_BUCKET is required');
    expectInvocationIdEverywhere(call);
    const end = loggedEvents(call.lines).find((event) => event['event'] === 'invocation-end');
    expect(end).toMatchObject({ status: 503, error: expect.stringContaining('AWS_S3_BUCKET') });
  });

  it('an HTTP deadline the platform would not wait for answers 503 naming SYNC_HTTP_DEADLINE_SECONDS and its range', async () => {
    const call = await callHttp(runnerFor({ ...scenario.settings, SYNC_HTTP_DEADLINE_SECONDS: '230' }), '/api/sync/all');

    expect(call.status).toBe(503);
    expect(call.body['error']).toContain('SYNC_HTTP_DEADLINE_SECONDS "230" is not a whole number from 10 to 220');
    await expectTargetsUntouched();
  });

  it('a run while another holds a target\'s lock answers 409 naming the holder\'s invocation, and does not start', async () => {
    await putSource(scenario, 'releases/big.bin', pseudoRandomBytes(24 * 1024 * 1024, 7));
    const runner = runnerFor(scenario.settings);
    const lockBlob = blobServiceClientFor(emulators.azurite).getContainerClient('artifacts-sync-locks').getBlockBlobClient(`azure/${emulators.azurite.accountName}/${scenario.container}.lock`);
    let second: Promise<HttpCall> | undefined;
    // The lock is taken while the first run lists; once it holds it, the 24 MiB copy keeps it holding.
    const first = callHttp(runner, '/api/sync/all', {
      onLine: (line) => {
        if (second !== undefined || JSON.parse(line.text).event !== 'plan') return;
        second = (async () => {
          for (;;) {
            const properties = await lockBlob.getProperties().catch(() => undefined);
            if (properties?.leaseState === 'leased' && properties.metadata?.['holder'] !== undefined) return callHttp(runner, '/api/sync/azure');
            await new Promise((resolve) => setTimeout(resolve, 5));
          }
        })();
      },
    });
    const firstCall = await first;
    const secondCall = await second!;

    expect(firstCall.status).toBe(200);
    expect(secondCall.status).toBe(409);
    expect(secondCall.body).toEqual({ invocationId: secondCall.invocationId, error: expect.stringContaining(`another run is mirroring azure right now`) });
    expect(secondCall.body['error']).toContain(firstCall.invocationId);
    // The second run listed (beside its lock attempt) and stopped there: it planned at most, changed nothing.
    const secondEvents = loggedEvents(secondCall.lines).map((event) => event['event']);
    for (const change of ['transferred', 'deleted', 'target-end', 'run-end']) expect(secondEvents).not.toContain(change);
    expect(secondEvents.at(-1)).toBe('invocation-end');
    expectInvocationIdEverywhere(secondCall);
  });

  it('an unexpected error answers 500 with its message, masked', async () => {
    const thrown = new Error(`something nobody planned for, with AccountKey=${emulators.azurite.accountKey}`);
    const runner = createSyncRunner({ settings: scenario.settings, service: { sync: () => Promise.reject(thrown) } });
    const call = await callHttp(runner, '/api/sync/all');

    expect(call.status).toBe(500);
    expect(call.body).toEqual({ invocationId: call.invocationId, error: 'something nobody planned for, with AccountKey=[redacted]' });
    expectInvocationIdEverywhere(call);
  });
});

describe('deadlines', () => {
  it('a run whose deadline comes before the first transfer answers 200 incomplete, leaves nothing at the targets, and the next run completes the mirror', async () => {
    // The invocation "started" 185 s ago: past the point where transfers may start (170 s of the
    // default 200), 15 s before the cut-off, so the listings finish and no transfer begins.
    const late = runnerFor(scenario.settings, () => Date.now() - 185_000);
    const cutShort = await callHttp(late, '/api/sync/all');

    expect(cutShort.status).toBe(200);
    const report = reportOf(cutShort);
    expect(report.complete).toBe(false);
    expect(report.stoppedEarly).toMatch(/deadline/);
    expect(report.failures).toEqual([]);
    expect(report.stoppedBy).toBe('deadline');
    for (const name of ['azure', 'oci'] as const) expect(target(report, name)).toMatchObject({ copied: 0, failed: 0, deferred: 4, deferredBy: { deadline: 4 }, complete: false });
    await expectTargetsUntouched();

    const next = await callHttp(runnerFor(scenario.settings), '/api/sync/all');

    expect(next.status).toBe(200);
    expect(reportOf(next).complete).toBe(true);
    const stored = await readAll(scenario);
    expect(mirrorDifferences(stored.source, stored.azure)).toEqual([]);
    expect(mirrorDifferences(stored.source, stored.oci)).toEqual([]);
  });

  it('an HTTP run stops starting transfers after 170 s and cancels at 200 s by default, and logs both times', async () => {
    const startedMs = Date.now();
    const call = await callHttp(runnerFor(scenario.settings, () => startedMs), '/api/sync/all?dryRun=true');

    const start = loggedEvents(call.lines).find((event) => event['event'] === 'invocation-start');
    expect(start).toMatchObject({
      trigger: 'http',
      provider: 'all',
      dryRun: true,
      stopStartingAt: new Date(startedMs + 170_000).toISOString(),
      abortAt: new Date(startedMs + 200_000).toISOString(),
    });
  });
});

describe('the timer trigger', () => {
  it('the timer mirrors all targets and logs a past-due run as such', async () => {
    const call = await callTimer(runnerFor(scenario.settings), { isPastDue: true });

    expect(call.error).toBeUndefined();
    const stored = await readAll(scenario);
    expect(mirrorDifferences(stored.source, stored.azure)).toEqual([]);
    expect(mirrorDifferences(stored.source, stored.oci)).toEqual([]);
    const pastDue = call.lines.find((line) => JSON.parse(line.text).event === 'timer-past-due');
    expect(pastDue?.level).toBe('warning');
    const events = loggedEvents(call.lines);
    expect(events.find((event) => event['event'] === 'invocation-start')).toMatchObject({ trigger: 'timer', provider: 'all', dryRun: false });
    expect(events.find((event) => event['event'] === 'invocation-end')).toMatchObject({ trigger: 'timer', status: 200, complete: true, failures: 0 });
    expectInvocationIdEverywhere(call);
  });

  it('an on-time run logs no past-due line', async () => {
    const call = await callTimer(runnerFor(scenario.settings));

    expect(call.error).toBeUndefined();
    expect(loggedEvents(call.lines).map((event) => event['event'])).not.toContain('timer-past-due');
  });

  it('a timer run with failures throws, so the host counts the invocation as failed', async () => {
    const call = await callTimer(runnerFor({ ...scenario.settings, OCI_BUCKET: 'fn-oci-bucket-that-does-not-exist' }));

    expect(call.error?.message).toMatch(/ended with failures/);
    expect(call.error?.message).toContain(call.invocationId);
    // The healthy target is mirrored all the same.
    const stored = await readAll(scenario);
    expect(mirrorDifferences(stored.source, stored.azure)).toEqual([]);
  });

  it('a timer run without its settings throws naming them', async () => {
    const call = await callTimer(runnerFor({}));

    expect(call.error?.message).toMatch(/could not start.*AWS_S3_BUCKET is required/s);
    expectInvocationIdEverywhere(call);
  });

  it('a timer run that finds the lock taken ends quietly: the run holding it does the work', async () => {
    const runner = createSyncRunner({ settings: scenario.settings, service: { sync: () => Promise.reject(new LockHeldError('another run is mirroring azure right now')) } });
    const call = await callTimer(runner);

    expect(call.error).toBeUndefined();
    const end = call.lines.find((line) => JSON.parse(line.text).event === 'invocation-end');
    expect(end?.level).toBe('warning');
    expect(JSON.parse(end?.text ?? '{}')).toMatchObject({ status: 409, error: 'another run is mirroring azure right now' });
  });
});

describe('structured logs', () => {
  it('a run logs one JSON line per event: start, listings, plans and end with counts, bytes and durations', async () => {
    const call = await callHttp(runnerFor(scenario.settings), '/api/sync/all');
    const events = loggedEvents(call.lines);
    const names = events.map((event) => event['event']);

    expect(names[0]).toBe('invocation-start');
    expect(names.at(-1)).toBe('invocation-end');
    expect(names).toEqual(expect.arrayContaining(['run-start', 'listed', 'plan', 'run-end']));
    expect(events.find((event) => event['event'] === 'plan' && event['target'] === 'oci')).toMatchObject({ copy: 4, replace: 0, delete: 0, unchanged: 0 });
    expect(events.find((event) => event['event'] === 'run-end')).toMatchObject({ complete: true, failures: 0, durationMs: expect.any(Number) });
    expect(events.find((event) => event['event'] === 'invocation-end')).toMatchObject({ status: 200, complete: true, failures: 0, durationMs: expect.any(Number) });
    for (const event of events) expect(event['functionName']).toBe('sync');
  });

  it('each copied object is a debug line, so the default log level keeps Application Insights lean', async () => {
    const call = await callHttp(runnerFor(scenario.settings), '/api/sync/azure');
    const copied = call.lines.filter((line) => JSON.parse(line.text).event === 'transferred');

    expect(copied).toHaveLength(4);
    expect(copied.every((line) => line.level === 'debug')).toBe(true);
  });
});

describe('secrets', () => {
  it('planted keys, the connection string\'s AccountKey and the function key appear in no log line, response or thrown error, on any path', async () => {
    const accountKey = emulators.azurite.accountKey;
    const missingBucket = { ...scenario.settings, OCI_BUCKET: 'fn-oci-bucket-that-does-not-exist' };
    const badRegion = { ...scenario.settings, AWS_REGION: 'not a region' };
    const unreachableAzure = {
      ...scenario.settings,
      AZURE_STORAGE_CONNECTION_STRING: scenario.settings['AZURE_STORAGE_CONNECTION_STRING']!.replace(/BlobEndpoint=http:\/\/127\.0\.0\.1:\d+/, 'BlobEndpoint=http://127.0.0.1:9'),
      SYNC_RETRY_ATTEMPTS: '1',
    };
    const key = `code=${PLANTED.functionKey}`;
    const calls = [
      await callHttp(runnerFor(scenario.settings), `/api/sync/all?dryRun=true&${key}`),
      await callHttp(runnerFor(scenario.settings), `/api/sync/all?${key}`),
      await callHttp(runnerFor(missingBucket), `/api/sync/all?${key}`),
      await callHttp(runnerFor(unreachableAzure), `/api/sync/azure?${key}`),
      await callHttp(runnerFor(badRegion), `/api/sync/all?${key}`),
      await callHttp(runnerFor(scenario.settings), `/api/sync/all?dryRun=maybe&${key}`),
    ];
    const timerCalls = [await callTimer(runnerFor(missingBucket), { isPastDue: true }), await callTimer(runnerFor(badRegion))];

    expect(calls.map((call) => call.status)).toEqual([200, 200, 500, 500, 503, 400]);
    const outputs = [
      ...calls.flatMap((call) => [call.text, ...call.lines.map((line) => line.text), JSON.stringify([...call.headers])]),
      ...timerCalls.flatMap((call) => [call.error?.message ?? '', ...call.lines.map((line) => line.text)]),
    ];
    expect(outputs.join('\n')).toContain('failure');
    for (const secret of [PLANTED.awsSecret, PLANTED.ociSecret, PLANTED.functionKey, accountKey]) {
      for (const output of outputs) expect(output).not.toContain(secret);
    }
  });
});
