/**
 * The access keys of the two S3-API stores (AWS S3, the source; OCI, a target), read from Azure Key
 * Vault when `KEY_VAULT_URL` is set, else from the environment.
 *
 * Settings:
 * - `KEY_VAULT_URL`: the vault URI, `https://<vault-name>.vault.azure.net`. The identity is
 *   `DefaultAzureCredential`: the app's managed identity in Azure (a user-assigned one when
 *   `AZURE_CLIENT_ID` holds its client id), `az login` on a workstation. @azure/identity finds the
 *   managed-identity endpoint itself, in the process environment (`IDENTITY_ENDPOINT`,
 *   `IDENTITY_HEADER`, set by the platform); `AZURE_TOKEN_CREDENTIALS=ManagedIdentityCredential`
 *   stops it from trying developer credentials in Azure.
 * - `KEY_VAULT_SECRET_AWS_ACCESS_KEY_ID` (default `aws-access-key-id`),
 *   `KEY_VAULT_SECRET_AWS_SECRET_ACCESS_KEY` (`aws-secret-access-key`),
 *   `KEY_VAULT_SECRET_AWS_SESSION_TOKEN` (no default: read only when set),
 *   `KEY_VAULT_SECRET_OCI_ACCESS_KEY_ID` (`oci-access-key-id`),
 *   `KEY_VAULT_SECRET_OCI_SECRET_KEY` (`oci-secret-key`): the names of the secrets in the vault.
 * - `SECRETS_CACHE_SECONDS` (default 300, 0..86400): how long fetched keys are reused, so a rotation
 *   is picked up within that time. Failures are not cached.
 * - Without a vault: `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`), optional
 *   (absent: the AWS SDK's default credential chain), and `OCI_ACCESS_KEY_ID` + `OCI_SECRET_KEY`,
 *   required when OCI is a target.
 *
 * Runtime-agnostic (Node, Deno): no node: imports. Every value read is registered with
 * `registerSecret`, so `redactSecrets` masks it wherever it might surface.
 */
import type { TokenCredential } from '@azure/identity';
import type { SecretClient, SecretClientOptions } from '@azure/keyvault-secrets';
import { ConfigError, registerSecret, redactSecrets } from './core/errors.ts';

export interface AccessKeys {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
}

/** Keys per store; `aws` undefined means the AWS SDK's default credential chain, `oci` undefined that OCI was not needed. */
export interface StoreKeys {
  readonly aws?: AccessKeys;
  readonly oci?: AccessKeys;
}

/** Which stores this run talks to; only their keys are read. */
export interface KeyNeeds {
  readonly aws: boolean;
  readonly oci: boolean;
}

export interface KeyResolver {
  /** Where the keys come from, for the start-of-run log line. */
  readonly source: 'key-vault' | 'environment';
  /** The keys of the needed stores; cached per store (Key Vault), one fetch shared by concurrent callers. */
  resolve(needs: KeyNeeds, signal?: AbortSignal): Promise<StoreKeys>;
}

export interface KeyResolverOptions {
  /** The identity that reads the vault. Default: `DefaultAzureCredential`, with `AZURE_CLIENT_ID` from `env` as the user-assigned managed identity. */
  readonly credential?: TokenCredential;
  /** Passed to `SecretClient` (tests: TLS trust for a local vault, `disableChallengeResourceVerification`). */
  readonly clientOptions?: SecretClientOptions;
  /** Clock for the cache, in milliseconds. Default `Date.now`. */
  readonly now?: () => number;
  /** Accepts `https://127.0.0.1` / `https://localhost` as KEY_VAULT_URL: for tests against a local vault only, never from settings. */
  readonly allowLoopbackVaultUrl?: boolean;
}

/** Reading a secret from Key Vault failed. Names the vault, the secret and its setting, never a value. */
export class SecretsError extends Error {
  override readonly name = 'SecretsError';
  readonly vaultUrl: string;
  readonly secretName: string;
  /** The setting that names this secret, e.g. `KEY_VAULT_SECRET_OCI_SECRET_KEY`. */
  readonly setting: string;
  readonly status: number | undefined;
  readonly code: string | undefined;

