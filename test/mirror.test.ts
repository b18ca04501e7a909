/** The mirror as a user sees it, against real Azurite and s3rver (started by the global setup). */
import { afterAll, describe, expect, inject, it } from 'vitest';
import { DEFAULT_TRANSFER_TUNING } from '../src/core/transfer.ts';
import { runCli, runJson, targetOf } from './support/cli-run.ts';
import type { HttpProxy } from './support/http-proxy.ts';
import { createProxiedScenario } from './support/proxied-scenario.ts';
import {
  createScenario,
  mirrorDifferences,
  nextSecond,
  pseudoRandomBytes,
  putBlob,
  putS3Object,
  putSource,
  readAll,
  type Scenario,
} from './support/scenario.ts';

const emulators = inject('emulators');
const MIB = 1024 * 1024;
const scenarios: Scenario[] = [];
afterAll(() => {
  for (const scenario of scenarios) scenario.s3.destroy();
});

async function scenario(extraSettings: Record<string, string> = {}): Promise<Scenario> {
  const created = await createScenario(emulators, 'mirror', extraSettings);
  scenarios.push(created);
  return created;
}

const target = targetOf;

async function expectExactMirrors(s: Scenario): Promise<void> {
  const state = await readAll(s);
  expect(mirrorDifferences(state.source, state.azure)).toEqual([]);
  expect(mirrorDifferences(state.source, state.oci)).toEqual([]);
}

async function forEachConcurrently<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: limit }, async () => {
    while (next < items.length) await work(items[next++]!);
  }));
}

