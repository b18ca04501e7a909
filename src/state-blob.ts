/**
 * A small state blob beside a target's run lock, in the lock container (SYNC_LOCK_CONTAINER): the copy
 * record (`<destination>.copies`, see copy-record-blob.ts) and the progress ledger
 * (`<destination>.progress.json`, see progress-ledger.ts). Both only save work, so each request is
 * bounded and tried few times: a store that is down must not hold a run up.
 */
import type { TokenCredential } from '@azure/identity';
import type { LockConfig } from './config.ts';
import { StoreError, describeError } from './core/errors.ts';

export interface StateBlobOptions {
  readonly lock: LockConfig;
  readonly credential: TokenCredential | undefined;
  /** The blob's name, given the lock account's name (Azure destinations are named by it). */
  readonly blobName: (accountName: string) => string;
  /** What the blob holds, for errors: `read <what>`, `write <what>`. */
  readonly what: string;
  /** Milliseconds one request may go unanswered before it is tried again (3 attempts). */
  readonly attemptTimeoutMs: number;
}

/** The bytes of a state blob and the version (ETag) they were read at. */
export interface StateBlobContent {
  readonly bytes: Uint8Array;
  readonly version: string;
}

export interface StateBlob {
  /** Where it is kept, for messages. */
  readonly label: string;
  /** The blob, or undefined when there is none yet (nor even the lock container). */
  load(tries: number, signal?: AbortSignal): Promise<StateBlobContent | undefined>;
  /** Writes the blob: only over `expected` (the version read; `absent`: only if there is none) or over anything (`any`). */
  save(bytes: Uint8Array, expected: string | 'absent' | 'any', tries: number, signal?: AbortSignal): Promise<void>;
}

export function stateBlobBesideLock(options: StateBlobOptions): StateBlob {
  const { lock, what } = options;
  let label = `${options.blobName('<account>')} in the lock container ${lock.container}`;
  // The Blob SDK loads on first use (a run holding a lock has it loaded already).
  const client = async (maxTries: number) => {
    const { serviceClient, withAttemptTimeout } = await import('./stores/azure-blob.ts');
    const account = lock.connectionString !== undefined ? { connectionString: lock.connectionString } : { accountUrl: lock.accountUrl, credential: options.credential };
    const service = serviceClient({ ...account, maxTries, tryTimeoutMs: options.attemptTimeoutMs });
    const blobName = options.blobName(service.accountName);
    label = `${blobName} in the lock container ${lock.container}`;
    const blob = service.getContainerClient(lock.container).getBlockBlobClient(blobName);
    const bounded = <T>(call: (abortSignal: AbortSignal) => Promise<T>, signal: AbortSignal | undefined): Promise<T> => withAttemptTimeout(call, signal, options.attemptTimeoutMs, 3);
    return { blob, bounded };
  };
  const fail = (operation: string, error: unknown): StoreError =>
    new StoreError({ store: label, operation, scope: 'object', status: statusOf(error), detail: describeError(error), cause: error });

  return {
    get label() {
      return label;
    },
    async load(tries, signal) {
      const { blob, bounded } = await client(tries);
      try {
        return await bounded(async (abortSignal) => {
          const answer = await blob.download(0, undefined, { abortSignal });
          const chunks: Buffer[] = [];
          for await (const chunk of answer.readableStreamBody ?? []) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string));
          const body = Buffer.concat(chunks);
          if (answer.contentLength !== undefined && body.byteLength !== answer.contentLength) throw new Error(`the answer ended after ${body.byteLength} of ${answer.contentLength} bytes`);
          return { bytes: new Uint8Array(body.buffer, body.byteOffset, body.byteLength), version: answer.etag ?? '' };
        }, signal);
      } catch (error) {
        if (statusOf(error) === 404) return undefined;
        throw fail(`read ${what}`, error);
      }
    },
    async save(bytes, expected, tries, signal) {
      const { blob, bounded } = await client(tries);
      const conditions = expected === 'any' ? {} : expected === 'absent' ? { ifNoneMatch: '*' } : { ifMatch: expected };
      try {
        await bounded((abortSignal) => blob.uploadData(bytes, { abortSignal, conditions }), signal);
      } catch (error) {
        throw fail(`write ${what}`, error);
      }
    },
  };
}

function statusOf(error: unknown): number | undefined {
  const status = typeof error === 'object' && error !== null && 'statusCode' in error ? error.statusCode : undefined;
  return typeof status === 'number' ? status : undefined;
}
