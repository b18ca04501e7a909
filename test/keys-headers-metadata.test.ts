/**
 * Exactness against real Azurite and s3rver: keys a target cannot hold verbatim are refused (never
 * aliased, never re-copied), and every content header and the user metadata reach both targets, on the
 * streamed path and on Azure's server-side pull (through the copy-from-URL stand-in, as Azurite lacks it).
 */
import { HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { BlockBlobClient, StorageSharedKeyCredential } from '@azure/storage-blob';
import { describe, expect, inject, it } from 'vitest';
import { planWhileListing } from '../src/core/listings.ts';
import { DEFAULT_DELETE_LIMITS, planMirror, replaceReason } from '../src/core/plan.ts';
import type { ObjectInfo } from '../src/core/types.ts';
import { azureBlobStore } from '../src/stores/azure-blob.ts';
import { azureKeyProblem, ociKeyProblem } from '../src/stores/key-rules.ts';
import { azureMetadataName } from '../src/stores/metadata.ts';
import { runCli, runJson, targetOf } from './support/cli-run.ts';
import { createProxiedScenario } from './support/proxied-scenario.ts';
import { scenarioFactory } from './support/test-scenarios.ts';
import { nextSecond, pseudoRandomBytes, putBlob, putSource, readAll, type Scenario } from './support/scenario.ts';

const emulators = inject('emulators');
const MIB = 1024 * 1024;
const scenario = scenarioFactory(emulators, 'exact');

const HEADERS = {
  ContentType: 'application/javascript',
  ContentEncoding: 'gzip',
  ContentDisposition: 'attachment; filename="app.js.gz"',
  CacheControl: 'public, max-age=31536000, immutable',
  ContentLanguage: 'de-CH',
} as const;
const METADATA = { 'build-id': '4711', owner: 'team-a' };

async function putWithHeaders(s: Scenario, key: string, body: Uint8Array | string, headers: Partial<Record<keyof typeof HEADERS, string>> = HEADERS, metadata: Record<string, string> = METADATA): Promise<void> {
  await s.s3.send(new PutObjectCommand({ Bucket: s.sourceBucket, Key: key, Body: body, ...headers, Metadata: metadata }));
}

async function expectHeadersOnBoth(s: Scenario, key: string, headers: typeof HEADERS | Record<string, string> = HEADERS, metadata: Record<string, string> = METADATA): Promise<void> {
  const blob = await s.blobs.getBlobClient(key).getProperties();
  expect({ contentType: blob.contentType, contentEncoding: blob.contentEncoding, contentDisposition: blob.contentDisposition, cacheControl: blob.cacheControl, contentLanguage: blob.contentLanguage }).toEqual({
    contentType: headers.ContentType,
    contentEncoding: headers.ContentEncoding,
    contentDisposition: headers.ContentDisposition,
    cacheControl: headers.CacheControl,
    contentLanguage: headers.ContentLanguage,
  });
  // Azure names: `-` becomes `_` (metadata names must be C# identifiers).
  const azureMetadata = Object.fromEntries(Object.entries(metadata).map(([name, value]) => [name.replace(/-/g, '_'), value]));
  expect(blob.metadata).toMatchObject(azureMetadata);
  const oci = await s.s3.send(new HeadObjectCommand({ Bucket: s.ociBucket, Key: key }));
  expect({ ContentType: oci.ContentType, ContentEncoding: oci.ContentEncoding, ContentDisposition: oci.ContentDisposition, CacheControl: oci.CacheControl, ContentLanguage: oci.ContentLanguage }).toEqual(headers);
  expect(oci.Metadata).toMatchObject(metadata);
}

describe('headers and user metadata', () => {
  it('every content header and the user metadata reach both targets, for a small and a multipart object', async () => {
    const s = await scenario();
    await putWithHeaders(s, 'web/app.js.gz', 'gzipped bytes');
    await putWithHeaders(s, 'web/big.js.gz', pseudoRandomBytes(6 * MIB, 3)); // above the 5 MiB part size: written in parts
    const { exitCode, report } = await runJson('all', s.settings);
    expect(exitCode, JSON.stringify(report.targets.map((target) => target.failures))).toBe(0);
    await expectHeadersOnBoth(s, 'web/app.js.gz');
    await expectHeadersOnBoth(s, 'web/big.js.gz');
    expect((await runJson('all', s.settings)).report.targets.map((target) => target.unchanged)).toEqual([2, 2]);
  });

  it('Azure’s server-side pull carries every header and the user metadata too', async () => {
    const s = await createProxiedScenario(emulators, { prefix: 'exact-pull', serverSideCopy: true, settings: { SYNC_SERVER_SIDE_SINGLE_MAX_MB: '1' } });
    try {
      await putWithHeaders(s, 'web/app.js.gz', 'gzipped bytes');
      await putWithHeaders(s, 'web/large.bin', pseudoRandomBytes(2 * MIB + 5, 4)); // above 1 MiB: pulled in blocks, headers set at the block list
      const { exitCode, report } = await runJson('all', s.settings);
      expect(exitCode, JSON.stringify(report.targets.map((target) => target.failures))).toBe(0);
      expect(targetOf(report, 'azure')).toMatchObject({ mode: 'server-side', copied: 2, bytesStreamed: 0 });
      expect(s.copyProxy!.pulls().length).toBeGreaterThan(0);
      await expectHeadersOnBoth(s, 'web/app.js.gz');
      await expectHeadersOnBoth(s, 'web/large.bin');
    } finally {
      await s.close();
    }
  });

  it('a metadata-only change at the source (same bytes, same ETag, new headers) reaches both targets by the next run', async () => {
    const s = await scenario();
    await putWithHeaders(s, 'web/app.js', 'console.log(1)', { ContentType: 'text/plain' }, { owner: 'team-a' });
    expect((await runJson('all', s.settings)).exitCode).toBe(0);
    await nextSecond();
    const etagBefore = (await s.s3.send(new HeadObjectCommand({ Bucket: s.sourceBucket, Key: 'web/app.js' }))).ETag;
    // On S3, a CopyObject onto itself with new headers keeps the ETag of a single-part object and moves
    // LastModified. s3rver's CopyObject onto itself keeps LastModified, so the same change is made here
    // by writing the same bytes again with the new headers: same ETag, later LastModified, as on S3.
    await putWithHeaders(s, 'web/app.js', 'console.log(1)');
    expect((await s.s3.send(new HeadObjectCommand({ Bucket: s.sourceBucket, Key: 'web/app.js' }))).ETag).toBe(etagBefore);

    const dry = await runCli(['all', '--dry-run'], s.settings);
    // Azure: the listing's recorded LastModified is older than the source's; OCI: the copy record's is.
    expect(dry.stdout.match(/replace source metadata changed\s+web\/app\.js/g)).toHaveLength(2);
    const { exitCode, report } = await runJson('all', s.settings);
    expect(exitCode).toBe(0);
    expect(report.targets.map((target) => target.replaced)).toEqual([1, 1]);
    await expectHeadersOnBoth(s, 'web/app.js');
    expect((await runJson('all', s.settings)).report.targets.map((target) => [target.replaced, target.unchanged])).toEqual([[0, 1], [0, 1]]);
  });

  it('metadata Azure cannot name is reported with its key every run and the object is not written there; OCI takes it', async () => {
    const s = await scenario();
    await putWithHeaders(s, 'tools/setup.exe', 'x', { ContentType: 'application/octet-stream' }, { 'build.number': '12' });
    await putSource(s, 'ok.txt', 'fine');
    for (let run = 0; run < 2; run += 1) {
      const { exitCode, report } = await runJson('all', s.settings);
      expect(exitCode).toBe(1);
      const azure = targetOf(report, 'azure');
      expect(azure.failures).toHaveLength(1);
      expect(azure.failures[0]).toMatchObject({ key: 'tools/setup.exe' });
      expect(azure.failures[0]!.message).toContain('"build.number" is not a C# identifier');
      expect(targetOf(report, 'oci').failures).toEqual([]);
    }
    const state = await readAll(s);
    expect([...state.azure.keys()]).toEqual(['ok.txt']);
    expect([...state.oci.keys()].sort()).toEqual(['ok.txt', 'tools/setup.exe']);
  });

  it('user metadata named like the recorded source is refused on both targets, naming the entry', async () => {
    const s = await scenario();
    await putWithHeaders(s, 'a.bin', 'x', { ContentType: 'application/octet-stream' }, { source_etag: 'mine' });
    const { exitCode, report } = await runJson('all', s.settings);
    expect(exitCode).toBe(1);
    for (const name of ['azure', 'oci'] as const) {
      expect(targetOf(report, name).failures.map((failure) => [failure.key, /"source_etag" is a name this tool records its source under/.test(failure.message)])).toEqual([['a.bin', true]]);
    }
  });
});

describe('keys a target cannot hold verbatim', () => {
  it('Azure refuses x\\y and name. (one failure each, every run), keeps x/y exact, and never re-copies; OCI holds them all', async () => {
    const s = await scenario();
    await putSource(s, 'x\\y', 'backslash');
    await putSource(s, 'x/y', 'slash');
    await putSource(s, 'name.', 'trailing dot');
    await putSource(s, 'ok.txt', 'fine');
    for (let run = 0; run < 2; run += 1) {
      const { exitCode, report } = await runJson('all', s.settings);
      expect(exitCode).toBe(1);
      const azure = targetOf(report, 'azure');
      expect(azure).toMatchObject({ copied: run === 0 ? 2 : 0, replaced: 0, deleted: 0, unchanged: run === 0 ? 0 : 2, failed: 2 });
      expect(azure.failures.map((failure) => [failure.key, failure.message])).toEqual([
        ['name.', expect.stringContaining('Azure drops a trailing "." from blob names')],
        ['x\\y', expect.stringContaining('Azure stores "\\" as "/"')],
      ]);
      expect(targetOf(report, 'oci')).toMatchObject({ copied: run === 0 ? 4 : 0, unchanged: run === 0 ? 0 : 4, failed: 0, complete: true });
    }
    const state = await readAll(s);
    expect([...state.azure.keys()].sort()).toEqual(['ok.txt', 'x/y']);
    expect(state.azure.get('x/y')?.md5).toBe(state.source.get('x/y')?.md5); // the bytes of x/y, not of x\y
    expect(state.oci).toEqual(state.source);
    const dry = await runCli(['azure', '--dry-run'], s.settings);
    expect(dry.exitCode).toBe(1);
    expect(dry.stdout).toContain('FAILED copy "x\\\\y": not mirrored: Azure stores');
  });

  it('a blob an old mirror wrote under an alias is deleted once, and the refused key is not re-copied', async () => {
    const s = await scenario();
    for (const key of ['k1', 'k2', 'k3']) await putSource(s, key, key);
    expect((await runJson('azure', s.settings)).exitCode).toBe(0);
    await putSource(s, 'back\\slash.txt', 'bytes');
    await putBlob(s, 'back\\slash.txt', 'bytes'); // as the old tool did: Azurite stores it as back/slash.txt
    expect((await readAll(s)).azure.has('back/slash.txt')).toBe(true);
    const { report } = await runJson('azure', s.settings);
    expect(targetOf(report, 'azure')).toMatchObject({ copied: 0, deleted: 1, unchanged: 3, failed: 1 });
    expect((await readAll(s)).azure.has('back/slash.txt')).toBe(false);
    const again = await runJson('azure', s.settings);
    expect(targetOf(again.report, 'azure')).toMatchObject({ copied: 0, deleted: 0, unchanged: 3, failed: 1 });
  });

  it('dot segments: the Azure SDK resolves them (a/./b is written as a/b), so the planner refuses them and plans no deletion of what Azurite lists', async () => {
    const s = await scenario();
    // What the refusal prevents, shown on Azurite: the SDK builds the URL of "a/./b" as ".../a/b".
    expect(s.blobs.getBlockBlobClient('a/./b').url.endsWith(`/${s.container}/a/b`)).toBe(true);
    expect(s.blobs.getBlockBlobClient('a/../b').url.endsWith(`/${s.container}/b`)).toBe(true);
    // Even percent-encoded, or given as a whole URL: WHATWG URL parsing treats %2E as a dot.
    expect(s.blobs.getBlockBlobClient('a/%2E/b').url).not.toContain('/a/%2E/b');
    for (const path of ['a/./b', 'a/%2E/b']) expect(new BlockBlobClient(`${s.blobs.url}/${path}`, new StorageSharedKeyCredential(emulators.azurite.accountName, emulators.azurite.accountKey)).name).toBe('a/b');
    await putBlob(s, 'name.', 'kept by Azurite'); // real Azure would drop the dot
    await putBlob(s, 'a/b', 'the real a/b');

    const store = azureBlobStore({ container: s.container, connectionString: emulators.azurite.connectionString });
    const sourceObjects: ObjectInfo[] = ['a/./b', 'a/../b', 'a/b', 'name.', 'x\\y'].map((key) => ({ key, size: 1, lastModifiedMs: 0, etag: 'e' }));
    const listed = await planWhileListing(
      { label: 'source', pages: async function* () { yield [...sourceObjects].sort(); } },
      [{ name: 'azure', label: store.label, pages: (signal) => store.listPages(signal), keyProblem: store.keyProblem }],
      DEFAULT_DELETE_LIMITS,
    );
    const plan = listed.plans.get('azure')!;
    expect(plan.refused.map((refusal) => refusal.key).sort()).toEqual(['a/../b', 'a/./b', 'name.', 'x\\y']);
    expect(plan.deletions).toEqual([]); // name. (listed by Azurite) is neither trusted nor deleted
    expect(plan.transfers.map((action) => [action.kind, action.key])).toEqual([['replace', 'a/b']]); // a/b has no recorded source: replaced by the source's a/b
  });
});

describe('key rules (pure)', () => {
  it('Azure refuses backslashes, dot segments, a trailing dot, control characters and more than 254 segments', () => {
    for (const key of ['x\\y', 'a/./b', 'a/../b', './a', 'a/..', 'name.', 'dir./', 'tab\there', `${'d/'.repeat(254)}f`]) expect(azureKeyProblem(key), key).toBeDefined();
    for (const key of ['a.b', '.hidden', '..backup', 'v1./x', 'folder/', 'a//b', 'ünï/✓', `${'d/'.repeat(253)}f`]) expect(azureKeyProblem(key), key).toBeUndefined();
  });

  it('OCI refuses line feed, carriage return, NULL and dot segments, and holds backslashes and trailing dots', () => {
    for (const key of ['a\nb', 'a\rb', 'a\0b', 'a/./b', 'a/../b']) expect(ociKeyProblem(key), key).toBeDefined();
    for (const key of ['x\\y', 'name.', 'dir./', 'a//b']) expect(ociKeyProblem(key), key).toBeUndefined();
  });

  it('a pair that would alias on Azure (x\\y, x/y) plans x/y only; the target’s x/y is compared, not deleted', () => {
    const object = (key: string): ObjectInfo => ({ key, size: 3, lastModifiedMs: 1000, etag: `etag-${key}` });
    const plan = planMirror([object('x\\y'), object('x/y')], [{ ...object('x/y'), recordedSource: { etag: 'etag-x/y', lastModifiedMs: 1000 } }], DEFAULT_DELETE_LIMITS, azureKeyProblem);
    expect(plan).toMatchObject({ transfers: [], deletions: [], unchanged: 1, refused: [{ key: 'x\\y' }] });
  });

  it('a metadata-only change is seen from the recorded source LastModified alone, and nothing else moves it', () => {
    const source = { key: 'k', size: 1, lastModifiedMs: 5_000, etag: 'e' };
    const copy = (recordedModifiedMs?: number, targetModifiedMs = 1_000) => ({ ...source, lastModifiedMs: targetModifiedMs, recordedSource: { etag: 'e', ...(recordedModifiedMs === undefined ? {} : { lastModifiedMs: recordedModifiedMs }) } });
    expect(replaceReason(source, copy(4_000))).toEqual({ why: 'source-metadata', sourceModifiedMs: 5_000, recordedModifiedMs: 4_000 });
    expect(replaceReason(source, copy(5_000))).toBeUndefined();
    expect(replaceReason(source, copy(5_999 - 999))).toBeUndefined(); // the same second
    // No recorded LastModified (an older copy): the target's own time is not trusted for this (clock skew would re-copy every run).
    expect(replaceReason(source, copy(undefined, 1_000))).toBeUndefined();
    expect(replaceReason({ ...source, etag: 'f' }, copy(4_000))).toMatchObject({ why: 'source-etag' });
  });

  it('Azure metadata names: - becomes _, anything else that is no identifier cannot be mapped', () => {
    expect(azureMetadataName('build-id')).toBe('build_id');
    expect(azureMetadataName('owner')).toBe('owner');
    expect(azureMetadataName('build.number')).toEqual({ problem: expect.stringContaining('C# identifier') });
    expect(azureMetadataName('1st')).toEqual({ problem: expect.stringContaining('C# identifier') });
  });
});
