/**
 * Exact means exact: an overwrite in S3 is mirrored whatever its timing and size, on both targets.
 * OCI listings (S3 ListObjectsV2) carry no metadata, so OCI is decided by the copy record kept beside
 * the run lock (see docs/exactness.md, "How OCI stays exact"); Azure listings carry the recorded source ETag.
 */
import { afterAll, describe, expect, inject, it } from 'vitest';
import { runJson, targetOf } from './support/cli-run.ts';
import { createScenario, mirrorDifferences, pseudoRandomBytes, putSource, readAll, type Scenario } from './support/scenario.ts';

const emulators = inject('emulators');
const scenarios: Scenario[] = [];
afterAll(() => {
  for (const scenario of scenarios) scenario.s3.destroy();
});

async function scenario(extraSettings: Record<string, string> = {}): Promise<Scenario> {
  const created = await createScenario(emulators, 'exact', extraSettings);
  scenarios.push(created);
  return created;
}

async function expectExactMirrors(s: Scenario): Promise<void> {
  const state = await readAll(s);
  expect(mirrorDifferences(state.source, state.azure)).toEqual([]);
  expect(mirrorDifferences(state.source, state.oci)).toEqual([]);
}

describe('same-size overwrites', () => {
  it('20 same-size overwrites made right after a run are all mirrored by the next run, on both targets', async () => {
    const s = await scenario();
    const keys = Array.from({ length: 20 }, (_, index) => `builds/${String(index).padStart(2, '0')}.bin`);
    for (const [index, key] of keys.entries()) await putSource(s, key, pseudoRandomBytes(2048, index + 1));
    expect((await runJson('all', s.settings)).exitCode).toBe(0);
    // Right away: most overwrites land in the same second as the copies (no waiting for a later second).
    for (const [index, key] of keys.entries()) await putSource(s, key, pseudoRandomBytes(2048, index + 101));

    const { exitCode, report } = await runJson('all', s.settings);
    expect(exitCode).toBe(0);
    expect(targetOf(report, 'azure')).toMatchObject({ replaced: 20, unchanged: 0 });
    expect(targetOf(report, 'oci')).toMatchObject({ replaced: 20, unchanged: 0 });
    await expectExactMirrors(s);
    const again = await runJson('all', s.settings);
    expect(again.report.targets.map((entry) => [entry.copied, entry.replaced, entry.unchanged])).toEqual([[0, 0, 20], [0, 0, 20]]);
  });
});