  constructor(fields: {
    vaultUrl: string;
    secretName: string;
    setting: string;
    status?: number | undefined;
    code?: string | undefined;
    detail: string;
    hint: string;
    cause?: unknown;
  }) {
    const status = [fields.status, fields.code].filter((part) => part !== undefined).join(' ');
    super(
      redactSecrets(`Key Vault ${fields.vaultUrl}: reading secret "${fields.secretName}" (${fields.setting}) failed`
        + `${status ? ` (${status})` : ''}: ${fields.detail} Fix: ${fields.hint}`),
      { cause: fields.cause },
    );
    this.vaultUrl = fields.vaultUrl;
    this.secretName = fields.secretName;
    this.setting = fields.setting;
    this.status = fields.status;
    this.code = fields.code;
  }
}

type Env = Readonly<Record<string, string | undefined>>;
type Store = 'aws' | 'oci';

/** A secret in the vault and the setting that names it. */
interface VaultSecret {
  readonly name: string;
  readonly setting: string;
}

interface StoreSecrets {
  readonly accessKeyId: VaultSecret;
  readonly secretAccessKey: VaultSecret;
  readonly sessionToken?: VaultSecret;
}

interface SecretNameSettings {
  readonly accessKeyId: { readonly setting: string; readonly defaultName: string };
  readonly secretAccessKey: { readonly setting: string; readonly defaultName: string };
  /** No default name: this secret is read only when the setting is set. */
  readonly sessionTokenSetting?: string;
}

/** Per store, the settings that name its secrets in the vault. */
const SECRET_NAME_SETTINGS: Readonly<Record<Store, SecretNameSettings>> = {
  aws: {
    accessKeyId: { setting: 'KEY_VAULT_SECRET_AWS_ACCESS_KEY_ID', defaultName: 'aws-access-key-id' },
    secretAccessKey: { setting: 'KEY_VAULT_SECRET_AWS_SECRET_ACCESS_KEY', defaultName: 'aws-secret-access-key' },
    sessionTokenSetting: 'KEY_VAULT_SECRET_AWS_SESSION_TOKEN',
  },
  oci: {
    accessKeyId: { setting: 'KEY_VAULT_SECRET_OCI_ACCESS_KEY_ID', defaultName: 'oci-access-key-id' },
    secretAccessKey: { setting: 'KEY_VAULT_SECRET_OCI_SECRET_KEY', defaultName: 'oci-secret-key' },
  },
};

const ENV_KEY_SETTINGS = {
  aws: { accessKeyId: 'AWS_ACCESS_KEY_ID', secretAccessKey: 'AWS_SECRET_ACCESS_KEY', sessionToken: 'AWS_SESSION_TOKEN' },
  oci: { accessKeyId: 'OCI_ACCESS_KEY_ID', secretAccessKey: 'OCI_SECRET_KEY', sessionToken: undefined },
} as const;

const SECRET_NAME = /^[0-9A-Za-z-]{1,127}$/;
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const DEFAULT_CACHE_SECONDS = 300;
const MAX_CACHE_SECONDS = 86_400;

/** Reads and validates the settings; throws `ConfigError` listing every malformed one. No request is made here. */
export function createKeyResolver(env: Env, options: KeyResolverOptions = {}): KeyResolver {
  const problems: string[] = [];
  const vaultUrlSetting = setting(env, 'KEY_VAULT_URL');
  const vaultUrl = vaultUrlSetting === undefined ? undefined : parseVaultUrl(vaultUrlSetting, options.allowLoopbackVaultUrl ?? false, problems);
  const cacheSeconds = parseCacheSeconds(setting(env, 'SECRETS_CACHE_SECONDS'), problems);

  if (vaultUrlSetting === undefined) {
    const stray = Object.values(SECRET_NAME_SETTINGS)
      .flatMap((names) => [names.accessKeyId.setting, names.secretAccessKey.setting, ...(names.sessionTokenSetting === undefined ? [] : [names.sessionTokenSetting])])
      .filter((name) => setting(env, name) !== undefined);
    if (stray.length > 0) {
      problems.push(`${stray.join(', ')} ${stray.length === 1 ? 'is' : 'are'} set but KEY_VAULT_URL is not: set KEY_VAULT_URL to read the keys from Key Vault, or remove ${stray.length === 1 ? 'it' : 'them'} to read them from the environment.`);
    }
    const keys = { aws: environmentKeys(env, 'aws', problems), oci: environmentKeys(env, 'oci', problems) };
    if (problems.length > 0) throw new ConfigError(problems);
    return environmentKeyResolver(keys);
  }

  const secrets = { aws: storeSecrets(env, 'aws', problems), oci: storeSecrets(env, 'oci', problems) };
  const clientId = setting(env, 'AZURE_CLIENT_ID');
  if (clientId !== undefined && !GUID.test(clientId)) {
    problems.push('AZURE_CLIENT_ID must be the client id (a GUID) of the user-assigned managed identity that reads the vault; remove it to use the system-assigned identity.');
  }
  if (problems.length > 0 || vaultUrl === undefined) throw new ConfigError(problems);

  return vaultKeyResolver({
    vaultUrl,
    secrets,
    cacheMs: cacheSeconds * 1000,
    now: options.now ?? Date.now,
    // Imported on first use: @azure/identity alone takes about 300 ms to load, wasted on runs without a vault.
    createClient: async () => {
      const { SecretClient } = await import('@azure/keyvault-secrets');
      const credential = options.credential ?? new (await import('@azure/identity')).DefaultAzureCredential(
        clientId === undefined ? {} : { managedIdentityClientId: clientId },
      );
      return new SecretClient(vaultUrl, credential, options.clientOptions);
    },
  });
}

