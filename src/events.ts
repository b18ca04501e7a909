/**
 * The event path's entry point for every adapter (the events endpoint, the queue worker, the CLI's
 * `--key` and `--events`): settings in; event documents parsed, keys queued, or keys reconciled.
 * Like sync.ts it wires configuration, keys and stores to the core and holds no mirror logic.
 */
import type { TokenCredential } from '@azure/identity';
import { loadConfig, loadEventConfig, type EventConfig, type Settings } from './config.ts';
import { ConfigError } from './core/errors.ts';
import { inProcessDeletionWindow, type DeletionWindow } from './core/delete-window.ts';
import { reconcileKeys, type KeyToReconcile, type ReconcileEvent, type ReconcileReport } from './core/reconcile.ts';
import { eventMessage, parseS3Events, type ParsedEvents, type S3EventKey } from './core/s3-events.ts';
import type { ProviderChoice } from './core/types.ts';
import type { EventQueue, HostStorageClients } from './host-storage.ts';
import { createKeyResolver, type KeyResolver } from './secrets.ts';
import { defaultAzureCredential, sourceStore, targetStores, type SyncServiceOptions } from './sync.ts';

export interface ReconcileRequest {
  readonly provider: ProviderChoice;
  readonly keys: readonly KeyToReconcile[];
  readonly dryRun?: boolean;
  readonly onEvent?: (event: ReconcileEvent) => void;
  readonly signal?: AbortSignal;
}

/** Long-lived per process, like `SyncService`: keys, credentials and storage clients are kept across calls. */
export interface EventService {
  /** The keys an event document names in the source bucket (AWS_S3_BUCKET). Throws `EventDocumentError` or `ConfigError`. */
  parse(text: string): ParsedEvents;
  /** One queue message per (key, event). Throws `ConfigError` when no AzureWebJobsStorage is set. */
  enqueue(keys: readonly S3EventKey[], signal?: AbortSignal): Promise<void>;
  /** Reconciles the keys on the provider's targets, inline. */
  reconcile(request: ReconcileRequest): Promise<ReconcileReport>;
}

export function createEventService(settings: Settings, options: SyncServiceOptions = {}): EventService {
  let keyResolver: KeyResolver | undefined;
  let azureCredential: TokenCredential | undefined = options.azureCredential;
  let clients: Promise<HostStorageClients> | undefined;
  let queue: EventQueue | undefined;

  const eventConfig = (): EventConfig => loadEventConfig(settings);
  const hostClients = (config: EventConfig): Promise<HostStorageClients> | undefined => {
    const hostStorage = config.hostStorage;
    if (hostStorage === undefined) return undefined;
    clients ??= import('./host-storage.ts').then(({ hostStorageClients }) => hostStorageClients(hostStorage));
    return clients;
  };

  return {
    parse(text) {
      const bucket = settings['AWS_S3_BUCKET']?.trim();
      if (bucket === undefined || bucket === '') throw new ConfigError(['AWS_S3_BUCKET is required: the source bucket whose events are accepted']);
      return parseS3Events(text, bucket);
    },

    async enqueue(keys, signal) {
      const config = eventConfig();
      const pending = hostClients(config);
      if (pending === undefined) throw new ConfigError(['AzureWebJobsStorage is required to queue events: a storage connection string (Azurite: UseDevelopmentStorage=true), or AzureWebJobsStorage__accountName with an identity']);
      if (queue === undefined) {
        const { eventQueue } = await import('./host-storage.ts');
        queue = eventQueue(await pending, config.queueName);
      }
      await queue.send(keys.map(eventMessage), signal);
    },

    async reconcile(request) {
      const config = loadConfig(settings, request.provider);
      const events = eventConfig();
      keyResolver ??= createKeyResolver(settings, options.keyResolverOptions);
      const keys = await keyResolver.resolve({ aws: true, oci: config.targets.includes('oci') }, request.signal);
      if (config.azure?.connectionString === undefined && config.azure?.accountUrl !== undefined) azureCredential ??= await defaultAzureCredential(settings);
      const limits = { limit: config.sync.deleteLimits.maxDeleteCount, windowMs: events.deleteWindowMs };
      const pending = hostClients(events);
      let window: DeletionWindow;
      if (pending === undefined) {
        window = inProcessDeletionWindow(limits, `${limits.limit} per target in this invocation; no AzureWebJobsStorage holds a shared window`, 'SYNC_MAX_DELETE_COUNT');
      } else {
        const { blobDeletionWindow } = await import('./host-storage.ts');
        window = blobDeletionWindow(await pending, config.source.bucket, limits);
      }
      return reconcileKeys(sourceStore(config, keys), await targetStores(config, keys, azureCredential), request.keys, {
        provider: config.provider,
        dryRun: request.dryRun ?? false,
        concurrency: config.sync.concurrency,
        tuning: config.sync.tuning,
        memoryBudget: config.sync.memoryBudget,
        transferMode: config.sync.transferMode,
        presignTtlSeconds: config.sync.presignTtlSeconds,
        deletionWindow: window,
        ...(request.signal === undefined ? {} : { signal: request.signal }),
        ...(request.onEvent === undefined ? {} : { onEvent: request.onEvent }),
      });
    },
  };
}
