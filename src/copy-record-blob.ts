/**
 * The copy record of an OCI destination (core/copy-record.ts) as a blob beside its run lock:
 * `oci/<endpoint host>/<bucket>.copies` next to `oci/<endpoint host>/<bucket>.lock`, in the lock
 * container. Read once at the start of a run, beside the listings; written only at the end of a run
 * that holds the lock, and only over the version it read (a conditional write).
 */
import type { CopyRecordStore } from './core/copy-record.ts';
import { stateBlobBesideLock, type StateBlobOptions } from './state-blob.ts';

export function blobCopyRecordStore(options: Omit<StateBlobOptions, 'what' | 'blobName'> & { readonly blobName: string }): CopyRecordStore {
  const blob = stateBlobBesideLock({ ...options, blobName: () => options.blobName, what: 'copy record' });
  return {
    label: blob.label,
    // Two tries to load, one to save: a record not saved costs the next run HEADs, never exactness.
    load: (signal?: AbortSignal) => blob.load(2, signal),
    save: (bytes: Uint8Array, version: string | undefined, signal?: AbortSignal) => blob.save(bytes, version ?? 'absent', 1, signal),
  };
}
