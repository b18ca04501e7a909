/**
 * Interrupted runs: the real CLI (`node src/cli.ts all`) is killed with SIGKILL at many points of a run
 * with several multi-part objects. After each kill, every object visible at either target must be
 * byte-identical to the source's current version or to the target's previous version (never partial,
 * never corrupt); then a normal run converges to the exact mirror and aborts the multipart uploads the
 * killed run left at OCI.
 *
 * OCI is reached through the S3 stand-in (./support/s3-stand-in.ts), which plays real OCI where s3rver
 * differs: an atomic PutObject (s3rver shows a partial PUT body), and ListMultipartUploads /
 * AbortMultipartUpload (s3rver answers 501 / 405), served from the uploads it saw. Azure is Azurite.
 * Kill points are chosen from the proxies' request logs (a number of parts uploaded, a commit in flight,
 * a body half sent, ...), one fresh pair of targets per point, all filled with the same old versions.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { ContainerClient } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { blobServiceClientFor, createBucket, createContainer, uniqueName } from './support/emulators.ts';
import type { HttpProxy, ProxiedRequest } from './support/http-proxy.ts';
import { runJson } from './support/cli-run.ts';
import type { HeldRequest } from './support/s3-stand-in.ts';
import { createStandInScenario, type StandInScenario } from './support/stand-in-scenario.ts';
import { md5Hex, pseudoRandomBytes, putS3Object, putSource, readBucket, type StoredObject } from './support/scenario.ts';

const emulators = inject('emulators');
const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const MIB = 1024 * 1024;
const blobService = blobServiceClientFor(emulators.azurite);

/** The source: three objects that go in two 5 MiB parts each, one that goes in a single PUT, and small ones. */
const SOURCE: readonly [string, Uint8Array][] = [
  ['big/a.bin', pseudoRandomBytes(8 * MIB + 11, 1)],
  ['big/b.bin', pseudoRandomBytes(9 * MIB + 22, 2)],
  ['big/c.bin', pseudoRandomBytes(10 * MIB + 33, 3)],
  ['medium.bin', pseudoRandomBytes(4 * MIB + 44, 4)],
  ...Array.from({ length: 12 }, (_, index) => [`small/${String(index).padStart(2, '0')}.txt`, pseudoRandomBytes(1000 + index * 777, 10 + index)] as [string, Uint8Array]),
];

/** What each target holds before the run: old versions of some keys (other sizes) and keys no longer in the source. */
const PREVIOUS: Record<'azure' | 'oci', readonly [string, Uint8Array][]> = {
  azure: [
    ['big/a.bin', pseudoRandomBytes(2 * MIB, 101)],
    ['medium.bin', pseudoRandomBytes(1 * MIB, 102)],
    ['small/03.txt', pseudoRandomBytes(10, 103)],
    ['small/07.txt', pseudoRandomBytes(20, 104)],
    ['extra/1.txt', pseudoRandomBytes(30, 105)],
    ['extra/2.txt', pseudoRandomBytes(40, 106)],
  ],
  oci: [
    ['big/a.bin', pseudoRandomBytes(2 * MIB, 201)],
    ['big/b.bin', pseudoRandomBytes(3 * MIB, 202)],
    ['medium.bin', pseudoRandomBytes(1 * MIB, 203)],
    ['small/03.txt', pseudoRandomBytes(10, 204)],
    ['small/07.txt', pseudoRandomBytes(20, 205)],
    ['extra/1.txt', pseudoRandomBytes(30, 206)],
    ['extra/2.txt', pseudoRandomBytes(40, 207)],
  ],
};

const sourceMd5 = new Map(SOURCE.map(([key, bytes]) => [key, md5Hex(bytes)]));
const previousMd5 = { azure: new Map(PREVIOUS.azure.map(([key, bytes]) => [key, md5Hex(bytes)])), oci: new Map(PREVIOUS.oci.map(([key, bytes]) => [key, md5Hex(bytes)])) };

let s: StandInScenario;
beforeAll(async () => {
  s = await createStandInScenario(emulators, {
    prefix: 'kill',
    settings: { SYNC_PART_SIZE_MB: '5', SYNC_SINGLE_REQUEST_MAX_MB: '5', SYNC_TRANSFER_MODE: 'streaming', SYNC_LOCK_LEASE_SECONDS: '15' },
  });
  for (const [key, bytes] of SOURCE) await putSource(s, key, bytes, 'application/octet-stream');
}, 120_000);
afterAll(async () => {
  await s.close();
});

/** A fresh pair of targets holding the previous versions, and the settings that point a run at them. */
async function freshTargets(): Promise<{ bucket: string; container: ContainerClient; settings: Record<string, string> }> {
  const bucket = await createBucket(emulators.s3, uniqueName('kill-oci'));
  const containerName = await createContainer(emulators.azurite, uniqueName('kill-az'));
  const container = blobService.getContainerClient(containerName);
  for (const [key, bytes] of PREVIOUS.oci) await putS3Object(s, bucket, key, bytes);
  for (const [key, bytes] of PREVIOUS.azure) await container.getBlockBlobClient(key).upload(bytes, bytes.byteLength);
  return { bucket, container, settings: { ...s.settings, OCI_BUCKET: bucket, AZURE_STORAGE_CONTAINER: containerName } };
}

