/**
 * Delete guards, end to end through the CLI: a source listing that failed, was cut short or came back
 * empty deletes nothing; a plan that deletes more than SYNC_MAX_DELETE_COUNT or SYNC_MAX_DELETE_PERCENT
 * deletes nothing but still copies; the dry run shows the same verdict.
 *
 * The source sits behind a counting proxy (faults, down) and the S3 stand-in (./support/s3-stand-in.ts),
 * which can cut a listing page short or make every page after the first fail.
 */
import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { runCli, runJson, targetOf } from './support/cli-run.ts';
import { createScenario, putBlob, putS3Object, putSource, readAll, type Scenario } from './support/scenario.ts';
import { createStandInScenario, type StandInScenario } from './support/stand-in-scenario.ts';

const emulators = inject('emulators');
const closers: (() => Promise<void>)[] = [];
afterAll(async () => {
  await Promise.all(closers.map((close) => close()));
});

/** Keys and MD5s of both targets, to compare before and after a run. */
async function targets(s: Scenario): Promise<{ azure: Record<string, string>; oci: Record<string, string> }> {
  const state = await readAll(s);
  const digest = (store: typeof state.azure): Record<string, string> => Object.fromEntries([...store].map(([key, object]) => [key, object.md5]));
  return { azure: digest(state.azure), oci: digest(state.oci) };
}

/**
 * Yesterday's mirror: `keep-1..N` and `gone.txt` were mirrored to both targets; since then `gone.txt`
 * was deleted from the source. A sound run deletes `gone.txt` at both targets.
 */
async function mirroredScenario(prefix: string, keep: number): Promise<StandInScenario> {
  const s = await createStandInScenario(emulators, { prefix });
  closers.push(() => s.close());
  for (let index = 1; index <= keep; index += 1) await putSource(s, `keep-${String(index).padStart(2, '0')}.txt`, `kept ${index}`);
  await putSource(s, 'gone.txt', 'deleted from the source since');
  expect((await runJson('all', s.settings)).exitCode).toBe(0);
  await s.s3.send(new DeleteObjectCommand({ Bucket: s.sourceBucket, Key: 'gone.txt' }));
  return s;
}

describe.concurrent('a bad source listing deletes nothing at either target', () => {
  const failures: [string, (s: StandInScenario) => Promise<void>, (s: StandInScenario) => void][] = [
    ['the source refuses connections', (s) => s.sourceProxy.setDown('refuse'), () => undefined],
    [
      'every ListObjectsV2 answers 500',
      async (s) => s.sourceProxy.setFaults({ rate: 1, kinds: ['500'], onlyOperations: ['ListObjectsV2'] }),
      (s) => expect(s.sourceProxy.requests().every((request) => request.status === 500)).toBe(true),
    ],
    [
      // The first page (8 of 10 keys) arrives: deleting what it lacks would remove keep-09, keep-10 (and gone.txt).
      'the listing fails after its first page',
      async (s) => s.sourceStandIn.setListing({ pageSize: 8, failContinuations: true }),
      (s) => expect(s.sourceStandIn.requests().map((request) => request.handling)).toEqual(['forwarded', 'served', 'served', 'served', 'served', 'served']),
    ],
  ];

  it.each(failures)('when %s, the run exits 1 and changes nothing', async (_case, fail, check) => {
    const s = await mirroredScenario('guard-fail', 10);
    const before = await targets(s);
    s.sourceProxy.reset();
    s.sourceStandIn.reset();
    await fail(s);

    const started = performance.now();
    const { exitCode, report, stderr } = await runJson('all', s.settings);
    const seconds = (performance.now() - started) / 1000;

    expect(exitCode).toBe(1);
    expect(report.complete).toBe(false);
    expect(report.failures).toEqual([expect.objectContaining({ target: 'source', operation: 'list' })]);
    expect(report.failures[0]!.message).toContain(`s3://${s.sourceBucket}`);
    expect(report.stoppedEarly).toBe('the source listing failed: nothing was copied or deleted');
    expect(stderr).toContain('[source] FAILED list');
    for (const name of ['azure', 'oci'] as const) expect(targetOf(report, name)).toMatchObject({ deleted: 0, copied: 0 });
    expect(await targets(s)).toEqual(before);
    expect(seconds).toBeLessThan(20);
    check(s);
  });

  it('a listing page that says it is truncated but gives no continuation token deletes nothing and exits 1', async () => {
    const s = await mirroredScenario('guard-cut', 10);
    const before = await targets(s);
    // The page keeps keep-01..07: believing it would delete keep-08..10 (and gone.txt), within both limits.
    s.sourceStandIn.setListing({ cutShortAfter: 7 });

    const { exitCode, report } = await runJson('all', s.settings);

    expect(exitCode).toBe(1);
    expect(report.failures).toEqual([expect.objectContaining({ target: 'source', operation: 'list' })]);
    expect(report.failures[0]!.message).toContain('truncated but gives no continuation token');
    expect(await targets(s)).toEqual(before);
    expect(s.sourceStandIn.requests().filter((request) => request.handling === 'rewritten').length).toBeGreaterThan(0);
  });
});