function environmentKeyResolver(keys: { aws: AccessKeys | undefined; oci: AccessKeys | undefined }): KeyResolver {
  return {
    source: 'environment',
    resolve: async (needs, signal) => {
      signal?.throwIfAborted();
      if (needs.oci && keys.oci === undefined) {
        throw new ConfigError(['OCI_ACCESS_KEY_ID and OCI_SECRET_KEY are required when OCI is a target (or set KEY_VAULT_URL to read them from Key Vault).']);
      }
      return { ...(needs.aws && keys.aws && { aws: keys.aws }), ...(needs.oci && keys.oci && { oci: keys.oci }) };
    },
  };
}

interface CacheEntry {
  readonly keys: Promise<AccessKeys>;
  /** Infinity while the fetch runs: callers in the meantime share it. */
  expiresAt: number;
}

function vaultKeyResolver(config: {
  vaultUrl: string;
  secrets: Readonly<Record<Store, StoreSecrets>>;
  cacheMs: number;
  now: () => number;
  createClient: () => Promise<SecretClient>;
}): KeyResolver {
  let client: Promise<SecretClient> | undefined;
  const cache = new Map<Store, CacheEntry>();

  const readSecret = async (secret: VaultSecret): Promise<string> => {
    client ??= config.createClient();
    let value: string | undefined;
    try {
      value = (await (await client).getSecret(secret.name)).value;
    } catch (error) {
      throw vaultFailure(config.vaultUrl, secret, error);
    }
    registerSecret(value);
    // A secret set from a file often ends in a newline, which no key contains.
    const trimmed = value?.trim() ?? '';
    registerSecret(trimmed);
    if (trimmed === '') {
      throw new SecretsError({ vaultUrl: config.vaultUrl, secretName: secret.name, setting: secret.setting, detail: 'the secret is empty.', hint: 'set its value in the vault.' });
    }
    return trimmed;
  };

  const fetchKeys = async (secrets: StoreSecrets): Promise<AccessKeys> => {
    const [accessKeyId, secretAccessKey, sessionToken] = await Promise.all([
      readSecret(secrets.accessKeyId),
      readSecret(secrets.secretAccessKey),
      secrets.sessionToken === undefined ? undefined : readSecret(secrets.sessionToken),
    ]);
    return sessionToken === undefined ? { accessKeyId, secretAccessKey } : { accessKeyId, secretAccessKey, sessionToken };
  };

  const keysOf = (store: Store): Promise<AccessKeys> => {
    const cached = cache.get(store);
    if (cached !== undefined && config.now() < cached.expiresAt) return cached.keys;
    const entry: CacheEntry = { keys: fetchKeys(config.secrets[store]), expiresAt: Number.POSITIVE_INFINITY };
    cache.set(store, entry);
    entry.keys.then(
      () => { entry.expiresAt = config.now() + config.cacheMs; },
      // A failure is not cached: the next run asks again.
      () => { if (cache.get(store) === entry) cache.delete(store); },
    );
    return entry.keys;
  };

  return {
    source: 'key-vault',
    resolve: async (needs, signal) => {
      signal?.throwIfAborted();
      // The fetch is shared, so one caller's signal only ends that caller's wait, not the fetch.
      const [aws, oci] = await Promise.all([
        needs.aws ? abortable(keysOf('aws'), signal) : undefined,
        needs.oci ? abortable(keysOf('oci'), signal) : undefined,
      ]);
      return { ...(aws && { aws }), ...(oci && { oci }) };
    },
  };
}

