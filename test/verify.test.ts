/** `artifacts-sync verify`: what it proves, what it names, and its exit codes, against real Azurite and s3rver. */
import { DeleteObjectCommand, HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { describe, expect, inject, it } from 'vitest';
import azureFunctions from '@azure/functions';
import { DEFAULT_DELETE_LIMITS, planMirror } from '../src/core/plan.ts';
import { compareHeads, listingDifferences, type VerifyReport } from '../src/core/verify.ts';
import { verifyHttpHandler } from '../src/functions/verify-http.ts';
import { createSyncService } from '../src/sync.ts';
import { loggedEvents, newInvocation } from './support/functions-invocation.ts';
import { runCli, runJson } from './support/cli-run.ts';
import { putBlob, putSource, type Scenario } from './support/scenario.ts';
import { scenarioFactory } from './support/test-scenarios.ts';

const emulators = inject('emulators');
const scenario = scenarioFactory(emulators, 'verify');

async function mirrored(): Promise<Scenario> {
  const s = await scenario();
  await s.s3.send(new PutObjectCommand({ Bucket: s.sourceBucket, Key: 'web/app.js', Body: 'console.log(1)', ContentType: 'application/javascript', CacheControl: 'max-age=60', Metadata: { 'build-id': '7' } }));
  for (const key of ['a.txt', 'b.txt', 'c.txt']) await putSource(s, key, `content of ${key}`, 'text/plain');
  expect((await runJson('all', s.settings)).exitCode).toBe(0);
  return s;
}

async function verifyJson(s: Scenario, args: readonly string[]): Promise<{ exitCode: number; report: VerifyReport; stdout: string }> {
  const result = await runCli(['verify', ...args, '--json'], s.settings);
  return { exitCode: result.exitCode, report: JSON.parse(result.stdout) as VerifyReport, stdout: result.stdout };
}

describe('artifacts-sync verify', () => {
  it('an exact mirror verifies with exit 0, with and without --checksum', async () => {
    const s = await mirrored();
    const text = await runCli(['verify', 'all'], s.settings);
    expect(text.exitCode, text.stdout).toBe(0);
    expect(text.stdout).toContain('compared 4, differences 0; exact');
    const checked = await verifyJson(s, ['all', '--checksum']);
    expect(checked.exitCode).toBe(0);
    expect(checked.report.targets.map((target) => [target.target, target.compared, target.requests.heads, target.requests.reads])).toEqual([['azure', 4, 4, 4], ['oci', 4, 4, 4]]);
    expect(checked.report.source.requests).toEqual({ listPages: 1, heads: 4, reads: 4 });
  });

  it('names a changed byte (only --checksum sees it), a missing object, an extra object and a header difference, and exits 1', async () => {
    const s = await mirrored();
    // One byte changed in each target, size and recorded metadata kept: only reading the bytes can tell.
    const blob = s.blobs.getBlockBlobClient('a.txt');
    const properties = await blob.getProperties();
    await blob.upload('CONTENT of a.txt', 16, { metadata: properties.metadata, blobHTTPHeaders: { blobContentType: 'text/plain' } });
    const ociHead = await s.s3.send(new HeadObjectCommand({ Bucket: s.ociBucket, Key: 'a.txt' }));
    await s.s3.send(new PutObjectCommand({ Bucket: s.ociBucket, Key: 'a.txt', Body: 'CONTENT of a.txt', ContentType: 'text/plain', Metadata: ociHead.Metadata }));
    // Missing, extra, and a header changed, on both targets.
    await s.blobs.deleteBlob('b.txt');
    await s.s3.send(new DeleteObjectCommand({ Bucket: s.ociBucket, Key: 'b.txt' }));
    await putBlob(s, 'extra.bin', 'x');
    await s.s3.send(new PutObjectCommand({ Bucket: s.ociBucket, Key: 'extra.bin', Body: 'x' }));
    await s.blobs.getBlobClient('web/app.js').setHTTPHeaders({ blobContentType: 'application/javascript', blobCacheControl: 'no-store' });
    const ociApp = await s.s3.send(new HeadObjectCommand({ Bucket: s.ociBucket, Key: 'web/app.js' }));
    await s.s3.send(new PutObjectCommand({ Bucket: s.ociBucket, Key: 'web/app.js', Body: 'console.log(1)', ContentType: 'application/javascript', CacheControl: 'no-store', Metadata: ociApp.Metadata }));

    const withoutBytes = await verifyJson(s, ['all']);
    expect(withoutBytes.exitCode).toBe(1);
    for (const target of withoutBytes.report.targets) {
      expect(target.differences.map((difference) => [difference.kind, difference.key])).toEqual([
        ['missing', 'b.txt'],
        ['extra', 'extra.bin'],
        ['header', 'web/app.js'],
      ]);
      expect(target.differences[2]).toMatchObject({ field: 'cacheControl', source: 'max-age=60', target: 'no-store' });
    }

    const withBytes = await verifyJson(s, ['all', '--checksum']);
    expect(withBytes.exitCode).toBe(1);
    for (const target of withBytes.report.targets) {
      expect(target.exact).toBe(false);
      expect(target.differences.map((difference) => [difference.kind, difference.key])).toEqual([
        ['checksum', 'a.txt'],
        ['missing', 'b.txt'],
        ['extra', 'extra.bin'],
        ['header', 'web/app.js'],
      ]);
    }
    const text = await runCli(['verify', 'azure', '--checksum'], s.settings);
    expect(text.exitCode).toBe(1);
    expect(text.stdout).toContain('checksum "a.txt": source MD5');
    expect(text.stdout).toContain('missing "b.txt": in the source, not in the target');
    expect(text.stdout).toContain('extra "extra.bin": in the target, not in the source');
    expect(text.stdout).toContain('header "web/app.js": cacheControl source "max-age=60", target "no-store"');
    expect(text.stdout).toContain('NOT exact');

    // A run restores the missing and deletes the extra object. The changed byte and header were made at
    // the target behind the tool's back, with the recorded source kept: no listing shows them, only verify.
    expect((await runJson('all', s.settings)).exitCode).toBe(0);
    const after = await verifyJson(s, ['all', '--checksum']);
    for (const target of after.report.targets) {
      expect(target.differences.map((difference) => [difference.kind, difference.key])).toEqual([['checksum', 'a.txt'], ['header', 'web/app.js']]);
    }
  });

  it('names metadata that differs, and a copy that recorded no source ETag as unproven', async () => {
    const s = await mirrored();
    await s.blobs.getBlobClient('web/app.js').setMetadata({ build_id: '8', source_etag: (await s.blobs.getBlobClient('web/app.js').getProperties()).metadata!['source_etag']! });
    await putBlob(s, 'c.txt', 'content of c.txt', 'text/plain'); // as the old tool wrote it: no recorded source
    const { exitCode, report } = await verifyJson(s, ['azure']);
    expect(exitCode).toBe(1);
    expect(report.targets[0]!.differences).toEqual([
      { kind: 'unproven', key: 'c.txt', sourceEtag: expect.any(String) },
      { kind: 'metadata', key: 'web/app.js', name: 'build_id', source: '7', target: '8' },
    ]);
    const text = await runCli(['verify', 'azure'], s.settings);
    expect(text.stdout).toContain('unproven "c.txt": the target recorded no source ETag (run with --checksum to compare the bytes)');
    // Reading the bytes proves c.txt; the metadata difference remains.
    const checked = await verifyJson(s, ['azure', '--checksum']);
    expect(checked.report.targets[0]!.differences.map((difference) => difference.kind)).toEqual(['metadata']);
  });

  it('bad input exits 2 and says what is allowed', async () => {
    const s = await mirrored();
    const cases: [string[], string][] = [
      [['verify'], 'missing provider: choose one of all, azure, oci'],
      [['verify', 'gcp'], 'unknown provider "gcp": choose one of all, azure, oci'],
      [['verify', 'all', '--dry-run'], 'unknown option "--dry-run" for verify: allowed are --checksum, --json, --help'],
      [['verify', 'azure', 'oci'], 'one provider at a time, got "azure" "oci"'],
    ];
    for (const [args, message] of cases) {
      const result = await runCli(args, s.settings);
      expect(result.exitCode, args.join(' ')).toBe(2);
      expect(result.stderr).toContain(message);
    }
    const { AWS_S3_BUCKET: _bucket, ...withoutBucket } = s.settings;
    const missing = await runCli(['verify', 'all'], withoutBucket);
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr).toContain('AWS_S3_BUCKET is required');
  });
});