describe.concurrent('an empty source listing', () => {
  async function emptySourceScenario(): Promise<Scenario> {
    const s = await createScenario(emulators, 'guard-empty');
    closers.push(async () => s.s3.destroy());
    for (const key of ['a.txt', 'b.txt', 'c.txt']) {
      await putBlob(s, key, key);
      await putS3Object(s, s.ociBucket, key, key);
    }
    return s;
  }

  it('deletes nothing while the targets hold objects, exits 1 and names SYNC_ALLOW_EMPTY_SOURCE', async () => {
    const s = await emptySourceScenario();
    const before = await targets(s);

    const dry = await runCli(['all', '--dry-run'], s.settings);
    // The dry run fails as the real run will.
    expect(dry.exitCode).toBe(1);
    expect(dry.stdout).toContain('DELETIONS HELD BACK: the source listing is empty while the target holds 3 objects; refusing to empty the target (raise SYNC_ALLOW_EMPTY_SOURCE if this is intended)');
    const { exitCode, report } = await runJson('all', s.settings);

    expect(exitCode).toBe(1);
    for (const name of ['azure', 'oci'] as const) {
      const target = targetOf(report, name);
      expect(target).toMatchObject({ deleted: 0, deferred: 3, deferredBy: { 'delete-guard': 3 }, complete: false, deleteVerdict: { allowed: false, setting: 'SYNC_ALLOW_EMPTY_SOURCE' } });
      expect(target.failures).toEqual([
        { target: name, operation: 'delete', message: 'deleted nothing: the source listing is empty while the target holds 3 objects; refusing to empty the target; raise SYNC_ALLOW_EMPTY_SOURCE if this is intended' },
      ]);
    }
    expect(await targets(s)).toEqual(before);
  });

  it('empties the targets with SYNC_ALLOW_EMPTY_SOURCE=true, within SYNC_MAX_DELETE_COUNT', async () => {
    const s = await emptySourceScenario();
    const before = await targets(s);

    // Allowed to be empty, the share limit is waived; the count limit still holds.
    const overCount = await runJson('all', { ...s.settings, SYNC_ALLOW_EMPTY_SOURCE: 'true', SYNC_MAX_DELETE_COUNT: '2' });
    expect(overCount.exitCode).toBe(1);
    for (const name of ['azure', 'oci'] as const) {
      expect(targetOf(overCount.report, name).deleteVerdict).toMatchObject({ allowed: false, setting: 'SYNC_MAX_DELETE_COUNT' });
    }
    expect(await targets(s)).toEqual(before);

    const emptied = await runJson('all', { ...s.settings, SYNC_ALLOW_EMPTY_SOURCE: 'true' });
    expect(emptied.exitCode).toBe(0);
    expect(emptied.report.targets.map((target) => target.deleted)).toEqual([3, 3]);
    expect(await targets(s)).toEqual({ azure: {}, oci: {} });
  });
});

describe.concurrent('delete limits', () => {
  /**
   * Six objects stay, three were deleted from the source and two were added since the last mirror:
   * the plan copies 2 and deletes 3 of each target's 9 objects (33.3%).
   */
  async function shrunkScenario(prefix: string): Promise<StandInScenario> {
    const s = await mirroredScenario(prefix, 6);
    for (const key of ['old-1.txt', 'old-2.txt']) {
      await putBlob(s, key, key);
      await putS3Object(s, s.ociBucket, key, key);
    }
    await putSource(s, 'new-1.txt', 'new 1');
    await putSource(s, 'new-2.txt', 'new 2');
    return s;
  }

  const limits: [string, Record<string, string>, string][] = [
    ['SYNC_MAX_DELETE_COUNT', { SYNC_MAX_DELETE_COUNT: '2' }, 'the plan deletes 3 objects, more than the 2 one run may delete'],
    ['SYNC_MAX_DELETE_PERCENT', { SYNC_MAX_DELETE_PERCENT: '30' }, "the plan deletes 3 of the target's 9 objects (33.3%), more than the 30% one run may delete"],
  ];

  it.each(limits)('more deletions than %s allows: nothing deleted, copies made, exit 1 with the counts and the setting; the dry run shows the same verdict', async (setting, extra, reason) => {
    const s = await shrunkScenario('guard-limit');
    const settings = { ...s.settings, ...extra };
    const before = await targets(s);

    const dryText = await runCli(['all', '--dry-run'], settings);
    const dry = await runJson('all', settings, ['--dry-run']);
    const { exitCode, report, stderr } = await runJson('all', settings);

    const verdict = { allowed: false, reason, setting };
    expect(dryText.stdout.split('\n').filter((line) => line.includes('DELETIONS HELD BACK'))).toEqual([
      `  DELETIONS HELD BACK: ${reason} (raise ${setting} if this is intended)`,
      `  DELETIONS HELD BACK: ${reason} (raise ${setting} if this is intended)`,
    ]);
    expect(exitCode).toBe(1);
    expect([dryText.exitCode, dry.exitCode]).toEqual([1, 1]);
    for (const name of ['azure', 'oci'] as const) {
      expect(targetOf(dry.report, name).deleteVerdict).toEqual(verdict);
      expect(targetOf(dry.report, name).planned).toMatchObject({ copy: 2, delete: 3 });
      const target = targetOf(report, name);
      expect(target.deleteVerdict).toEqual(verdict);
      expect(target).toMatchObject({ copied: 2, deleted: 0, deferred: 3, failed: 0, complete: false });
      expect(target.failures).toEqual([{ target: name, operation: 'delete', message: `deleted nothing: ${reason}; raise ${setting} if this is intended` }]);
      expect(stderr).toContain(`[${name}] FAILED delete: deleted nothing: ${reason}`);
    }
    const after = await targets(s);
    for (const name of ['azure', 'oci'] as const) {
      expect(Object.keys(after[name]).sort()).toEqual([...Object.keys(before[name]), 'new-1.txt', 'new-2.txt'].sort());
    }

    // Raised for one run, the deletions go through.
    const raised = await runJson('all', { ...settings, [setting]: setting === 'SYNC_MAX_DELETE_COUNT' ? '3' : '34' });
    expect(raised.exitCode).toBe(0);
    expect(raised.report.targets.map((target) => target.deleted)).toEqual([3, 3]);
  });
});
