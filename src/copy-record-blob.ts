/**
 * The copy record of an OCI destination (core/copy-record.ts) as a blob beside its run lock:
 * `oci/<endpoint host>/<bucket>.copies` next to `oci/<endpoint host>/<bucket>.lock`, in the lock
 * container. Read once at the start of a run, beside the listings; written only at the end of a run
 * that holds the lock, and only over the version it read (a conditional write).
 */
import type { TokenCredential } from '@azure/identity';
import type { LockConfig } from './config.ts';
import { StoreError, describeError } from './core/errors.ts';
import type { CopyRecordStore } from './core/copy-record.ts';

export interface BlobCopyRecordOptions {
  readonly lock: LockConfig;
  readonly credential: TokenCredential | undefined;
  readonly blobName: string;
  /** Milliseconds one request may go unanswered before it is tried again (3 attempts). */
  readonly attemptTimeoutMs: number;
}

export function blobCopyRecordStore(options: BlobCopyRecordOptions): CopyRecordStore {
  const { lock, blobName } = options;
  const label = `${blobName} in the lock container ${lock.container}`;
  // The Blob SDK loads on first use, beside the listings (a run mirroring only OCI needs it for its lock anyway).
  // Few tries: the record only spares HEADs, so a store that is down must not hold the run up.
  const client = async (maxTries: number) => {
    const { serviceClient, withAttemptTimeout } = await import('./stores/azure-blob.ts');
    const account = lock.connectionString !== undefined ? { connectionString: lock.connectionString } : { accountUrl: lock.accountUrl, credential: options.credential };
    const service = serviceClient({ ...account, maxTries, tryTimeoutMs: options.attemptTimeoutMs });
    const blob = service.getContainerClient(lock.container).getBlockBlobClient(blobName);
    const bounded = <T>(call: (abortSignal: AbortSignal) => Promise<T>, signal: AbortSignal | undefined): Promise<T> => withAttemptTimeout(call, signal, options.attemptTimeoutMs, 3);
    return { blob, bounded };
  };
  const fail = (operation: string, error: unknown): StoreError =>
    new StoreError({ store: label, operation, scope: 'object', status: statusOf(error), detail: describeError(error), cause: error });

  return {
    label,
    async load(signal?: AbortSignal) {
      const { blob, bounded } = await client(2);
      try {
        const bytes = await bounded(async (abortSignal) => {
          const answer = await blob.download(0, undefined, { abortSignal });
          const chunks: Buffer[] = [];
          for await (const chunk of answer.readableStreamBody ?? []) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string));
          const body = Buffer.concat(chunks);
          if (answer.contentLength !== undefined && body.byteLength !== answer.contentLength) throw new Error(`the answer ended after ${body.byteLength} of ${answer.contentLength} bytes`);
          return { bytes: new Uint8Array(body.buffer, body.byteOffset, body.byteLength), version: answer.etag ?? '' };
        }, signal);
        return bytes;
      } catch (error) {
        // No record yet (or not even the lock container): the first run with a record.
        if (statusOf(error) === 404) return undefined;
        throw fail('read copy record', error);
      }
    },
    async save(bytes: Uint8Array, version: string | undefined, signal?: AbortSignal): Promise<void> {
      // One try: a record not saved costs the next run HEADs, never exactness.
      const { blob, bounded } = await client(1);
      try {
        await bounded((abortSignal) => blob.uploadData(bytes, { abortSignal, conditions: version === undefined ? { ifNoneMatch: '*' } : { ifMatch: version } }), signal);
      } catch (error) {
        throw fail('write copy record', error);
      }
    },
  };
}

function statusOf(error: unknown): number | undefined {
  const status = typeof error === 'object' && error !== null && 'statusCode' in error ? error.statusCode : undefined;
  return typeof status === 'number' ? status : undefined;
}
