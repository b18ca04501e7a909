/**
 * The progress ledger of a target (see core/ledger.ts), kept as a small JSON blob beside the target's
 * lock blob in SYNC_LOCK_CONTAINER: `azure/<account>/<container>.progress.json`,
 * `oci/<endpoint host>/<bucket>.progress.json`. Only the run holding the target's lock writes it.
 */
import { RestError, type ContainerClient } from '@azure/storage-blob';
import { parseLedger, serializeLedger, type LedgerEntry, type ProgressLedger } from './core/ledger.ts';

export function azureProgressLedger(container: ContainerClient, blobName: string): ProgressLedger {
  const blob = container.getBlockBlobClient(blobName);
  return {
    label: `azure://${container.accountName}/${container.containerName}/${blobName}`,
    async load(signal?: AbortSignal): Promise<Map<string, LedgerEntry>> {
      try {
        const bytes = await blob.downloadToBuffer(0, undefined, { abortSignal: signal });
        return parseLedger(bytes.toString('utf8'));
      } catch (error) {
        if (error instanceof RestError && error.statusCode === 404) return new Map();
        throw error;
      }
    },
    async save(entries: ReadonlyMap<string, LedgerEntry>, signal?: AbortSignal): Promise<void> {
      const text = serializeLedger(entries);
      await blob.upload(text, Buffer.byteLength(text), { abortSignal: signal, blobHTTPHeaders: { blobContentType: 'application/json' } });
    },
  };
}

/** The ledger blob that sits beside a lock blob. */
export function ledgerBlobName(lockBlobName: string): string {
  return lockBlobName.replace(/\.lock$/, '.progress.json');
}
