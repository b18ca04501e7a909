/**
 * A source bucket and two targets on the emulators, the settings that point a run at them, and ways to
 * seed objects and read back exactly what each store holds. Shared by the tests, the demo and the benchmark.
 */
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { ContainerClient } from '@azure/storage-blob';
import { createHash } from 'node:crypto';
import type { Settings } from '../../src/config.ts';
import { blobServiceClientFor, createBucket, createContainer, s3ClientFor, uniqueName, type EmulatorCoordinates } from './emulators.ts';

export interface Scenario {
  readonly emulators: EmulatorCoordinates;
  readonly sourceBucket: string;
  readonly ociBucket: string;
  readonly container: string;
  /** Settings for a run against this scenario, as the CLI and Functions read them. */
  readonly settings: Record<string, string>;
  readonly s3: S3Client;
  readonly blobs: ContainerClient;
}

/** What a store holds for one key, as a user would compare it. */
export interface StoredObject {
  readonly size: number;
  readonly md5: string;
  readonly contentType: string | undefined;
}

export async function createScenario(emulators: EmulatorCoordinates, prefix = 'mirror', extraSettings: Settings = {}): Promise<Scenario> {
  const sourceBucket = await createBucket(emulators.s3, uniqueName(`${prefix}-src`));
  const ociBucket = await createBucket(emulators.s3, uniqueName(`${prefix}-oci`));
  const container = await createContainer(emulators.azurite, uniqueName(`${prefix}-az`));
  const settings: Record<string, string> = {
    AWS_S3_BUCKET: sourceBucket,
    AWS_REGION: emulators.s3.region,
    AWS_S3_ENDPOINT: emulators.s3.endpoint,
    AWS_ACCESS_KEY_ID: emulators.s3.accessKeyId,
    AWS_SECRET_ACCESS_KEY: emulators.s3.secretAccessKey,
    AZURE_STORAGE_CONTAINER: container,
    AZURE_STORAGE_CONNECTION_STRING: emulators.azurite.connectionString,
    OCI_S3_ENDPOINT: emulators.s3.endpoint,
    OCI_REGION: emulators.s3.region,
    OCI_BUCKET: ociBucket,
    OCI_ACCESS_KEY_ID: emulators.s3.accessKeyId,
    OCI_SECRET_KEY: emulators.s3.secretAccessKey,
  };
  for (const [name, value] of Object.entries(extraSettings)) if (value !== undefined) settings[name] = value;
  return {
    emulators,
    sourceBucket,
    ociBucket,
    container,
    settings,
    s3: s3ClientFor(emulators.s3),
    blobs: blobServiceClientFor(emulators.azurite).getContainerClient(container),
  };
}

export async function putS3Object(scenario: Scenario, bucket: string, key: string, body: Uint8Array | string, contentType?: string): Promise<void> {
  await scenario.s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentType: contentType }));
}

/** Writes an object into the source bucket. */
export async function putSource(scenario: Scenario, key: string, body: Uint8Array | string, contentType?: string): Promise<void> {
  await putS3Object(scenario, scenario.sourceBucket, key, body, contentType);
}

/** Writes a blob directly (as the old tool, or some drift, would), with no recorded source. */
export async function putBlob(scenario: Scenario, key: string, body: Uint8Array | string, contentType?: string): Promise<void> {
  const bytes = typeof body === 'string' ? Buffer.from(body) : body;
  await scenario.blobs.getBlockBlobClient(key).upload(bytes, bytes.byteLength, contentType === undefined ? {} : { blobHTTPHeaders: { blobContentType: contentType } });
}

/** Every object of an S3 bucket with its bytes' MD5. */
export async function readBucket(scenario: Scenario, bucket: string): Promise<Map<string, StoredObject>> {
  const result = new Map<string, StoredObject>();
  let token: string | undefined;
  do {
    const page = await scenario.s3.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
    for (const entry of page.Contents ?? []) {
      const object = await scenario.s3.send(new GetObjectCommand({ Bucket: bucket, Key: entry.Key! }));
      const bytes = await object.Body!.transformToByteArray();
      result.set(entry.Key!, { size: bytes.byteLength, md5: md5Hex(bytes), contentType: object.ContentType });
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token !== undefined);
  return result;
}

/** Every blob of the container with its bytes' MD5. */
export async function readContainer(scenario: Scenario): Promise<Map<string, StoredObject>> {
  const result = new Map<string, StoredObject>();
  for await (const item of scenario.blobs.listBlobsFlat()) {
    const bytes = await scenario.blobs.getBlobClient(item.name).downloadToBuffer();
    result.set(item.name, { size: bytes.byteLength, md5: md5Hex(bytes), contentType: item.properties.contentType });
  }
  return result;
}

/** Keys, sizes, bytes and content types of the source, the Azure container and the OCI bucket. */
export async function readAll(scenario: Scenario): Promise<{ source: Map<string, StoredObject>; azure: Map<string, StoredObject>; oci: Map<string, StoredObject> }> {
  const [source, azure, oci] = await Promise.all([readBucket(scenario, scenario.sourceBucket), readContainer(scenario), readBucket(scenario, scenario.ociBucket)]);
  return { source, azure, oci };
}

/** Differences between a target and the source, as readable lines; empty when the target is an exact mirror. */
export function mirrorDifferences(source: Map<string, StoredObject>, target: Map<string, StoredObject>): string[] {
  const differences: string[] = [];
  for (const [key, expected] of source) {
    const actual = target.get(key);
    if (actual === undefined) differences.push(`missing ${JSON.stringify(key)}`);
    else if (actual.md5 !== expected.md5 || actual.size !== expected.size) differences.push(`different bytes ${JSON.stringify(key)}`);
    else if ((expected.contentType ?? '') !== '' && actual.contentType !== expected.contentType) {
      differences.push(`content type ${JSON.stringify(key)}: ${actual.contentType} instead of ${expected.contentType}`);
    }
  }
  for (const key of target.keys()) if (!source.has(key)) differences.push(`extra ${JSON.stringify(key)}`);
  return differences;
}

export function md5Hex(bytes: Uint8Array): string {
  return createHash('md5').update(bytes).digest('hex');
}

/** Deterministic pseudo-random bytes (xorshift), so a test's content is reproducible but not compressible. */
export function pseudoRandomBytes(size: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(size);
  let state = seed >>> 0 || 1;
  for (let index = 0; index < size; index += 4) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    bytes[index] = state & 0xff;
    if (index + 1 < size) bytes[index + 1] = (state >>> 8) & 0xff;
    if (index + 2 < size) bytes[index + 2] = (state >>> 16) & 0xff;
    if (index + 3 < size) bytes[index + 3] = (state >>> 24) & 0xff;
  }
  return bytes;
}

/** Waits until the clock has moved into a later whole second, so a write is seen as "newer" by second-precision listings. */
export async function nextSecond(): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, 1100 - (Date.now() % 1000) + 50));
}