/** Turns an SDK or credential failure into a SecretsError that says what to check. */
function vaultFailure(vaultUrl: string, secret: VaultSecret, error: unknown): SecretsError {
  const failure = error instanceof Error ? (error as Error & SdkErrorFields) : undefined;
  const status = typeof failure?.statusCode === 'number' ? failure.statusCode : undefined;
  const code = typeof failure?.code === 'string' ? failure.code : undefined;
  const innerCode = failure?.details?.error?.innerError?.code;
  const message = failure?.message ?? String(error);
  const detail = /[.!?]$/.test(message.trim()) ? message.trim() : `${message.trim()}.`;
  const fields = { vaultUrl, secretName: secret.name, setting: secret.setting, status, code: innerCode ?? code, detail, cause: error };
  const identityHint = 'give the app a managed identity (system-assigned, or a user-assigned one whose client id is in AZURE_CLIENT_ID); on a workstation, sign in with `az login`.';

  if (failure !== undefined && CREDENTIAL_ERRORS.has(failure.name)) {
    return new SecretsError({ ...fields, detail: `no token for Key Vault: ${detail}`, hint: identityHint });
  }
  if (status === 404) {
    return new SecretsError({ ...fields, hint: `create the secret "${secret.name}" in the vault, or set ${secret.setting} to the name of the secret that holds this key.` });
  }
  if (status === 403) {
    if (innerCode === 'ForbiddenByFirewall' || /firewall|client address is not authorized/i.test(message)) {
      return new SecretsError({ ...fields, hint: 'allow the app through the vault\'s firewall (its outbound addresses or virtual network), or reach the vault through a private endpoint.' });
    }
    if (innerCode === 'SecretDisabled' || /disabled/i.test(message)) {
      return new SecretsError({ ...fields, hint: `enable the current version of "${secret.name}" in the vault.` });
    }
    return new SecretsError({ ...fields, hint: 'grant the identity \'Key Vault Secrets User\' on the vault (Azure RBAC), or the Get secret permission if the vault uses access policies. Role changes can take a few minutes to apply.' });
  }
  if (status === 401) {
    return new SecretsError({ ...fields, hint: `the vault refused the identity's token: check that the identity belongs to the vault's tenant. ${identityHint}` });
  }
  if (code !== undefined && TLS_CODES.has(code)) {
    return new SecretsError({ ...fields, hint: 'the vault\'s certificate was not trusted: check KEY_VAULT_URL, and any TLS-inspecting proxy between the app and the vault.' });
  }
  if (code !== undefined && NETWORK_CODES.has(code)) {
    return new SecretsError({ ...fields, hint: 'check KEY_VAULT_URL and that the vault is reachable from here (DNS, private endpoint, firewall).' });
  }
  if (/challenge/i.test(message)) {
    return new SecretsError({ ...fields, hint: 'set KEY_VAULT_URL to the vault URI shown on the vault\'s overview page (https://<vault-name>.vault.azure.net).' });
  }
  return new SecretsError({ ...fields, hint: 'check the vault, the identity\'s access to it, and KEY_VAULT_URL.' });
}

/** What the SDK's RestError carries; read structurally so no transitive package is imported. */
interface SdkErrorFields {
  readonly statusCode?: unknown;
  readonly code?: unknown;
  readonly details?: { readonly error?: { readonly innerError?: { readonly code?: string } } };
}

const CREDENTIAL_ERRORS = new Set(['CredentialUnavailableError', 'AuthenticationError', 'AggregateAuthenticationError', 'AuthenticationRequiredError']);
const TLS_CODES = new Set(['DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_HAS_EXPIRED', 'ERR_TLS_CERT_ALTNAME_INVALID']);
const NETWORK_CODES = new Set(['ENOTFOUND', 'EAI_AGAIN', 'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'REQUEST_SEND_ERROR']);

function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise;
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => { signal.removeEventListener('abort', onAbort); resolve(value); },
      (error: unknown) => { signal.removeEventListener('abort', onAbort); reject(error); },
    );
  });
}

