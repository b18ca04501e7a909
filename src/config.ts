import { ConfigError } from './core/errors.ts';
import { DEFAULT_DELETE_LIMITS, type DeleteLimits } from './core/plan.ts';
import type { FanOutSettings } from './core/fan-out.ts';
import { DEFAULT_TRANSFER_TUNING, type TransferTuning } from './core/transfer.ts';
import { PROVIDER_CHOICES, TARGET_NAMES, type ProviderChoice, type TargetName, type TransferModeSetting } from './core/types.ts';

/** The environment (or Function App settings) a run is configured from. */
export type Settings = Readonly<Record<string, string | undefined>>;

const MIB = 1024 * 1024;

export interface SourceConfig {
  readonly bucket: string;
  readonly region: string;
  readonly endpoint: string | undefined;
}

/** How to reach the Azure storage account: a connection string (Azurite, local runs) or an account URL (managed identity). */
export interface AzureAccountConfig {
  readonly connectionString: string | undefined;
  readonly accountUrl: string | undefined;
}

export interface AzureTargetConfig extends AzureAccountConfig {
  readonly container: string;
}

/** Where the run locks live: lock blobs in a container of the configured Azure account. */
export interface LockConfig extends AzureAccountConfig {
  /** SYNC_LOCK_CONTAINER, default `artifacts-sync-locks`. */
  readonly container: string;
  /** SYNC_LOCK_LEASE_SECONDS, 15-60, default 60: how long a crashed run keeps the lock. */
  readonly leaseSeconds: number;
}

export interface OciTargetConfig {
  readonly endpoint: string;
  readonly region: string;
  readonly bucket: string;
}

export interface SyncSettings {
  /** Objects transferred at once (SYNC_CONCURRENCY, default 16). */
  readonly concurrency: number;
  readonly tuning: TransferTuning;
  /** Bytes of object data held in memory at once across all transfers (SYNC_MEMORY_MB, default 64). */
  readonly memoryBudget: number;
  readonly transferMode: TransferModeSetting;
  /** Objects up to this size are pulled by Azure in one Put Blob From URL, larger ones in blocks (SYNC_SERVER_SIDE_SINGLE_MAX_MB, default 256). */
  readonly serverSideSingleMaxSize: number;
  readonly deleteLimits: DeleteLimits;
  /** Longest lifetime of the presigned URLs Azure pulls from (SYNC_PRESIGN_TTL_SECONDS, default 3600); each lives as long as its pull may take. */
  readonly presignTtlSeconds: number;
  /** Attempts per request (SYNC_RETRY_ATTEMPTS, default 5). */
  readonly retryAttempts: number;
  /** Seconds a request may go without progress before it is retried (SYNC_REQUEST_TIMEOUT_SECONDS, default 60). */
  readonly requestTimeoutMs: number;
  /** Seconds a run may take before it stops starting transfers (SYNC_DEADLINE_SECONDS; unset = no deadline). */
  readonly deadlineMs: number | undefined;
  /** SYNC_RETRY_BUDGET_SECONDS: how long one request rides out a throttled or unavailable service (429/503, honouring Retry-After), and how long a target must keep failing before it is taken as down. */
  readonly retryBudgetMs: number;
  /** SYNC_FAIL_ON_ARCHIVED: archived source objects (not mirrored) fail the run (default false: reported only). */
  readonly failOnArchived: boolean;
  /** SYNC_MAX_DEFERRED_RUNS: a run in which an object is deferred for the Nth time in a row counts as failed. */
  readonly maxDeferredRuns: number;
}

export interface MirrorConfig {
  readonly provider: ProviderChoice;
  readonly targets: readonly TargetName[];
  readonly source: SourceConfig;
  readonly azure: AzureTargetConfig | undefined;
  readonly oci: OciTargetConfig | undefined;
  /** Undefined when no Azure storage is configured (an OCI-only run): no lock is taken then. */
  readonly lock: LockConfig | undefined;
  readonly sync: SyncSettings;
}

/** The targets a provider choice stands for. */
export function targetsOf(provider: ProviderChoice): readonly TargetName[] {
  return provider === 'all' ? TARGET_NAMES : [provider];
}

export function parseProvider(value: string | undefined): ProviderChoice {
  const choice = PROVIDER_CHOICES.find((candidate) => candidate === value);
  if (choice === undefined) {
    throw new ConfigError([`unknown provider ${JSON.stringify(value ?? '')}: choose one of ${PROVIDER_CHOICES.join(', ')}`]);
  }
  return choice;
}

