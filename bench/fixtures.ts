/**
 * What the benchmark puts into the emulators and reads back: seeding the source fast, fresh targets
 * per contender, and the check that a target is an exact mirror after a run.
 */
import { CopyObjectCommand, DeleteBucketCommand, DeleteObjectsCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { BlobServiceClient } from '@azure/storage-blob';
import { createHash } from 'node:crypto';
import { forEachBounded } from '../src/core/concurrency.ts';
import { createBucket, createContainer, uniqueName, type EmulatorCoordinates } from '../test/support/emulators.ts';

/** One object to write to the source. */
export interface SeedObject {
  readonly key: string;
  readonly body: () => Uint8Array;
}

/** Writes the objects with `concurrency` PUTs in flight; bodies are made just before their PUT so memory stays small. */
export async function seedBucket(s3: S3Client, bucket: string, objects: Iterable<SeedObject>, concurrency: number): Promise<void> {
  await forEachBounded(objects, concurrency, async (object) => {
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: object.key, Body: object.body(), ContentType: 'application/octet-stream' }));
  });
}

/** An empty Azure container and OCI bucket for one contender. */
export interface TargetPair {
  readonly container: string;
  readonly ociBucket: string;
}

export async function freshTargets(emulators: EmulatorCoordinates, prefix: string): Promise<TargetPair> {
  const [container, ociBucket] = await Promise.all([createContainer(emulators.azurite, uniqueName(`${prefix}-az`)), createBucket(emulators.s3, uniqueName(`${prefix}-oci`))]);
  return { container, ociBucket };
}

/** A key as a listing shows it; `md5` when the listing carries the bytes' MD5 (S3 single-part ETag, Azure Content-MD5). */
export interface ListedObject {
  readonly size: number;
  readonly md5: string | undefined;
}

export async function listBucket(s3: S3Client, bucket: string): Promise<Map<string, ListedObject>> {
  const objects = new Map<string, ListedObject>();
  let token: string | undefined;
  do {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
    for (const entry of page.Contents ?? []) {
      if (entry.Key === undefined) continue;
      const etag = entry.ETag?.replaceAll('"', '');
      objects.set(entry.Key, { size: entry.Size ?? 0, md5: etag !== undefined && /^[0-9a-f]{32}$/.test(etag) ? etag : undefined });
    }
    token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
  } while (token !== undefined);
  return objects;
}

export async function listContainer(blobs: BlobServiceClient, container: string): Promise<Map<string, ListedObject>> {
  const objects = new Map<string, ListedObject>();
  for await (const item of blobs.getContainerClient(container).listBlobsFlat()) {
    const md5 = item.properties.contentMD5;
    objects.set(item.name, { size: item.properties.contentLength ?? 0, md5: md5 === undefined ? undefined : Buffer.from(md5).toString('hex') });
  }
  return objects;
}

/** Reads one object's bytes and returns their MD5 (hex). */
export type ByteReader = (key: string) => Promise<string>;

export function s3ByteReader(s3: S3Client, bucket: string): ByteReader {
  return async (key) => {
    const response = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return md5OfStream(response.Body as AsyncIterable<Uint8Array>);
  };
}

export function blobByteReader(blobs: BlobServiceClient, container: string): ByteReader {
  return async (key) => {
    const response = await blobs.getContainerClient(container).getBlobClient(key).download();
    return md5OfStream(response.readableStreamBody as AsyncIterable<Uint8Array>);
  };
}

async function md5OfStream(body: AsyncIterable<Uint8Array>): Promise<string> {
  const hash = createHash('md5');
  for await (const chunk of body) hash.update(chunk);
  return hash.digest('hex');
}

/** How far a target is from an exact mirror of the source. */
export interface MirrorCheck {
  readonly sourceObjects: number;
  readonly targetObjects: number;
  readonly missing: number;
  readonly extra: number;
  readonly wrongSize: number;
  /** Keys whose bytes were read back from the target and hashed. */
  readonly bytesChecked: number;
  /** Of those, the keys whose bytes differ from the source's. */
  readonly wrongBytes: readonly string[];
  /** Keys asked to be read back that the target does not hold. */
  readonly unreadable: readonly string[];
  readonly exact: boolean;
}