describe('verify with a deadline', () => {
  it('objects not compared by the deadline are counted as unchecked, and the target is not exact', async () => {
    const s = await mirrored();
    const report = await createSyncService(s.settings).verify({ provider: 'azure', stopAt: Date.now() - 1 });
    expect(report).toMatchObject({ exact: false, stoppedEarly: 'the deadline came before every object was compared', targets: [{ target: 'azure', compared: 0, unchecked: 4, differences: [] }] });
  });
});

describe('GET /api/verify/{provider}', () => {
  async function callVerify(s: Scenario, path: string): Promise<{ status: number; body: Record<string, unknown>; events: Record<string, unknown>[] }> {
    const url = new URL(path, 'https://artifacts-sync.azurewebsites.net');
    const request = new azureFunctions.HttpRequest({ method: 'GET', url: url.href, params: { provider: url.pathname.split('/').at(-1)! } });
    const invocation = newInvocation('verify');
    const handler = verifyHttpHandler({ service: createSyncService(s.settings), settings: s.settings });
    const response = await handler(request, invocation.context);
    return { status: response.status ?? 200, body: JSON.parse(String(response.body)) as Record<string, unknown>, events: loggedEvents(invocation.lines) };
  }

  it('answers 200 with the report when exact, 500 naming each difference (also in the log) when not, 400 on a bad query', async () => {
    const s = await mirrored();
    const exact = await callVerify(s, '/api/verify/all?checksum=true');
    expect(exact.status).toBe(200);
    expect(exact.body).toMatchObject({ exact: true, checksum: true });

    await s.blobs.deleteBlob('b.txt');
    const differs = await callVerify(s, '/api/verify/azure');
    expect(differs.status).toBe(500);
    expect(differs.body).toMatchObject({ exact: false, targets: [{ target: 'azure', differences: [{ kind: 'missing', key: 'b.txt' }] }] });
    expect(differs.events).toContainEqual(expect.objectContaining({ event: 'verify-difference', target: 'azure', kind: 'missing', key: 'b.txt' }));

    const bad = await callVerify(s, '/api/verify/all?checksum=yes');
    expect(bad.status).toBe(400);
    expect(bad.body['error']).toBe('checksum "yes" is not true or false: allowed is checksum=true or checksum=false (and code, the function key)');
    expect((await callVerify(s, '/api/verify/gcp')).status).toBe(400);
  });
});

