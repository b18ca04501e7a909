import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { blobServiceClientFor, createBucket, createContainer, s3ClientFor, uniqueName } from './support/emulators.ts';

const { azurite, s3 } = inject('emulators');

describe('the emulators accept writes and listings', () => {
  const s3Client = s3ClientFor(s3);
  afterAll(() => s3Client.destroy());

  it('Azurite stores a blob in a new container and lists it with its metadata', async () => {
    const container = blobServiceClientFor(azurite).getContainerClient(await createContainer(azurite, uniqueName('sanity')));
    await container.getBlockBlobClient('reports/ünï 1.txt').uploadData(Buffer.from('hello azure'), { metadata: { src_etag: 'abc' } });

    const listed = [];
    for await (const blob of container.listBlobsFlat({ includeMetadata: true })) {
      listed.push({ name: blob.name, size: blob.properties.contentLength, metadata: blob.metadata });
    }
    expect(listed).toEqual([{ name: 'reports/ünï 1.txt', size: 11, metadata: { src_etag: 'abc' } }]);
    expect((await container.getBlockBlobClient('reports/ünï 1.txt').downloadToBuffer()).toString()).toBe('hello azure');
  });

  it('s3rver stores an object in a bucket created through the SDK and lists it', async () => {
    const bucket = await createBucket(s3, uniqueName('sanity'));
    await s3Client.send(new PutObjectCommand({ Bucket: bucket, Key: 'reports/ünï 1.txt', Body: 'hello s3' }));

    const listed = await s3Client.send(new ListObjectsV2Command({ Bucket: bucket }));
    expect(listed.Contents?.map((object) => ({ key: object.Key, size: object.Size }))).toEqual([{ key: 'reports/ünï 1.txt', size: 8 }]);
    const read = await s3Client.send(new GetObjectCommand({ Bucket: bucket, Key: 'reports/ünï 1.txt' }));
    expect(await read.Body?.transformToString()).toBe('hello s3');
  });
});
