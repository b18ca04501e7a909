/**
 * The one entry point every adapter (CLI, timer, HTTP) calls: settings in, a mirror run, a report out.
 * It wires configuration, keys and stores to the core; it holds no mirror logic of its own.
 */
import type { TokenCredential } from '@azure/identity';
import { hostname } from 'node:os';
import process from 'node:process';
import { loadConfig, loadEventConfig, type MirrorConfig, type Settings } from './config.ts';
import { blobCopyRecordStore } from './copy-record-blob.ts';
import type { RunService } from './runs.ts';
import type { LockName, RunLock } from './lock.ts';
import { ConfigError, DeadlineError, describeError, registerSecret } from './core/errors.ts';
import type { ProgressLedger } from './core/ledger.ts';
import { blobProgressLedger } from './progress-ledger.ts';
import type { RunReport } from './core/report.ts';
import { deadlineAfter, runMirror, type MirrorTarget, type RunEvent } from './core/run.ts';
import type { FanOut } from './core/fan-out.ts';
import type { ProviderChoice, TargetName } from './core/types.ts';
import { verifyMirror, type VerifyReport } from './core/verify.ts';
import { createKeyResolver, type KeyResolver, type KeyResolverOptions, type StoreKeys } from './secrets.ts';
import { ociKeyProblem } from './stores/key-rules.ts';
import { s3Store } from './stores/s3.ts';
import { connectionStringAccountKey } from './stores/azure-connection-string.ts';
import type { SourceStore } from './stores/store.ts';

export interface SyncRequest {
  readonly provider: ProviderChoice;
  readonly dryRun?: boolean;
  readonly onEvent?: (event: RunEvent) => void;
  /** Epoch ms after which no new transfer starts; transfers still running at `abortAt` are cancelled cleanly. */
  readonly deadline?: { readonly stopStartingAt: number; readonly abortAt: number };
  readonly signal?: AbortSignal;
  /** Names this run in the lock, so a run that finds the lock held can say who holds it (e.g. an invocation id). */
  readonly runId?: string;
  /** What started the run (`timer`, `http`, `cli`), kept in its status record. */
  readonly trigger?: string;
  /** Put every transfer on the queue, whatever the plan's size (the CLI's `--enqueue`). */
  readonly enqueue?: boolean;
  /** Called with the run's status id once its record is open (runs.ts; only with AzureWebJobsStorage, not for dry runs). */
  readonly onRunOpened?: (statusId: string) => void;
  /** The record this run updates, opened already (a queued run: the HTTP trigger opened it); default: a new one. */
  readonly statusId?: string;
}

/** A run's report, and the id of its status record when one is kept. */
export type SyncReport = RunReport & {
  readonly runId?: string;
  /** Transfers not enqueued because an earlier fanned-out run to the same target is still running (see the target's notes). */
  readonly withheld?: number;
};

export interface SyncServiceOptions {
  readonly keyResolverOptions?: KeyResolverOptions;
  /** The identity for `AZURE_STORAGE_ACCOUNT_URL` (default `DefaultAzureCredential`, created once). */
  readonly azureCredential?: TokenCredential;
}

export interface VerifyRequest {
  readonly provider: ProviderChoice;
  /** Read both sides' bytes and compare their MD5 (default false). */
  readonly checksum?: boolean;
  /** Epoch ms after which no further object is compared (the rest is reported unchecked). */
  readonly stopAt?: number;
  readonly signal?: AbortSignal;
}

/** Long-lived per process (a Functions instance keeps one): keys and credentials are cached across runs. */
export interface SyncService {
  /** Validates settings (throws `ConfigError`), reads keys (throws `SecretsError`), then runs the mirror. */
  sync(request: SyncRequest): Promise<SyncReport>;
  /** As `sync` for settings and keys, then compares source and targets (`verifyMirror`); changes nothing, takes no lock. */
  verify(request: VerifyRequest): Promise<VerifyReport>;
}

