/**
 * The progress ledger of a target (see core/ledger.ts), kept as a small JSON blob beside the target's
 * lock blob in SYNC_LOCK_CONTAINER: `azure/<account>/<container>.progress.json`,
 * `oci/<endpoint host>/<bucket>.progress.json`. Only the run holding the target's lock writes it.
 */
import { parseLedger, serializeLedger, type LedgerEntry, type ProgressLedger } from './core/ledger.ts';
import { stateBlobBesideLock, type StateBlobOptions } from './state-blob.ts';

/** The ledger only saves work: it is given up on quickly (two tries) rather than holding a run up. */
const LEDGER_TRIES = 2;

export function blobProgressLedger(options: Omit<StateBlobOptions, 'what'>): ProgressLedger {
  const blob = stateBlobBesideLock({ ...options, what: 'progress ledger' });
  return {
    get label() {
      return blob.label;
    },
    async load(signal?: AbortSignal): Promise<Map<string, LedgerEntry>> {
      const content = await blob.load(LEDGER_TRIES, signal);
      return content === undefined ? new Map() : parseLedger(new TextDecoder().decode(content.bytes));
    },
    async save(entries: ReadonlyMap<string, LedgerEntry>, signal?: AbortSignal): Promise<void> {
      // Only the lock holder writes it: no condition needed.
      await blob.save(new TextEncoder().encode(serializeLedger(entries)), 'any', LEDGER_TRIES, signal);
    },
  };
}
