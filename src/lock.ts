/**
 * One run per target at a time, across CLI runs, timer runs, HTTP runs and instances: a lease on a
 * lock blob per target destination (`azure/<account>/<container>.lock`, `oci/<endpoint host>/<bucket>.lock`
 * in the container SYNC_LOCK_CONTAINER of the Azure storage account the run is configured with). The lease is renewed while the run goes on and released at the
 * end; a crashed holder's lease expires on its own after `leaseSeconds`.
 */
import { RestError, type BlobServiceClient, type BlockBlobClient, type ContainerClient } from '@azure/storage-blob';
import { LockHeldError, LockLostError, StoreError, describeError } from './core/errors.ts';
import type { TargetName } from './core/types.ts';
import { withAttemptTimeout } from './stores/azure-blob.ts';

export interface RunLock {
  /** Aborts (with a `LockLostError`) when a lease could not be renewed: the run must stop, another run may take over. */
  readonly lost: AbortSignal;
  /** Releases every lease; `signal` bounds the wait (a lease not released expires on its own). */
  release(signal?: AbortSignal): Promise<void>;
}

export interface LockOptions {
  readonly service: BlobServiceClient;
  /** Container holding the lock blobs (SYNC_LOCK_CONTAINER, default `artifacts-sync-locks`); created when missing. */
  readonly container: string;
  /** Lease length in seconds, 15-60 (default 60): how long a crashed run keeps others out. */
  readonly leaseSeconds?: number;
  /** Who holds the lock, shown to a run that finds it held (host, process, invocation). */
  readonly holder: string;
  /** Milliseconds one lock request may go unanswered before it is tried again (default 60,000). */
  readonly attemptTimeoutMs?: number;
  /** Stops taking the locks (an HTTP run's deadline, Ctrl-C); the locks taken so far are released. */
  readonly signal?: AbortSignal;
}

/** One lock to take: the target it guards and the lock blob's name, unique per destination. */
export interface LockName {
  readonly target: TargetName;
  readonly blobName: string;
}

/** Takes the locks (in a fixed order, so two runs cannot deadlock), or throws `LockHeldError` naming the target and holder; takes none then. */
export async function acquireRunLock(locks: readonly LockName[], options: LockOptions): Promise<RunLock> {
  const leaseSeconds = options.leaseSeconds ?? 60;
  const bounded = <T>(call: (abortSignal: AbortSignal) => Promise<T>): Promise<T> => withAttemptTimeout(call, options.signal, options.attemptTimeoutMs ?? 60_000, 3);
  const container = options.service.getContainerClient(options.container);
  const label = `azure://${options.service.accountName}/${options.container}`;
  const held: { blob: BlockBlobClient; leaseId: string }[] = [];
  const releaseAll = async (signal?: AbortSignal): Promise<void> => {
    await Promise.all(held.map(({ blob, leaseId }) => blob.getBlobLeaseClient(leaseId).releaseLease({ abortSignal: signal ?? AbortSignal.timeout(10_000) }).catch(() => undefined)));
  };
  try {
    for (const { target, blobName } of [...locks].sort((a, b) => (a.blobName < b.blobName ? -1 : 1))) {
      const blob = container.getBlockBlobClient(blobName);
      const lease = blob.getBlobLeaseClient();
      try {
        // The lock blob and its container exist after the first run: try the lease first, create only when missing.
        await bounded((abortSignal) => lease.acquireLease(leaseSeconds, { abortSignal })).catch(async (error: unknown) => {
          if (!(error instanceof RestError && error.statusCode === 404)) throw error;
          await createLockBlob(blob, container, bounded);
          await bounded((abortSignal) => lease.acquireLease(leaseSeconds, { abortSignal }));
        });
      } catch (error) {
        if (error instanceof RestError && error.statusCode === 409) throw new LockHeldError(await heldMessage(blob, target, leaseSeconds));
        throw error;
      }
      held.push({ blob, leaseId: lease.leaseId });
      await bounded((abortSignal) => blob.setMetadata({ holder: asciiOnly(options.holder), since: new Date().toISOString() }, { abortSignal, conditions: { leaseId: lease.leaseId } }));
    }
  } catch (error) {
    await releaseAll();
    if (options.signal?.aborted === true) throw options.signal.reason;
    if (error instanceof LockHeldError || error instanceof StoreError) throw error;
    throw new StoreError({ store: label, operation: 'lock', scope: 'store', status: error instanceof RestError ? error.statusCode : undefined, detail: describeError(error), cause: error });
  }

  const lost = new AbortController();
  let failedRenewals = 0;
  const renewal = setInterval(() => {
    // A renewal that hangs counts as failed: bounded to a sixth of the lease.
    const renew = (blob: BlockBlobClient, leaseId: string): Promise<unknown> =>
      withAttemptTimeout((abortSignal) => blob.getBlobLeaseClient(leaseId).renewLease({ abortSignal }), undefined, (leaseSeconds * 1000) / 6, 1);
    void Promise.all(held.map(({ blob, leaseId }) => renew(blob, leaseId)))
      .then(() => {
        failedRenewals = 0;
      })
      .catch((error: unknown) => {
        failedRenewals += 1;
        // Two misses in a row leave less than a third of the lease: stop before another run can start.
        if (failedRenewals >= 2) lost.abort(new LockLostError(`lost the run lock: ${describeError(error)}`));
      });
  }, (leaseSeconds * 1000) / 3);
  return {
    lost: lost.signal,
    async release(signal?: AbortSignal): Promise<void> {
      clearInterval(renewal);
      await releaseAll(signal);
    },
  };
}

/** Creates an empty lock blob (and its container, the first time); another run creating it at the same moment is fine. */
async function createLockBlob(blob: BlockBlobClient, container: ContainerClient, bounded: <T>(call: (abortSignal: AbortSignal) => Promise<T>) => Promise<T>): Promise<void> {
  const create = (): Promise<unknown> => bounded((abortSignal) => blob.upload('', 0, { abortSignal, conditions: { ifNoneMatch: '*' } }));
  const alreadyThere = (error: unknown): boolean => error instanceof RestError && (error.statusCode === 409 || error.statusCode === 412);
  try {
    await create();
  } catch (error) {
    if (alreadyThere(error)) return;
    if (!(error instanceof RestError && error.statusCode === 404)) throw error;
    try {
      await bounded((abortSignal) => container.createIfNotExists({ abortSignal }));
    } catch (createError) {
      throw new Error(
        `the lock container ${container.containerName} does not exist and cannot be created (${describeError(createError)}): create it, or grant the identity Storage Blob Data Contributor on the account, or set SYNC_LOCK_CONTAINER to a container it can write`,
      );
    }
    await create().catch((retryError: unknown) => {
      if (!alreadyThere(retryError)) throw retryError;
    });
  }
}

async function heldMessage(blob: BlockBlobClient, target: TargetName, leaseSeconds: number): Promise<string> {
  const properties = await blob.getProperties().catch(() => undefined);
  const holder = properties?.metadata?.['holder'];
  const since = properties?.metadata?.['since'];
  return (
    `another run is mirroring ${target} right now${holder ? ` (${holder}${since ? `, since ${since}` : ''})` : ''}; nothing was changed. ` +
    `Try again when it ends; a crashed run's lock expires within ${leaseSeconds} s.`
  );
}

/** Azure metadata values must be ASCII. */
function asciiOnly(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?');
}