export function createSyncService(settings: Settings, options: SyncServiceOptions = {}): SyncService {
  let keyResolver: KeyResolver | undefined;
  let azureCredential = options.azureCredential;
  let runs: RunService | undefined;
  /** Keys read, the Azure identity created where one is needed. */
  const readKeys = async (config: MirrorConfig, signal: AbortSignal | undefined): Promise<StoreKeys> => {
    keyResolver ??= createKeyResolver(settings, options.keyResolverOptions);
    const keys = await keyResolver.resolve({ aws: true, oci: config.targets.includes('oci') }, signal);
    if (config.lock?.connectionString === undefined && config.lock?.accountUrl !== undefined) azureCredential ??= await defaultAzureCredential(settings);
    return keys;
  };
  return {
    async verify(request: VerifyRequest): Promise<VerifyReport> {
      const config = loadConfig(settings, request.provider);
      const keys = await readKeys(config, request.signal);
      return verifyMirror(sourceStore(config, keys), await targetStores(config, keys, azureCredential), {
        provider: config.provider,
        checksum: request.checksum ?? false,
        concurrency: config.sync.concurrency,
        ...(request.stopAt === undefined ? {} : { stopAt: request.stopAt }),
        ...(request.signal === undefined ? {} : { signal: request.signal }),
      });
    },

    async sync(request: SyncRequest): Promise<SyncReport> {
      const config = loadConfig(settings, request.provider);
      const dryRun = request.dryRun ?? false;
      // With the host storage, a run has a status record and large plans fan out onto the queue.
      const tracked = !dryRun && loadEventConfig(settings).hostStorage !== undefined;
      if (request.enqueue === true && !tracked) throw new ConfigError([dryRun ? '--enqueue and --dry-run do not go together: a dry run enqueues nothing' : 'AzureWebJobsStorage is required to enqueue a run: the queue and the run records live in that storage account']);
      // Loaded only then: the Blob SDK alone adds about 0.3 s to a start.
      if (tracked) runs ??= (await import('./runs.ts')).createRunService(settings);
      const deadline = request.deadline ?? deadlineFromSettings(config);
      // The deadline covers every step, not only the mirror: reading keys, taking and releasing the lock.
      const deadlineReached = deadline === undefined ? undefined : signalAt(deadline.abortAt, () => new DeadlineError('the run deadline was reached'));
      const stepSignal = anySignal([request.signal, deadlineReached?.signal]);
      let keys: StoreKeys;
      try {
        keys = await readKeys(config, stepSignal);
      } catch (error) {
        deadlineReached?.clear();
        throw error;
      }
      const source = sourceStore(config, keys);
      // A dry run changes nothing, so it needs no lock and never waits for one. Otherwise the lock is
      // taken while the listings run (and the Blob SDK it needs loads meanwhile): the run waits for it
      // before its first change, and stops its listings at once when another run holds it.
      const lockLost = new AbortController();
      let lockTaken: Promise<RunLock | undefined> | undefined;
      const lockNames = lockBlobNames(config);
      const takeLockOnce = (): Promise<RunLock | undefined> =>
        (lockTaken ??= takeLock(config, azureCredential, request.runId, lockNames, stepSignal).then((lock) => {
          lock?.lost.addEventListener('abort', () => lockLost.abort(lock.lost.reason), { once: true });
          return lock;
        }));
      const noLockNote = dryRun || config.lock !== undefined ? [] : ['no lock was taken: no Azure storage is configured to hold it (set AZURE_STORAGE_ACCOUNT_URL or AZURE_STORAGE_CONNECTION_STRING)'];
      const startedMs = Date.now();
      const statusId = runs === undefined || !tracked ? undefined : request.statusId ?? await runs.open(config.provider, request.trigger ?? 'cli');
      if (statusId !== undefined) request.onRunOpened?.(statusId);
      let fanOut: FanOut<TargetName> | undefined;
      try {
        const targets = (await targetStores(config, keys, azureCredential)).map((target) => ({ ...target, notes: noLockNote }));
        if (statusId !== undefined) fanOut = runs?.fanOut(statusId, request.enqueue ?? false, targets.map((target) => target.store.label));
        const report = await runMirror(source, targets, {
          provider: config.provider,
          dryRun,
          concurrency: config.sync.concurrency,
          tuning: config.sync.tuning,
          memoryBudget: config.sync.memoryBudget,
          transferMode: config.sync.transferMode,
          deleteLimits: config.sync.deleteLimits,
          presignTtlSeconds: config.sync.presignTtlSeconds,
          deadline,
          maxDeferredRuns: config.sync.maxDeferredRuns,
          failOnArchived: config.sync.failOnArchived,
          downAfterMs: config.sync.retryBudgetMs,
          ...(config.lock === undefined ? {} : { beforeFirstChange: takeLockOnce, ledgers: ledgersBesideLocks(config, azureCredential, lockNames) }),
          // Holding the lock, no other run of ours is uploading: every unfinished upload started before this run is a leftover.
          cleanupInterruptedBefore: config.lock === undefined ? startedMs - 3_600_000 : startedMs,
          signal: anySignal([request.signal, lockLost.signal])!,
          ...(request.onEvent === undefined ? {} : { onEvent: request.onEvent }),
          ...(fanOut === undefined ? {} : { fanOut }),
        });
        if (statusId === undefined) return report;
        await runs?.closePlanning(statusId, fanOut, { report });
        const withheld = fanOut?.withheld ?? 0;
        return { ...report, runId: statusId, ...(withheld === 0 ? {} : { withheld }) };
      } catch (error) {
        if (statusId !== undefined) await runs?.closePlanning(statusId, fanOut, { error: describeError(error) }).catch(() => undefined);
        throw error;
      } finally {
        deadlineReached?.clear();
        const lock = await lockTaken?.catch(() => undefined);
        // Released at once, also after a deadline or Ctrl-C, so the next run need not wait out the lease; bounded all the same.
        await lock?.release(AbortSignal.timeout(RELEASE_TIMEOUT_MS));
      }
    },
  };
}

