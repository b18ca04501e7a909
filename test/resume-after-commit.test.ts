/**
 * A run whose commit reached the service although the run did not see it finish (cut by its deadline,
 * or a crash right after it) leaves in its ledger an upload the service has since completed. The next
 * run is offered that upload, finds it gone, and must take the object as written instead of sending
 * its bytes again (seen under load: 1.4x the bytes of a 200 MiB object sent to OCI).
 *
 * Real Azurite and s3rver; OCI through the S3 stand-in (./support/s3-stand-in.ts), which answers
 * ListParts of a completed upload 404 NoSuchUpload, as S3 and OCI do (s3rver has no ListParts).
 */
import { describe, expect, inject, it } from 'vitest';
import { ByteBudget } from '../src/core/concurrency.ts';
import { DEFAULT_TRANSFER_TUNING, streamObject, type ResumePoint } from '../src/core/transfer.ts';
import type { ObjectInfo, TargetName } from '../src/core/types.ts';
import { azureBlobStore } from '../src/stores/azure-blob.ts';
import { s3Store } from '../src/stores/s3.ts';
import { md5Hex, pseudoRandomBytes, putSource, readAll } from './support/scenario.ts';
import { createStandInScenario } from './support/stand-in-scenario.ts';

const emulators = inject('emulators');
const MIB = 1024 * 1024;

describe('an upload whose commit an earlier run did not see', () => {
  it('is taken as written by the next run (one HEAD per target), not sent again', async () => {
    const s = await createStandInScenario(emulators, { prefix: 'commit-seen' });
    try {
      const size = 12 * MIB + 345;
      const body = pseudoRandomBytes(size, 31);
      await putSource(s, 'big.bin', body);
      const s3 = (bucket: string, endpoint: string): ReturnType<typeof s3Store> =>
        s3Store({ label: `s3://${bucket}`, bucket, region: emulators.s3.region, endpoint, credentials: { accessKeyId: emulators.s3.accessKeyId, secretAccessKey: emulators.s3.secretAccessKey } });
      const source = s3(s.sourceBucket, s.settings.AWS_S3_ENDPOINT!);
      const destinations = [
        { name: 'oci' as TargetName, store: s3(s.ociBucket, s.settings.OCI_S3_ENDPOINT!) },
        { name: 'azure' as TargetName, store: azureBlobStore({ container: s.container, connectionString: s.settings.AZURE_STORAGE_CONNECTION_STRING! }) },
      ];
      let listed: ObjectInfo | undefined;
      for await (const page of source.listPages()) listed ??= page.find((entry) => entry.key === 'big.bin');
      const transfer = { source, key: 'big.bin', destinations, tuning: { ...DEFAULT_TRANSFER_TUNING, partSize: 5 * MIB, singleRequestMax: 5 * MIB }, budget: new ByteBudget(64 * MIB), listed: listed! };

      // Run 1 stops after the first part; its ledger would hold these resume points.
      const stop = new AbortController();
      stop.abort();
      const resume = new Map<TargetName, ResumePoint>();
      for (const [name, outcome] of await streamObject({ ...transfer, stopStarting: stop.signal })) {
        if (!('stopped' in outcome)) throw new Error(`${name} did not stop: ${JSON.stringify(outcome)}`);
        resume.set(name, { etag: listed!.etag, partSize: outcome.stopped.partSize, token: outcome.stopped.resumeToken });
      }
      // Run 2 continues and commits, but (as if cut at its deadline) its ledger is never updated.
      for (const outcome of (await streamObject({ ...transfer, resume })).values()) expect(outcome).toMatchObject({ ok: true });

      // Run 3 is offered the same, now completed, uploads.
      for (const proxy of [s.sourceProxy, s.ociProxy, s.azureProxy]) proxy.reset();
      const third = await streamObject({ ...transfer, resume });

      for (const name of ['oci', 'azure'] as const) expect(third.get(name), name).toMatchObject({ ok: true, bytes: 0, written: { source: { etag: listed!.etag } } });
      // Nothing sent again, nothing read from the source; each target asked once what it holds.
      expect(s.ociProxy.requests().filter((request) => request.operation === 'UploadPart' || request.operation === 'CompleteMultipartUpload')).toEqual([]);
      expect(s.azureProxy.requests().filter((request) => request.operation === 'PutBlock' || request.operation === 'PutBlockList')).toEqual([]);
      expect(s.sourceProxy.requests().filter((request) => request.operation === 'GetObject')).toEqual([]);
      expect(s.ociProxy.requests().filter((request) => request.operation === 'HeadObject').length).toBe(1);
      // The upload run 3 had to start (the old one was gone) is aborted, so nothing is left behind.
      expect(s.ociStandIn.uploads(s.ociBucket).map((upload) => upload.state)).toEqual(['completed', 'aborted']);
      const state = await readAll(s);
      for (const name of ['oci', 'azure'] as const) expect(state[name].get('big.bin')?.md5, name).toBe(md5Hex(body));
    } finally {
      await s.close();
    }
  });
});
