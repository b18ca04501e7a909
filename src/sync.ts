/**
 * The one entry point every adapter (CLI, timer, HTTP) calls: settings in, a mirror run, a report out.
 * It wires configuration, keys and stores to the core; it holds no mirror logic of its own.
 */
import type { TokenCredential } from '@azure/identity';
import { hostname } from 'node:os';
import process from 'node:process';
import { loadConfig, type MirrorConfig, type Settings } from './config.ts';
import type { LockName, RunLock } from './lock.ts';
import { registerSecret } from './core/errors.ts';
import type { RunReport } from './core/report.ts';
import { deadlineAfter, runMirror, type MirrorTarget, type RunEvent } from './core/run.ts';
import type { ProviderChoice } from './core/types.ts';
import { createKeyResolver, type KeyResolver, type KeyResolverOptions, type StoreKeys } from './secrets.ts';
import { s3Store } from './stores/s3.ts';
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
}

export interface SyncServiceOptions {
  readonly keyResolverOptions?: KeyResolverOptions;
  /** The identity for `AZURE_STORAGE_ACCOUNT_URL` (default `DefaultAzureCredential`, created once). */
  readonly azureCredential?: TokenCredential;
}

/** Long-lived per process (a Functions instance keeps one): keys and credentials are cached across runs. */
export interface SyncService {
  /** Validates settings (throws `ConfigError`), reads keys (throws `SecretsError`), then runs the mirror. */
  sync(request: SyncRequest): Promise<RunReport>;
}

export function createSyncService(settings: Settings, options: SyncServiceOptions = {}): SyncService {
  let keyResolver: KeyResolver | undefined;
  let azureCredential = options.azureCredential;
  return {
    async sync(request: SyncRequest): Promise<RunReport> {
      const config = loadConfig(settings, request.provider);
      keyResolver ??= createKeyResolver(settings, options.keyResolverOptions);
      const keys = await keyResolver.resolve({ aws: true, oci: config.targets.includes('oci') }, request.signal);
      if (config.lock?.connectionString === undefined && config.lock?.accountUrl !== undefined) {
        // Loaded only when needed: @azure/identity alone adds about 300 ms to a start.
        const { DefaultAzureCredential } = await import('@azure/identity');
        azureCredential ??= new DefaultAzureCredential(settings['AZURE_CLIENT_ID'] ? { managedIdentityClientId: settings['AZURE_CLIENT_ID'] } : {});
      }
      const source = sourceStore(config, keys);
      const dryRun = request.dryRun ?? false;
      // A dry run changes nothing, so it needs no lock and never waits for one. Otherwise the lock is
      // taken while the listings run (and the Blob SDK it needs loads meanwhile): the run waits for it
      // before its first change, and stops its listings at once when another run holds it.
      const lockLost = new AbortController();
      let lockTaken: Promise<RunLock | undefined> | undefined;
      const takeLockOnce = (): Promise<RunLock | undefined> =>
        (lockTaken ??= takeLock(config, azureCredential, request.runId).then((lock) => {
          lock?.lost.addEventListener('abort', () => lockLost.abort(lock.lost.reason), { once: true });
          return lock;
        }));
      const noLockNote = dryRun || config.lock !== undefined ? [] : ['no lock was taken: no Azure storage is configured to hold it (set AZURE_STORAGE_ACCOUNT_URL or AZURE_STORAGE_CONNECTION_STRING)'];
      const startedMs = Date.now();
      const signals = [request.signal, lockLost.signal].filter((signal): signal is AbortSignal => signal !== undefined);
      try {
        const targets = (await targetStores(config, keys, azureCredential)).map((target) => ({ ...target, notes: noLockNote }));
        return await runMirror(source, targets, {
          provider: config.provider,
          dryRun,
          concurrency: config.sync.concurrency,
          tuning: config.sync.tuning,
          memoryBudget: config.sync.memoryBudget,
          transferMode: config.sync.transferMode,
          deleteLimits: config.sync.deleteLimits,
          presignTtlSeconds: config.sync.presignTtlSeconds,
          deadline: request.deadline ?? deadlineFromSettings(config),
          ...(config.lock === undefined ? {} : { beforeFirstChange: takeLockOnce }),
          // Holding the lock, no other run of ours is uploading: every unfinished upload started before this run is a leftover.
          cleanupInterruptedBefore: config.lock === undefined ? startedMs - 3_600_000 : startedMs,
          signal: AbortSignal.any(signals),
          ...(request.onEvent === undefined ? {} : { onEvent: request.onEvent }),
        });
      } finally {
        const lock = await lockTaken?.catch(() => undefined);
        await lock?.release();
      }
    },
  };
}

async function takeLock(config: MirrorConfig, credential: TokenCredential | undefined, runId: string | undefined): Promise<RunLock | undefined> {
  const lock = config.lock;
  if (lock === undefined) return undefined;
  const [{ acquireRunLock }, { serviceClient }] = await Promise.all([import('./lock.ts'), import('./stores/azure-blob.ts')]);
  const service = serviceClient(lock.connectionString !== undefined ? { connectionString: lock.connectionString } : { accountUrl: lock.accountUrl, credential });
  const holder = `host ${hostname()} pid ${process.pid}${runId === undefined ? '' : ` run ${runId}`}`;
  const names: LockName[] = [];
  if (config.azure !== undefined) names.push({ target: 'azure', blobName: `azure/${service.accountName}/${config.azure.container}.lock` });
  if (config.oci !== undefined) names.push({ target: 'oci', blobName: `oci/${new URL(config.oci.endpoint).host}/${config.oci.bucket}.lock` });
  return acquireRunLock(names, { service, container: lock.container, leaseSeconds: lock.leaseSeconds, holder, attemptTimeoutMs: config.sync.requestTimeoutMs });
}

function deadlineFromSettings(config: MirrorConfig): { stopStartingAt: number; abortAt: number } | undefined {
  return config.sync.deadlineMs === undefined ? undefined : deadlineAfter(Date.now(), config.sync.deadlineMs);
}

function sourceStore(config: MirrorConfig, keys: StoreKeys): SourceStore {
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
async function targetStores(config: MirrorConfig, keys: StoreKeys, azureCredential: TokenCredential | undefined): Promise<MirrorTarget[]> {
  const targets: MirrorTarget[] = [];
  if (config.azure !== undefined) {
    const azure = config.azure;
    const { azureBlobStore } = await import('./stores/azure-blob.ts');
    if (azure.connectionString !== undefined) registerSecret(accountKeyOf(azure.connectionString));
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
        maxAttempts: config.sync.retryAttempts,
        requestTimeoutMs: config.sync.requestTimeoutMs,
        retryBudgetMs: config.sync.retryBudgetMs,
      }),
    });
  }
  return targets;
}

function accountKeyOf(connectionString: string): string | undefined {
  return /(?:^|;)AccountKey=([^;]+)/i.exec(connectionString)?.[1];
}