/** The identity for AZURE_STORAGE_ACCOUNT_URL. Loaded only when needed: @azure/identity alone adds about 300 ms to a start. */
export async function defaultAzureCredential(settings: Settings): Promise<TokenCredential> {
  const { DefaultAzureCredential } = await import('@azure/identity');
  return new DefaultAzureCredential(settings['AZURE_CLIENT_ID'] ? { managedIdentityClientId: settings['AZURE_CLIENT_ID'] } : {});
}

/** Releasing the lock waits at most this long: a lease not released expires on its own. */
const RELEASE_TIMEOUT_MS = 5000;

/** The lock blob of each target: `azure/<account>/<container>.lock`, `oci/<endpoint host>/<bucket>.lock`. */
function lockBlobNames(config: MirrorConfig): (accountName: string) => LockName[] {
  return (accountName) => {
    const names: LockName[] = [];
    if (config.azure !== undefined) names.push({ target: 'azure', blobName: `azure/${accountName}/${config.azure.container}.lock` });
    if (config.oci !== undefined) names.push({ target: 'oci', blobName: `${ociDestination(config.oci)}.lock` });
    return names;
  };
}

async function takeLock(config: MirrorConfig, credential: TokenCredential | undefined, runId: string | undefined, names: (accountName: string) => LockName[], signal: AbortSignal | undefined): Promise<RunLock | undefined> {
  const lock = config.lock;
  if (lock === undefined) return undefined;
  const [{ acquireRunLock }, { serviceClient }] = await Promise.all([import('./lock.ts'), import('./stores/azure-blob.ts')]);
  const service = serviceClient(lock.connectionString !== undefined ? { connectionString: lock.connectionString } : { accountUrl: lock.accountUrl, credential });
  const holder = `host ${hostname()} pid ${process.pid}${runId === undefined ? '' : ` run ${runId}`}`;
  return acquireRunLock(names(service.accountName), { service, container: lock.container, leaseSeconds: lock.leaseSeconds, holder, attemptTimeoutMs: config.sync.requestTimeoutMs, ...(signal === undefined ? {} : { signal }) });
}

/** Each target's progress ledger, a blob beside its lock blob; reached only once the lock is held. */
function ledgersBesideLocks(config: MirrorConfig, credential: TokenCredential | undefined, names: (accountName: string) => LockName[]): Partial<Record<TargetName, ProgressLedger>> {
  const ledgers: Partial<Record<TargetName, ProgressLedger>> = {};
  for (const target of config.targets) {
    const blobName = (accountName: string): string => names(accountName).find((name) => name.target === target)!.blobName.replace(/\.lock$/, '.progress.json');
    ledgers[target] = blobProgressLedger({ lock: config.lock!, credential, blobName, attemptTimeoutMs: config.sync.requestTimeoutMs });
  }
  return ledgers;
}