/**
 * Reads and validates every setting a run of `provider` needs; only the chosen targets' settings
 * are required. Collects every problem before throwing one `ConfigError` that names each setting.
 */
export function loadConfig(settings: Settings, provider: ProviderChoice): MirrorConfig {
  const read = new SettingsReader(settings);
  const targets = targetsOf(provider);

  const sourceEndpoint = read.url('AWS_S3_ENDPOINT', { optional: true });
  const source: SourceConfig = {
    bucket: read.s3BucketName('AWS_S3_BUCKET'),
    region: read.region('AWS_REGION', settings['AWS_DEFAULT_REGION']),
    endpoint: sourceEndpoint,
  };

  // The Azure account serves the azure target and holds the run locks, so it is read for every provider.
  const connectionString = read.optional('AZURE_STORAGE_CONNECTION_STRING');
  const accountUrl = read.url('AZURE_STORAGE_ACCOUNT_URL', { optional: true, example: 'https://<account>.blob.core.windows.net' });
  if (connectionString !== undefined && !/(^|;)(BlobEndpoint|AccountName|UseDevelopmentStorage)=/i.test(connectionString)) {
    read.problem('AZURE_STORAGE_CONNECTION_STRING is not a storage connection string: expected "DefaultEndpointsProtocol=https;AccountName=...;AccountKey=...;..." or "UseDevelopmentStorage=true"');
  }
  const account: AzureAccountConfig | undefined = connectionString !== undefined || accountUrl !== undefined ? { connectionString, accountUrl } : undefined;

  let azure: AzureTargetConfig | undefined;
  if (targets.includes('azure')) {
    if (account === undefined) {
      read.problem('AZURE_STORAGE_ACCOUNT_URL or AZURE_STORAGE_CONNECTION_STRING is required for the azure target: set AZURE_STORAGE_ACCOUNT_URL=https://<account>.blob.core.windows.net (managed identity) or a connection string (Azurite, local runs)');
    }
    azure = { container: read.containerName('AZURE_STORAGE_CONTAINER'), connectionString, accountUrl };
  }
  const lockContainer = read.optional('SYNC_LOCK_CONTAINER') === undefined ? 'artifacts-sync-locks' : read.containerName('SYNC_LOCK_CONTAINER');
  const mirrorContainer = azure?.container ?? read.optional('AZURE_STORAGE_CONTAINER');
  if (mirrorContainer !== undefined && mirrorContainer !== '' && lockContainer === mirrorContainer) {
    // The lock blobs would be listed as extra objects of the mirror, and the leased one could never be deleted.
    read.problem(`SYNC_LOCK_CONTAINER ${JSON.stringify(lockContainer)} is the mirror's own container (AZURE_STORAGE_CONTAINER): choose another container for the lock blobs (default artifacts-sync-locks)`);
  }
  const lock: LockConfig | undefined = account === undefined
    ? undefined
    : { ...account, container: lockContainer, leaseSeconds: read.integer('SYNC_LOCK_LEASE_SECONDS', { default: 60, min: 15, max: 60 }) };

  let oci: OciTargetConfig | undefined;
  if (targets.includes('oci')) {
    oci = {
      endpoint: read.url('OCI_S3_ENDPOINT', { example: 'https://<namespace>.compat.objectstorage.<region>.oraclecloud.com' }) ?? '',
      region: read.region('OCI_REGION'),
      bucket: read.ociBucketName('OCI_BUCKET'),
    };
  }

  const sync: SyncSettings = {
    concurrency: read.integer('SYNC_CONCURRENCY', { default: 16, min: 1, max: 64 }),
    tuning: {
      partSize: read.integer('SYNC_PART_SIZE_MB', { default: DEFAULT_TRANSFER_TUNING.partSize / MIB, min: 5, max: 4000 }) * MIB,
      partConcurrency: read.integer('SYNC_PART_CONCURRENCY', { default: DEFAULT_TRANSFER_TUNING.partConcurrency, min: 1, max: 32 }),
      readAttempts: DEFAULT_TRANSFER_TUNING.readAttempts,
      singleRequestMax: read.integer('SYNC_SINGLE_REQUEST_MAX_MB', { default: DEFAULT_TRANSFER_TUNING.singleRequestMax / MIB, min: 5, max: 5000 }) * MIB,
    },
    memoryBudget: read.integer('SYNC_MEMORY_MB', { default: 64, min: 16, max: 16_384 }) * MIB,
    transferMode: read.choice('SYNC_TRANSFER_MODE', ['auto', 'server-side', 'streaming'] as const, 'auto'),
    serverSideSingleMaxSize: read.integer('SYNC_SERVER_SIDE_SINGLE_MAX_MB', { default: 256, min: 1, max: 5000 }) * MIB,
    deleteLimits: {
      maxDeleteCount: read.integer('SYNC_MAX_DELETE_COUNT', { default: DEFAULT_DELETE_LIMITS.maxDeleteCount, min: 0, max: 100_000_000 }),
      maxDeletePercent: read.integer('SYNC_MAX_DELETE_PERCENT', { default: DEFAULT_DELETE_LIMITS.maxDeletePercent, min: 0, max: 100 }),
      allowEmptySource: read.boolean('SYNC_ALLOW_EMPTY_SOURCE', DEFAULT_DELETE_LIMITS.allowEmptySource),
    },
    presignTtlSeconds: read.integer('SYNC_PRESIGN_TTL_SECONDS', { default: 3600, min: 60, max: 604_800 }),
    retryAttempts: read.integer('SYNC_RETRY_ATTEMPTS', { default: 5, min: 1, max: 20 }),
    requestTimeoutMs: read.integer('SYNC_REQUEST_TIMEOUT_SECONDS', { default: 60, min: 1, max: 3600 }) * 1000,
    deadlineMs: optionalSeconds(read.integer('SYNC_DEADLINE_SECONDS', { default: 0, min: 0, max: 604_800 })),
    retryBudgetMs: read.integer('SYNC_RETRY_BUDGET_SECONDS', { default: 60, min: 0, max: 3600 }) * 1000,
    failOnArchived: read.boolean('SYNC_FAIL_ON_ARCHIVED', false),
    maxDeferredRuns: read.integer('SYNC_MAX_DEFERRED_RUNS', { default: 10, min: 1, max: 1000 }),
  };
  if (sync.memoryBudget < sync.tuning.partSize) {
    read.problem(`SYNC_MEMORY_MB (${sync.memoryBudget / MIB}) must be at least SYNC_PART_SIZE_MB (${sync.tuning.partSize / MIB}): one part must fit in memory`);
  }

  read.throwIfProblems();
  return { provider, targets, source, azure, oci, lock, sync };
}