async function readContainer(container: ContainerClient): Promise<Map<string, StoredObject>> {
  const result = new Map<string, StoredObject>();
  for await (const item of container.listBlobsFlat()) {
    const bytes = await container.getBlobClient(item.name).downloadToBuffer();
    result.set(item.name, { size: bytes.byteLength, md5: md5Hex(bytes), contentType: item.properties.contentType });
  }
  return result;
}

/** Per target: how many keys hold the source's version, the previous version, or nothing; and anything else (must be none). */
function classify(target: 'azure' | 'oci', held: Map<string, StoredObject>): { current: number; previous: number; absent: number; other: string[] } {
  const keys = new Set([...sourceMd5.keys(), ...previousMd5[target].keys()]);
  const counts = { current: 0, previous: 0, absent: 0, other: [] as string[] };
  for (const key of keys) {
    const object = held.get(key);
    if (object === undefined) counts.absent += 1;
    else if (object.md5 === sourceMd5.get(key)) counts.current += 1;
    else if (object.md5 === previousMd5[target].get(key)) counts.previous += 1;
    else counts.other.push(`${key} (${object.size} bytes, neither version)`);
  }
  for (const key of held.keys()) if (!keys.has(key)) counts.other.push(`${key} (unexpected key)`);
  return counts;
}

interface Logs {
  readonly source: ProxiedRequest[];
  readonly oci: ProxiedRequest[];
  readonly azure: ProxiedRequest[];
  readonly msSinceFirstRead: number | undefined;
}

interface KillPoint {
  readonly name: string;
  /** Kill when this holds. */
  readonly when: (logs: Logs, held: HeldRequest | undefined) => boolean;
  /** Hold the first CompleteMultipartUpload at the OCI stand-in; kill once it arrived. */
  readonly holdComplete?: boolean;
}

const answered = (requests: readonly ProxiedRequest[], operation: string): number => requests.filter((request) => request.operation === operation && request.status !== null).length;
const arrived = (requests: readonly ProxiedRequest[], operation: string): number => requests.filter((request) => request.operation === operation).length;
const halfSent = (requests: readonly ProxiedRequest[], operation: string, key: string): boolean =>
  requests.some((request) => request.operation === operation && request.path.endsWith(`/${key}`) && request.status === null && request.requestBytes >= 2 * MIB);

const KILL_POINTS: readonly KillPoint[] = [
  { name: '200 ms after the first source read', when: (logs) => (logs.msSinceFirstRead ?? 0) >= 200 },
  { name: 'medium.bin half sent to OCI in its single PutObject', when: (logs) => halfSent(logs.oci, 'PutObject', 'medium.bin') },
  { name: 'medium.bin half sent to Azure in its single Put Blob', when: (logs) => halfSent(logs.azure, 'PutBlob', 'medium.bin') },
  { name: '1 part uploaded to OCI', when: (logs) => answered(logs.oci, 'UploadPart') >= 1 },
  { name: '3 parts uploaded to OCI and 3 blocks to Azure', when: (logs) => answered(logs.oci, 'UploadPart') >= 3 && answered(logs.azure, 'PutBlock') >= 3 },
  { name: 'the first CompleteMultipartUpload about to reach OCI', holdComplete: true, when: (_logs, held) => held !== undefined },
  { name: 'the first Put Block List sent to Azure', when: (logs) => arrived(logs.azure, 'PutBlockList') >= 1 },
  { name: 'the first CompleteMultipartUpload answered', when: (logs) => answered(logs.oci, 'CompleteMultipartUpload') >= 1 },
  { name: 'deletions sent to OCI or Azure', when: (logs) => arrived(logs.oci, 'DeleteObjects') + arrived(logs.azure, 'BlobBatch') >= 1 },
];