describe('artifacts-sync all', () => {
  it('copies missing objects, replaces stale ones, deletes extras, and says why for each', async () => {
    const s = await scenario();
    await putSource(s, 'keep.txt', 'same', 'text/plain');
    await putSource(s, 'grown.txt', 'twelve bytes', 'text/plain');
    await putSource(s, 'new.zip', pseudoRandomBytes(5000, 1), 'application/zip');
    for (const [key, body] of [['keep.txt', 'same'], ['grown.txt', 'ten bytes!'], ['extra.bin', 'not in source'], ['extra2.bin', 'x'], ['extra3.bin', 'y']] as const) {
      await putBlob(s, key, body, 'text/plain');
      await putS3Object(s, s.ociBucket, key, body, 'text/plain');
    }
    // One more unchanged object per target so deleting three extras stays within the 50% guard.
    for (const key of ['a1', 'a2', 'a3']) {
      await putSource(s, key, key);
    }
    await nextSecond();
    for (const key of ['a1', 'a2', 'a3']) {
      await putBlob(s, key, key);
      await putS3Object(s, s.ociBucket, key, key);
    }

    const dry = await runCli(['all', '--dry-run'], s.settings);
    expect(dry.exitCode).toBe(0);
    expect(dry.stdout).toMatch(/copy missing\s+new\.zip/);
    expect(dry.stdout).toMatch(/replace size 10 → 12\s+grown\.txt/);
    expect(dry.stdout).toMatch(/delete not in source\s+extra\.bin/);
    expect(dry.stdout).not.toMatch(/keep\.txt/);

    const { exitCode, report } = await runJson('all', s.settings);
    expect(exitCode).toBe(0);
    expect(report.complete).toBe(true);
    for (const name of ['azure', 'oci'] as const) {
      expect(target(report, name)).toMatchObject({ copied: 1, replaced: 1, deleted: 3, unchanged: 4, failed: 0, complete: true });
    }
    await expectExactMirrors(s);
  });

  it('re-copies a same-size overwrite in S3', async () => {
    const s = await scenario();
    await putSource(s, 'app.zip', pseudoRandomBytes(4096, 1), 'application/zip');
    expect((await runJson('all', s.settings)).exitCode).toBe(0);
    await nextSecond();
    await putSource(s, 'app.zip', pseudoRandomBytes(4096, 2), 'application/zip');

    const dry = await runCli(['all', '--dry-run'], s.settings);
    expect(dry.stdout).toMatch(/replace source etag changed\s+app\.zip/); // Azure: the recorded ETag
    expect(dry.stdout).toMatch(/oci:[^\n]*\n\s+replace source etag changed\s+app\.zip/); // OCI: the copy record
    const { report } = await runJson('all', s.settings);
    expect(target(report, 'azure').replaced).toBe(1);
    expect(target(report, 'oci').replaced).toBe(1);
    await expectExactMirrors(s);
  });

  it('makes zero copies over a mirror the old tool wrote (targets newer, same sizes)', async () => {
    const s = await scenario();
    const files = Array.from({ length: 12 }, (_, index) => [`releases/v${index}/setup.exe`, pseudoRandomBytes(1000 + index, index)] as const);
    for (const [key, body] of files) await putSource(s, key, body, 'application/octet-stream');
    await nextSecond();
    for (const [key, body] of files) {
      await putBlob(s, key, body, 'application/octet-stream');
      await putS3Object(s, s.ociBucket, key, body, 'application/octet-stream');
    }
    const { exitCode, report } = await runJson('all', s.settings);
    expect(exitCode).toBe(0);
    for (const name of ['azure', 'oci'] as const) {
      expect(target(report, name)).toMatchObject({ copied: 0, replaced: 0, deleted: 0, unchanged: 12, bytesStreamed: 0 });
    }
  });

  it('copies odd keys byte-exact, zero-byte objects and folder markers included, with their content types', async () => {
    const s = await scenario();
    const keys = [
      'a b.txt',
      'ünï/código ✓.zip',
      'c++/x+y.tar.gz',
      '100%/p%20q',
      'what?.txt',
      'hash#tag',
      'a&b=c',
      `${Array.from({ length: 30 }, (_, index) => `d${index}`).join('/')}/file.bin`,
      'folder/',
      'zero.bin',
    ];
    for (const key of keys) await putSource(s, key, key === 'zero.bin' || key === 'folder/' ? '' : `content of ${key}`, key.endsWith('.zip') ? 'application/zip' : 'text/plain; charset=utf-8');
    const { exitCode, report } = await runJson('all', s.settings);
    expect(exitCode, JSON.stringify(report.targets.map((entry) => entry.failures))).toBe(0);
    expect(target(report, 'azure').copied).toBe(keys.length);
    expect(target(report, 'oci').copied).toBe(keys.length);
    await expectExactMirrors(s);
    const state = await readAll(s);
    expect(state.azure.get('zero.bin')?.size).toBe(0);
    expect(state.oci.get('folder/')?.size).toBe(0);
    expect((await runJson('all', s.settings)).report.targets.every((entry) => entry.unchanged === keys.length)).toBe(true);
  });

  it('streams a 40 MiB object in parts to both targets and records it so the next run leaves it alone', async () => {
    const s = await scenario({ SYNC_SINGLE_REQUEST_MAX_MB: '5' });
    await putSource(s, 'big/installer.bin', pseudoRandomBytes(40 * MIB, 7), 'application/octet-stream');
    const { exitCode, report } = await runJson('all', s.settings);
    expect(exitCode).toBe(0);
    expect(target(report, 'azure').bytesStreamed).toBe(40 * MIB);
    expect(target(report, 'oci').bytesStreamed).toBe(40 * MIB);
    const blocks = await s.blobs.getBlockBlobClient('big/installer.bin').getBlockList('committed');
    expect(blocks.committedBlocks?.length).toBe(Math.ceil((40 * MIB) / DEFAULT_TRANSFER_TUNING.partSize)); // one block per part
    await expectExactMirrors(s);
    const again = await runJson('all', s.settings);
    expect(again.report.targets.map((entry) => entry.unchanged)).toEqual([1, 1]);
  });

  it('mirrors 2,600 objects across listing pages; a second run does nothing and makes only listing requests', async () => {
    const s = await createProxiedScenario(emulators, { prefix: 'pages' });
    try {
      const keys = Array.from({ length: 2600 }, (_, index) => `batch/${String(index).padStart(5, '0')}.bin`);
      await forEachConcurrently(keys, 16, (key) => putSource(s, key, key));
      const first = await runJson('all', s.settings);
      expect(first.exitCode, JSON.stringify(first.report.targets.map((entry) => [entry.notes, entry.failures.slice(0, 3)]))).toBe(0);
      expect(first.report.source.objects).toBe(2600);
      expect(first.report.targets.map((entry) => entry.copied)).toEqual([2600, 2600]);

      for (const proxy of [s.sourceProxy, s.ociProxy, s.azureProxy]) proxy.reset();
      const second = await runJson('all', s.settings);
      expect(second.report.targets.map((entry) => [entry.copied, entry.replaced, entry.deleted, entry.unchanged])).toEqual([
        [0, 0, 0, 2600],
        [0, 0, 0, 2600],
      ]);
      const operations = (proxy: HttpProxy): string[] => proxy.requests().map((request) => request.operation);
      // The listing minimum: 1,000 keys per S3 page, 5,000 blobs per Azure page; nothing per object.
      expect(operations(s.sourceProxy)).toEqual(['ListObjectsV2', 'ListObjectsV2', 'ListObjectsV2']);
      expect(operations(s.ociProxy).filter((operation) => operation === 'ListObjectsV2')).toHaveLength(3);
      // Besides its listing, OCI gets one ListMultipartUploads (leftovers of interrupted runs), and no HEAD: the copy record decides.
      expect(operations(s.ociProxy).filter((operation) => operation !== 'ListObjectsV2')).toEqual(['ListMultipartUploads']);
      const azure = operations(s.azureProxy);
      expect(azure.filter((operation) => operation === 'ListBlobs')).toHaveLength(1);
      // The rest is the run lock and one read of OCI's copy record: a constant few requests, none of them per object.
      expect(azure.filter((operation) => !['ListBlobs', 'Lease', 'CreateContainer', 'PutBlob', 'GetBlob', 'other'].includes(operation))).toEqual([]);
      expect(azure.filter((operation) => operation === 'GetBlob')).toHaveLength(1);
      expect(azure.length, azure.join(' ')).toBeLessThanOrEqual(8);
    } finally {
      await s.close();
    }
  }, 240_000);

  it('changes nothing on a dry run', async () => {
    const s = await scenario();
    await putSource(s, 'new.txt', 'new');
    // One kept object per target keeps the planned deletion within the delete guard's 50%.
    await putSource(s, 'keep.txt', 'keep');
    await putBlob(s, 'keep.txt', 'keep');
    await putS3Object(s, s.ociBucket, 'keep.txt', 'keep');
    await putBlob(s, 'old.txt', 'old');
    await putS3Object(s, s.ociBucket, 'old.txt', 'old');
    const before = await readAll(s);
    const { exitCode, report } = await runJson('all', s.settings, ['--dry-run']);
    expect(exitCode).toBe(0);
    expect(report.dryRun).toBe(true);
    expect(target(report, 'azure').plan?.map((action) => action.reason)).toEqual(['copy missing', 'delete not in source']);
    const after = await readAll(s);
    expect(after).toEqual(before);
  });

  it('mirrors only the chosen provider', async () => {
    const s = await scenario();
    await putSource(s, 'only.txt', 'x');
    const { report } = await runJson('oci', s.settings);
    expect(report.targets.map((entry) => entry.target)).toEqual(['oci']);
    const state = await readAll(s);
    expect(state.oci.has('only.txt')).toBe(true);
    expect(state.azure.size).toBe(0);
  });

  it('reports a failing object with its key, target and error, finishes the others, and exits 1', async () => {
    const s = await scenario();
    for (const key of ['a.txt', 'b.txt', 'locked.txt', 'c.txt']) await putSource(s, key, `new ${key}`);
    await putBlob(s, 'locked.txt', 'old');
    // Another process holds a lease on this blob: Azure refuses to overwrite it.
    await s.blobs.getBlockBlobClient('locked.txt').getBlobLeaseClient().acquireLease(-1);

    const { exitCode, report } = await runJson('all', s.settings);
    expect(exitCode).toBe(1);
    expect(report.complete).toBe(false);
    const azure = target(report, 'azure');
    expect(azure).toMatchObject({ copied: 3, failed: 1, complete: false });
    expect(azure.failures).toEqual([expect.objectContaining({ target: 'azure', operation: 'replace', key: 'locked.txt' })]);
    expect(azure.failures[0]!.message).toMatch(/locked\.txt.*412|412.*locked\.txt|Lease/i);
    expect(target(report, 'oci')).toMatchObject({ copied: 4, failed: 0, complete: true });
    const text = await runCli(['all'], s.settings);
    expect(text.exitCode).toBe(1);
    expect(text.stdout).toContain('FAILED replace "locked.txt"');
  });
});