/** A signal that aborts at `epochMs` with `reason()`; `clear` stops its timer. */
function signalAt(epochMs: number, reason: () => Error): { signal: AbortSignal; clear(): void } {
  const controller = new AbortController();
  const delay = epochMs - Date.now();
  // setTimeout fires at once for delays above 2^31-1 ms.
  const timer = delay < 2 ** 31 - 1 ? setTimeout(() => controller.abort(reason()), Math.max(0, delay)) : undefined;
  return { signal: controller.signal, clear: () => clearTimeout(timer) };
}

function anySignal(signals: readonly (AbortSignal | undefined)[]): AbortSignal | undefined {
  const present = signals.filter((signal): signal is AbortSignal => signal !== undefined);
  return present.length === 0 ? undefined : AbortSignal.any(present);
}

/** Names the blobs of an OCI destination in the lock container: `oci/<endpoint host>/<bucket>` + `.lock`, `.copies`, `.progress.json`. */
function ociDestination(oci: NonNullable<MirrorConfig['oci']>): string {
  return `oci/${new URL(oci.endpoint).host}/${oci.bucket}`;
}

function deadlineFromSettings(config: MirrorConfig): { stopStartingAt: number; abortAt: number } | undefined {
  return config.sync.deadlineMs === undefined ? undefined : deadlineAfter(Date.now(), config.sync.deadlineMs);
}

export function sourceStore(config: MirrorConfig, keys: StoreKeys): SourceStore {
  return s3Store({
    label: `s3://${config.source.bucket}`,
    bucket: config.source.bucket,
    region: config.source.region,
    ...(config.source.endpoint === undefined ? {} : { endpoint: config.source.endpoint }),
    ...(keys.aws === undefined ? {} : { credentials: keys.aws }),
    maxAttempts: config.sync.retryAttempts,
    requestTimeoutMs: config.sync.requestTimeoutMs,
    retryBudgetMs: config.sync.retryBudgetMs,
    listRestoreStatus: true,
  });
}

/** The Blob SDK takes about 0.3 s to load: a run that mirrors only OCI loads it for its lock, beside its listings. */
export async function targetStores(config: MirrorConfig, keys: StoreKeys, azureCredential: TokenCredential | undefined): Promise<MirrorTarget[]> {
  const targets: MirrorTarget[] = [];
  if (config.azure !== undefined) {
    const azure = config.azure;
    const { azureBlobStore } = await import('./stores/azure-blob.ts');
    if (azure.connectionString !== undefined) registerSecret(connectionStringAccountKey(azure.connectionString));
    targets.push({
      name: 'azure',
      store: azureBlobStore({
        container: azure.container,
        ...(azure.connectionString !== undefined ? { connectionString: azure.connectionString } : { accountUrl: azure.accountUrl, credential: azureCredential }),
        maxTries: config.sync.retryAttempts,
        tryTimeoutMs: config.sync.requestTimeoutMs,
        singleCopyMaxSize: config.sync.serverSideSingleMaxSize,
        retryBudgetMs: config.sync.retryBudgetMs,
      }),
    });
  }
  if (config.oci !== undefined) {
    if (keys.oci === undefined) throw new Error('OCI keys were not resolved');
    targets.push({
      name: 'oci',
      store: s3Store({
        label: `oci://${config.oci.bucket}`,
        bucket: config.oci.bucket,
        region: config.oci.region,
        endpoint: config.oci.endpoint,
        credentials: keys.oci,
        compatibilityMode: true,
        keyProblem: ociKeyProblem,
        maxAttempts: config.sync.retryAttempts,
        requestTimeoutMs: config.sync.requestTimeoutMs,
        retryBudgetMs: config.sync.retryBudgetMs,
      }),
      // OCI listings carry no metadata: the record of what our runs wrote decides, kept beside the run lock.
      copyRecord: {
        store: config.lock === undefined
          ? undefined
          : blobCopyRecordStore({ lock: config.lock, credential: azureCredential, blobName: `${ociDestination(config.oci)}.copies`, attemptTimeoutMs: config.sync.requestTimeoutMs }),
      },
    });
  }
  return targets;
}