/** A setting's value, trimmed; empty counts as unset (an app setting cannot be deleted from some templates, only emptied). */
function setting(env: Env, name: string): string | undefined {
  const value = env[name]?.trim();
  return value === undefined || value === '' ? undefined : value;
}

function parseVaultUrl(value: string, allowLoopback: boolean, problems: string[]): string | undefined {
  const example = 'e.g. https://myvault.vault.azure.net';
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    problems.push(`KEY_VAULT_URL is not a URL: expected the vault URI, ${example}.`);
    return undefined;
  }
  const loopback = url.hostname === '127.0.0.1' || url.hostname === 'localhost' || url.hostname === '[::1]';
  if (url.protocol !== 'https:') {
    problems.push(`KEY_VAULT_URL must use https (Key Vault serves nothing else), ${example}.`);
  } else if (url.username !== '' || url.password !== '') {
    problems.push(`KEY_VAULT_URL must not carry a user name or password, ${example}.`);
  } else if ((url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.hash !== '') {
    problems.push(`KEY_VAULT_URL must be the vault URI without a path or query (got ${url.origin}${url.pathname}), ${example}.`);
  } else if (loopback && !allowLoopback) {
    problems.push(`KEY_VAULT_URL points at this machine (${url.host}); a vault is at https://<vault-name>.vault.azure.net.`);
  } else {
    return url.origin;
  }
  return undefined;
}

function parseCacheSeconds(value: string | undefined, problems: string[]): number {
  if (value === undefined) return DEFAULT_CACHE_SECONDS;
  const seconds = /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!(seconds <= MAX_CACHE_SECONDS)) {
    problems.push(`SECRETS_CACHE_SECONDS must be a whole number of seconds from 0 to ${MAX_CACHE_SECONDS} (got ${JSON.stringify(value)}); default ${DEFAULT_CACHE_SECONDS}.`);
    return DEFAULT_CACHE_SECONDS;
  }
  return seconds;
}

function storeSecrets(env: Env, store: Store, problems: string[]): StoreSecrets {
  const names = SECRET_NAME_SETTINGS[store];
  const secret = (settingName: string, defaultName: string): VaultSecret => {
    const name = setting(env, settingName) ?? defaultName;
    if (!SECRET_NAME.test(name)) {
      problems.push(`${settingName} must be a Key Vault secret name: 1-127 letters, digits and dashes (got ${JSON.stringify(name.slice(0, 140))}).`);
    }
    return { name, setting: settingName };
  };
  const sessionTokenName = names.sessionTokenSetting === undefined ? undefined : setting(env, names.sessionTokenSetting);
  return {
    accessKeyId: secret(names.accessKeyId.setting, names.accessKeyId.defaultName),
    secretAccessKey: secret(names.secretAccessKey.setting, names.secretAccessKey.defaultName),
    ...(names.sessionTokenSetting !== undefined && sessionTokenName !== undefined
      ? { sessionToken: secret(names.sessionTokenSetting, sessionTokenName) }
      : {}),
  };
}

function environmentKeys(env: Env, store: Store, problems: string[]): AccessKeys | undefined {
  const names = ENV_KEY_SETTINGS[store];
  const accessKeyId = setting(env, names.accessKeyId);
  const secretAccessKey = setting(env, names.secretAccessKey);
  const sessionToken = names.sessionToken === undefined ? undefined : setting(env, names.sessionToken);
  for (const value of [accessKeyId, secretAccessKey, sessionToken]) registerSecret(value);

  if (accessKeyId === undefined && secretAccessKey === undefined) {
    if (sessionToken !== undefined) problems.push(`${names.sessionToken} is set without ${names.accessKeyId} and ${names.secretAccessKey}: set all three, or none.`);
    return undefined;
  }
  if (accessKeyId === undefined || secretAccessKey === undefined) {
    const missing = accessKeyId === undefined ? names.accessKeyId : names.secretAccessKey;
    problems.push(`${names.accessKeyId} and ${names.secretAccessKey} go together: ${missing} is missing${store === 'aws' ? ' (set both, or neither to use the AWS SDK\'s default credential chain)' : ''}.`);
    return undefined;
  }
  return sessionToken === undefined ? { accessKeyId, secretAccessKey } : { accessKeyId, secretAccessKey, sessionToken };
}
