/**
 * What exactness costs in requests, over 2,000 objects, through counting proxies (no timings):
 * a steady state in which every object was copied right after its upload (event-style), either by our
 * own run (the copy record covers it) or by a writer that keeps no record here (an event worker, another
 * deployment: simulated by a run whose lock container, and so its record, is elsewhere).
 * Prints the figures quoted in docs/exactness.md ("How OCI stays exact") and pins them.
 */
import { afterAll, describe, expect, inject, it } from 'vitest';
import { runJson, targetOf } from './support/cli-run.ts';
import { createBucket, uniqueName } from './support/emulators.ts';
import type { HttpProxy } from './support/http-proxy.ts';
import { createProxiedScenario, type ProxiedScenario } from './support/proxied-scenario.ts';
import { putSource } from './support/scenario.ts';

const emulators = inject('emulators');
const OBJECTS = 2000;
const scenarios: ProxiedScenario[] = [];
afterAll(async () => {
  for (const scenario of scenarios) await scenario.close();
});

async function seeded(prefix: string): Promise<ProxiedScenario> {
  const s = await createProxiedScenario(emulators, { prefix });
  scenarios.push(s);
  const keys = Array.from({ length: OBJECTS }, (_, index) => `events/${String(index).padStart(5, '0')}.bin`);
  let next = 0;
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (next < keys.length) {
      const key = keys[next++]!;
      await putSource(s, key, `upload ${key}`);
    }
  }));
  return s;
}

/** Requests by operation at each store during one run. */
async function counted(s: ProxiedScenario, provider: 'all' | 'oci', settings: Record<string, string>): Promise<{ report: Awaited<ReturnType<typeof runJson>>['report']; requests: Record<string, Record<string, number>> }> {
  for (const proxy of [s.sourceProxy, s.ociProxy, s.azureProxy]) proxy.reset();
  const { exitCode, report } = await runJson(provider, settings);
  expect(exitCode).toBe(0);
  const byOperation = (proxy: HttpProxy): Record<string, number> => {
    const counts: Record<string, number> = {};
    for (const request of proxy.requests()) counts[request.operation] = (counts[request.operation] ?? 0) + 1;
    return counts;
  };
  return { report, requests: { s3: byOperation(s.sourceProxy), oci: byOperation(s.ociProxy), azure: byOperation(s.azureProxy) } };
}

const line = (name: string, requests: Record<string, Record<string, number>>): string =>
  `${name.padEnd(58)} ${Object.entries(requests).map(([store, counts]) => `${store}: ${Object.entries(counts).map(([operation, n]) => `${operation} ${n}`).join(', ') || '-'}`).join(' | ')}`;

describe('requests of a steady state after event-style copies (2,000 objects)', () => {
  it('copies made by our own runs: every later no-op run is the listings, one read of the copy record, and the lock', async () => {
    const s = await seeded('evreq-own');
    // Copied right after the uploads, most in the same second as their upload.
    expect((await runJson('all', s.settings)).exitCode).toBe(0);
    const first = await counted(s, 'all', s.settings);
    const second = await counted(s, 'all', s.settings);
    console.log(`\n${line('own copies, first run after (all)', first.requests)}\n${line('own copies, second run after (all)', second.requests)}`);
    for (const run of [first, second]) {
      expect(targetOf(run.report, 'oci')).toMatchObject({ copied: 0, replaced: 0, unchanged: OBJECTS });
      expect(run.requests['s3']).toEqual({ ListObjectsV2: 2 });
      expect(run.requests['oci']).toEqual({ ListObjectsV2: 2, ListMultipartUploads: 1 });
      expect(run.requests['azure']!['GetBlob']).toBe(1);
      expect(run.requests['azure']!['ListBlobs']).toBe(1);
      // Nothing changed: the record is not written again.
      expect(run.requests['azure']!['PutBlob'] ?? 0).toBeLessThanOrEqual(0);
    }
  }, 300_000);

  it('copies made by a writer that keeps no record here: the first run after looks at each once (one HEAD), the next at none', async () => {
    const s = await seeded('evreq-worker');
    const ociBucket = await createBucket(emulators.s3, uniqueName('evreq-oci'));
    const settings = { ...s.settings, OCI_BUCKET: ociBucket };
    expect((await runJson('oci', { ...settings, SYNC_LOCK_CONTAINER: 'event-worker' })).exitCode).toBe(0);
    const first = await counted(s, 'oci', settings);
    const second = await counted(s, 'oci', settings);
    console.log(`\n${line('worker copies, first run after (oci)', first.requests)}\n${line('worker copies, second run after (oci)', second.requests)}`);
    expect(first.requests['oci']).toEqual({ ListObjectsV2: 2, HeadObject: OBJECTS, ListMultipartUploads: 1 });
    expect(second.requests['oci']).toEqual({ ListObjectsV2: 2, ListMultipartUploads: 1 });
    expect(second.requests['azure']!['GetBlob']).toBe(1);
    for (const run of [first, second]) expect(targetOf(run.report, 'oci')).toMatchObject({ copied: 0, replaced: 0, unchanged: OBJECTS });
  }, 300_000);
});