/**
 * Compares key sets and sizes from the listings, then reads back the bytes of `keysToRead` from the
 * target and compares their MD5 with the source's (from the source listing's ETag, or read too).
 */
export async function checkMirror(request: {
  readonly source: Map<string, ListedObject>;
  readonly target: Map<string, ListedObject>;
  readonly keysToRead: Iterable<string>;
  readonly readSource: ByteReader;
  readonly readTarget: ByteReader;
}): Promise<MirrorCheck> {
  const { source, target } = request;
  let missing = 0;
  let wrongSize = 0;
  for (const [key, object] of source) {
    const copy = target.get(key);
    if (copy === undefined) missing += 1;
    else if (copy.size !== object.size) wrongSize += 1;
  }
  let extra = 0;
  for (const key of target.keys()) if (!source.has(key)) extra += 1;

  const wrongBytes: string[] = [];
  const requested = [...request.keysToRead];
  const keys = requested.filter((key) => source.has(key) && target.has(key));
  const unreadable = requested.filter((key) => !target.has(key));
  await forEachBounded(keys, 8, async (key) => {
    const [expected, actual] = await Promise.all([source.get(key)?.md5 ?? request.readSource(key), request.readTarget(key)]);
    if (expected !== actual) wrongBytes.push(key);
  });
  return {
    sourceObjects: source.size,
    targetObjects: target.size,
    missing,
    extra,
    wrongSize,
    bytesChecked: keys.length,
    wrongBytes,
    unreadable,
    exact: missing === 0 && extra === 0 && wrongSize === 0 && wrongBytes.length === 0,
  };
}

/** One line for a table cell: `exact` or what is wrong. */
export function describeCheck(check: MirrorCheck): string {
  if (check.exact) return `exact (${check.targetObjects} obj, ${check.bytesChecked} read back)`;
  const problems = [
    check.missing > 0 ? `${check.missing} missing` : '',
    check.extra > 0 ? `${check.extra} extra` : '',
    check.wrongSize > 0 ? `${check.wrongSize} wrong size` : '',
    check.wrongBytes.length > 0 ? `${check.wrongBytes.length} wrong bytes` : '',
  ].filter((problem) => problem !== '');
  return `NOT a mirror: ${problems.join(', ')}`;
}

/** Frees the emulators' memory and disk after a scenario: Azurite keeps blobs in memory. */
export async function removeTargets(s3: S3Client, blobs: BlobServiceClient, targets: TargetPair): Promise<void> {
  await blobs.getContainerClient(targets.container).deleteIfExists();
  await emptyAndDeleteBucket(s3, targets.ociBucket);
}

export async function emptyAndDeleteBucket(s3: S3Client, bucket: string): Promise<void> {
  const keys = [...(await listBucket(s3, bucket)).keys()];
  for (let offset = 0; offset < keys.length; offset += 1000) {
    await s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys.slice(offset, offset + 1000).map((key) => ({ Key: key })), Quiet: true } }));
  }
  await s3.send(new DeleteBucketCommand({ Bucket: bucket }));
}

/**
 * Copies every object of one target into the same, empty target of `to`, inside the emulators
 * (Copy Blob, CopyObject): same keys, bytes and metadata, without a tool in between. For a second
 * contender that needs the state another one wrote.
 */
export async function cloneTarget(s3: S3Client, blobs: BlobServiceClient, target: 'azure' | 'oci', from: TargetPair, to: TargetPair): Promise<void> {
  if (target === 'azure') {
    const source = blobs.getContainerClient(from.container);
    const destination = blobs.getContainerClient(to.container);
    const names: string[] = [];
    for await (const item of source.listBlobsFlat()) names.push(item.name);
    await forEachBounded(names, 16, async (name) => {
      const poller = await destination.getBlobClient(name).beginCopyFromURL(source.getBlobClient(name).url);
      await poller.pollUntilDone();
    });
    return;
  }
  const keys = [...(await listBucket(s3, from.ociBucket)).keys()];
  await forEachBounded(keys, 16, async (key) => {
    // s3rver takes the copy source's slashes literally: encode each segment, not the separators.
    const copySource = `${from.ociBucket}/${encodeURIComponent(key).replaceAll('%2F', '/')}`;
    await s3.send(new CopyObjectCommand({ Bucket: to.ociBucket, Key: key, CopySource: copySource, MetadataDirective: 'COPY' }));
  });
}