function optionalSeconds(seconds: number): number | undefined {
  return seconds === 0 ? undefined : seconds * 1000;
}

const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

/** Reads settings one by one, remembering every problem so a user sees them all at once. */
export class SettingsReader {
  readonly #settings: Settings;
  readonly #problems: string[] = [];

  constructor(settings: Settings) {
    this.#settings = settings;
  }

  problem(message: string): void {
    this.#problems.push(message);
  }

  throwIfProblems(): void {
    if (this.#problems.length > 0) throw new ConfigError(this.#problems);
  }

  optional(name: string): string | undefined {
    const value = this.#settings[name]?.trim();
    return value === undefined || value === '' ? undefined : value;
  }

  required(name: string, expected: string): string {
    const value = this.optional(name);
    if (value === undefined) this.problem(`${name} is required: ${expected}`);
    return value ?? '';
  }

  /** An http(s) URL with no query or fragment; plain http only for loopback hosts (emulators). */
  url(name: string, options: { optional?: boolean; example?: string } = {}): string | undefined {
    const expected = `an https URL${options.example ? ` such as ${options.example}` : ''}`;
    const value = options.optional ? this.optional(name) : this.required(name, expected);
    if (value === undefined || value === '') return undefined;
    let parsed: URL;
    try {
      parsed = new URL(value);
    } catch {
      this.problem(`${name} is not a URL: expected ${expected}`);
      return undefined;
    }
    const loopback = LOOPBACK_HOSTS.has(parsed.hostname);
    if (parsed.protocol !== 'https:' && !(parsed.protocol === 'http:' && loopback)) {
      this.problem(`${name} must use https (plain http is accepted only for 127.0.0.1/localhost emulators): expected ${expected}`);
      return undefined;
    }
    if (parsed.search !== '' || parsed.hash !== '' || parsed.username !== '' || parsed.password !== '') {
      this.problem(`${name} must not carry a query, fragment or credentials: expected ${expected}`);
      return undefined;
    }
    return value.replace(/\/+$/, '');
  }

  region(name: string, fallback?: string): string {
    const value = this.optional(name) ?? fallback?.trim();
    if (value === undefined || value === '') {
      this.problem(`${name} is required: the region, such as us-east-1 (AWS) or eu-frankfurt-1 (OCI)`);
      return '';
    }
    if (!/^[a-z]{2,}(-[a-z0-9]+)+$/.test(value)) this.problem(`${name} ${JSON.stringify(value)} is not a region name: expected something like us-east-1 or eu-frankfurt-1`);
    return value;
  }

  s3BucketName(name: string): string {
    const value = this.required(name, 'the bucket name');
    if (value !== '' && !/^[a-z0-9][a-z0-9.\-_]{1,61}[a-z0-9]$/.test(value)) {
      this.problem(`${name} ${JSON.stringify(value)} is not a valid S3 bucket name: 3-63 characters, lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit`);
    }
    return value;
  }

  ociBucketName(name: string): string {
    const value = this.required(name, 'the bucket name');
    if (value !== '' && !/^[A-Za-z0-9._-]{1,256}$/.test(value)) {
      this.problem(`${name} ${JSON.stringify(value)} is not a valid OCI bucket name: 1-256 letters, digits, dots, hyphens and underscores`);
    }
    return value;
  }

  containerName(name: string): string {
    const value = this.required(name, 'the container name');
    if (value !== '' && (!/^[a-z0-9](?:[a-z0-9-]{1,61}[a-z0-9])$/.test(value) || value.includes('--'))) {
      this.problem(`${name} ${JSON.stringify(value)} is not a valid container name: 3-63 lowercase letters, digits and single hyphens, starting and ending with a letter or digit`);
    }
    return value;
  }

  integer(name: string, range: { default: number; min: number; max: number }): number {
    const value = this.optional(name);
    if (value === undefined) return range.default;
    const number = /^-?\d+$/.test(value) ? Number(value) : Number.NaN;
    if (!Number.isSafeInteger(number) || number < range.min || number > range.max) {
      this.problem(`${name} ${JSON.stringify(value)} is not a whole number from ${range.min} to ${range.max} (default ${range.default})`);
      return range.default;
    }
    return number;
  }

  boolean(name: string, fallback: boolean): boolean {
    const value = this.optional(name)?.toLowerCase();
    if (value === undefined) return fallback;
    if (value === 'true' || value === '1') return true;
    if (value === 'false' || value === '0') return false;
    this.problem(`${name} ${JSON.stringify(value)} must be true or false (default ${fallback})`);
    return fallback;
  }

  choice<const Choice extends string>(name: string, choices: readonly Choice[], fallback: Choice): Choice {
    const value = this.optional(name);
    if (value === undefined) return fallback;
    const match = choices.find((candidate) => candidate === value);
    if (match === undefined) this.problem(`${name} ${JSON.stringify(value)} must be one of ${choices.join(', ')} (default ${fallback})`);
    return match ?? fallback;
  }
}

/**
 * The Functions host's own storage account (`AzureWebJobsStorage`): the event queue and the event
 * deletion window live there. A connection string locally and with Azurite; in Azure, identity-based
 * `AzureWebJobsStorage__*` settings (the host's own convention).
 */
export type HostStorageConfig =
  | { readonly kind: 'connection-string'; readonly connectionString: string }
  | { readonly kind: 'identity'; readonly queueServiceUri: string; readonly blobServiceUri: string; readonly managedIdentityClientId: string | undefined };

export interface EventConfig {
  /** SYNC_QUEUE_NAME, default `artifacts-sync-objects`; the host moves failing messages to `<name>-poison`. */
  readonly queueName: string;
  /** SYNC_EVENT_DELETE_WINDOW_SECONDS, default 3600: event deletions per target are counted over this rolling window. */
  readonly deleteWindowMs: number;
  /** Undefined when no AzureWebJobsStorage setting is present (the CLI without a host): no queue; deletions counted per invocation. */
  readonly hostStorage: HostStorageConfig | undefined;
}

export const DEFAULT_QUEUE_NAME = 'artifacts-sync-objects';
const POISON_SUFFIX = '-poison';

/** Reads the event settings; throws `ConfigError` naming each bad one. */
export function loadEventConfig(settings: Settings): EventConfig {
  const read = new SettingsReader(settings);
  const queueName = read.optional('SYNC_QUEUE_NAME') ?? DEFAULT_QUEUE_NAME;
  // The poison queue's name must be valid too: 63 characters in all.
  if (!/^[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]$/.test(queueName) || queueName.length > 63 - POISON_SUFFIX.length) {
    read.problem(`SYNC_QUEUE_NAME ${JSON.stringify(queueName)} is not a valid queue name: 3-${63 - POISON_SUFFIX.length} lowercase letters, digits and single hyphens, starting and ending with a letter or digit (default ${DEFAULT_QUEUE_NAME})`);
  }
  const deleteWindowMs = read.integer('SYNC_EVENT_DELETE_WINDOW_SECONDS', { default: 3600, min: 60, max: 604_800 }) * 1000;
  const hostStorage = readHostStorage(read);
  read.throwIfProblems();
  return { queueName, deleteWindowMs, hostStorage };
}

function readHostStorage(read: SettingsReader): HostStorageConfig | undefined {
  const connectionString = read.optional('AzureWebJobsStorage');
  if (connectionString !== undefined) {
    if (!/(^|;)(QueueEndpoint|AccountName|UseDevelopmentStorage)=/i.test(connectionString)) {
      read.problem('AzureWebJobsStorage is not a storage connection string: expected "DefaultEndpointsProtocol=https;AccountName=...;AccountKey=...;..." (with QueueEndpoint= and BlobEndpoint= for Azurite), or use AzureWebJobsStorage__accountName with an identity');
    }
    return { kind: 'connection-string', connectionString };
  }
  const accountName = read.optional('AzureWebJobsStorage__accountName');
  const queueServiceUri = read.url('AzureWebJobsStorage__queueServiceUri', { optional: true, example: 'https://<account>.queue.core.windows.net' });
  const blobServiceUri = read.url('AzureWebJobsStorage__blobServiceUri', { optional: true, example: 'https://<account>.blob.core.windows.net' });
  if (accountName === undefined && queueServiceUri === undefined) return undefined;
  if (accountName !== undefined && !/^[a-z0-9]{3,24}$/.test(accountName)) {
    read.problem(`AzureWebJobsStorage__accountName ${JSON.stringify(accountName)} is not a storage account name: 3-24 lowercase letters and digits`);
  }
  const credential = read.optional('AzureWebJobsStorage__credential');
  if (credential !== undefined && credential !== 'managedidentity') {
    read.problem(`AzureWebJobsStorage__credential ${JSON.stringify(credential)} must be "managedidentity" (with AzureWebJobsStorage__clientId for a user-assigned identity) or unset`);
  }
  const queue = queueServiceUri ?? `https://${accountName}.queue.core.windows.net`;
  const blob = blobServiceUri ?? (accountName === undefined ? undefined : `https://${accountName}.blob.core.windows.net`);
  if (blob === undefined) read.problem('AzureWebJobsStorage__blobServiceUri is required with AzureWebJobsStorage__queueServiceUri (the event deletion window is kept in blob storage), or set AzureWebJobsStorage__accountName');
  return { kind: 'identity', queueServiceUri: queue, blobServiceUri: blob ?? '', managedIdentityClientId: read.optional('AzureWebJobsStorage__clientId') };
}

/** How full runs fan out onto the queue and how a CLI worker holds its messages; docs/fan-out.md explains each. */
export interface FanOutConfig {
  readonly fanOut: FanOutSettings;
  /** SYNC_WORK_VISIBILITY_SECONDS (default 60): a CLI worker keeps its messages invisible this long, renewed while it works; a dead worker's come back after it. */
  readonly workVisibilitySeconds: number;
  /** SYNC_WORK_RETRY_SECONDS (default 10, host.json `visibilityTimeout`): a failed message becomes visible again after this. */
  readonly workRetrySeconds: number;
  /** SYNC_HTTP_REPLY_WITHIN_MS (default 800): `POST /api/sync` answers 200 with the report if the run ends within this, else 202. */
  readonly httpReplyWithinMs: number;
}

/** Reads the fan-out settings; throws `ConfigError` naming each bad one. */
export function loadFanOutConfig(settings: Settings): FanOutConfig {
  const read = new SettingsReader(settings);
  const config: FanOutConfig = {
    fanOut: {
      minTransfers: read.integer('SYNC_FAN_OUT_MIN_TRANSFERS', { default: 2000, min: 1, max: 1_000_000_000 }),
      minBytes: read.integer('SYNC_FAN_OUT_MIN_MB', { default: 10_240, min: 1, max: 1_000_000_000 }) * MIB,
      keysPerMessage: read.integer('SYNC_FAN_OUT_KEYS_PER_MESSAGE', { default: 100, min: 1, max: 2000 }),
      bytesPerMessage: read.integer('SYNC_FAN_OUT_MB_PER_MESSAGE', { default: 2048, min: 1, max: 1_000_000 }) * MIB,
    },
    workVisibilitySeconds: read.integer('SYNC_WORK_VISIBILITY_SECONDS', { default: 60, min: 5, max: 3600 }),
    workRetrySeconds: read.integer('SYNC_WORK_RETRY_SECONDS', { default: 10, min: 0, max: 600 }),
    httpReplyWithinMs: read.integer('SYNC_HTTP_REPLY_WITHIN_MS', { default: 800, min: 0, max: 10_000 }),
  };
  read.throwIfProblems();
  return config;
}