/** Runs the CLI in its own process and SIGKILLs it when `point` holds; resolves with the log counts at the kill. */
async function runAndKill(point: KillPoint, settings: Record<string, string>, bucket: string): Promise<{ killedAfterMs: number; atKill: string }> {
  for (const proxy of [s.sourceProxy, s.ociProxy, s.azureProxy]) proxy.reset();
  let held: HeldRequest | undefined;
  if (point.holdComplete) void s.ociStandIn.holdNext('CompleteMultipartUpload', (path) => path.startsWith(`/${bucket}/`)).then((request) => (held = request));
  const child = spawn(process.execPath, ['src/cli.ts', 'all', '--json'], {
    cwd: repoRoot,
    env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/tmp', ...settings },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdout.resume();
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const started = performance.now();
  let firstReadAt: number | undefined;
  const outcome = await new Promise<{ killedAfterMs: number; atKill: string } | { exitCode: number | null }>((resolve) => {
    const timer = setInterval(() => {
      const logs = { source: s.sourceProxy.requests(), oci: s.ociProxy.requests(), azure: s.azureProxy.requests() };
      if (firstReadAt === undefined && answered(logs.source, 'GetObject') >= 1) firstReadAt = performance.now();
      if (!point.when({ ...logs, msSinceFirstRead: firstReadAt === undefined ? undefined : performance.now() - firstReadAt }, held)) return;
      child.kill('SIGKILL');
      clearInterval(timer);
      const atKill =
        `OCI: ${answered(logs.oci, 'UploadPart')} parts, ${answered(logs.oci, 'CompleteMultipartUpload')} completes, ${answered(logs.oci, 'PutObject')} puts; ` +
        `Azure: ${answered(logs.azure, 'PutBlock')} blocks, ${answered(logs.azure, 'PutBlockList')} block lists, ${answered(logs.azure, 'PutBlob')} puts`;
      resolve({ killedAfterMs: Math.round(performance.now() - started), atKill });
    }, 2);
    void exited.then((exitCode) => {
      clearInterval(timer);
      resolve({ exitCode });
    });
  });
  await exited;
  held?.release();
  if ('exitCode' in outcome) throw new Error(`the run ended (exit ${outcome.exitCode}) before "${point.name}"; stderr:\n${stderr}`);
  return outcome;
}

/** Waits until no request of the killed run is still being served: s3rver's own writes are not atomic, real services' are. */
async function settle(): Promise<void> {
  const busy = (proxy: HttpProxy): boolean => proxy.requests().some((request) => request.durationMs === null);
  for (let waited = 0; waited < 10_000 && (busy(s.azureProxy) || busy(s.ociProxy)); waited += 10) await new Promise((resolve) => setTimeout(resolve, 10));
  await s.ociStandIn.idle();
  // The emulators are still tidying up after the requests cut off by the kill.
  await new Promise((resolve) => setTimeout(resolve, 250));
}

/** The killed run's leases would keep the next run out for SYNC_LOCK_LEASE_SECONDS; break them as if they had expired. */
async function expireLocks(bucket: string, container: ContainerClient): Promise<void> {
  const locks = blobService.getContainerClient('artifacts-sync-locks');
  const names = [`azure/${emulators.azurite.accountName}/${container.containerName}.lock`, `oci/${new URL(s.settings['OCI_S3_ENDPOINT']!).host}/${bucket}.lock`];
  await Promise.all(names.map((name) => locks.getBlobClient(name).getBlobLeaseClient().breakLease(0).catch(() => undefined)));
}

describe('a run killed with SIGKILL', () => {
  it('leaves every visible object whole (new or previous version) at every kill point, and the next run converges and aborts the leftover uploads', async () => {
    const findings: string[] = [];
    for (const point of KILL_POINTS) {
      const { bucket, container, settings } = await freshTargets();
      const { killedAfterMs, atKill } = await runAndKill(point, settings, bucket);
      await settle();

      const [oci, azure] = await Promise.all([readBucket(s, bucket), readContainer(container)]);
      const state = { oci: classify('oci', oci), azure: classify('azure', azure) };
      const leftovers = s.ociStandIn.uploads(bucket).filter((upload) => upload.state === 'in-progress');
      findings.push(
        `${point.name}: killed at ${killedAfterMs} ms (${atKill}); ` +
          `OCI ${state.oci.current} new/${state.oci.previous} previous/${state.oci.absent} absent, ${leftovers.length} incomplete uploads; ` +
          `Azure ${state.azure.current} new/${state.azure.previous} previous/${state.azure.absent} absent`,
      );
      expect(state.oci.other, point.name).toEqual([]);
      expect(state.azure.other, point.name).toEqual([]);

      await expireLocks(bucket, container);
      const next = await runJson('all', settings);
      expect(next.exitCode, `${point.name}: ${next.stderr}`).toBe(0);
      const [ociAfter, azureAfter] = await Promise.all([readBucket(s, bucket), readContainer(container)]);
      for (const [name, held] of [['oci', ociAfter], ['azure', azureAfter]] as const) {
        expect(Object.fromEntries([...held].map(([key, object]) => [key, object.md5])), `${point.name}: ${name} after the next run`).toEqual(Object.fromEntries(sourceMd5));
      }
      // Every upload the killed run left at OCI was aborted by the next run, which says so.
      const uploads = s.ociStandIn.uploads(bucket);
      for (const leftover of leftovers) expect(uploads.find((upload) => upload.uploadId === leftover.uploadId)?.state, point.name).toBe('aborted');
      expect(uploads.filter((upload) => upload.state === 'in-progress'), point.name).toEqual([]);
      const ociNotes = next.report.targets.find((target) => target.target === 'oci')?.notes ?? [];
      if (leftovers.length > 0) expect(ociNotes, point.name).toContain(`removed ${leftovers.length} interrupted upload(s) left by an earlier run`);
      findings[findings.length - 1] += `; the next run: exact mirror at both targets, ${leftovers.length} upload(s) aborted`;
    }
    console.log(`kill points:\n${findings.map((finding) => `- ${finding}`).join('\n')}`);
  }, 420_000);
});