describe('verify compares (pure)', () => {
  const object = (key: string, size = 1, recordedEtag?: string) => ({ key, size, lastModifiedMs: 0, etag: `e-${key}`, ...(recordedEtag === undefined ? {} : { recordedSource: { etag: recordedEtag } }) });

  it('listings: missing, extra, size, a recorded ETag that moved, and refused keys, each named once', () => {
    const plan = planMirror(
      [object('same'), object('gone'), object('grown', 2), object('moved'), object('x\\y')],
      [object('same', 1, 'e-same'), object('grown', 1), object('moved', 1, 'e-old'), object('left'), object('x\\y')],
      DEFAULT_DELETE_LIMITS,
      (key) => (key.includes('\\') ? 'no backslash' : undefined),
    );
    expect(listingDifferences(plan)).toEqual([
      { kind: 'refused', key: 'x\\y', reason: 'no backslash' },
      { kind: 'size', key: 'grown', source: 2, target: 1 },
      { kind: 'content', key: 'moved', sourceEtag: 'e-moved', recordedEtag: 'e-old' },
      { kind: 'missing', key: 'gone' },
      { kind: 'extra', key: 'left' },
    ]);
    expect(plan.unchanged).toBe(1); // "same": compared by HEAD
  });

  it('heads: a header the source lacks but the target has is a difference; a missing Content-Type at the source is not', () => {
    const differences = compareHeads('k', { etag: 'e', headers: {} }, { headers: { contentType: 'application/octet-stream', cacheControl: 'no-cache' }, userMetadata: {}, recordedSource: { etag: 'e' } }, { ok: true, metadata: {} }, false);
    expect(differences).toEqual([{ kind: 'header', key: 'k', field: 'cacheControl', source: undefined, target: 'no-cache' }]);
  });
});
