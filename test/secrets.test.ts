/**
 * The AWS and OCI keys, from Key Vault or the environment (src/secrets.ts).
 *
 * Key Vault and the managed-identity endpoint have no emulator; ./support has protocol-level stand-ins
 * that the real SecretClient and DefaultAzureCredential talk to unmodified: the vault's 401 challenge,
 * the token request to IDENTITY_ENDPOINT, the secret read, each one over the wire.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, redactSecrets } from '../src/core/errors.ts';
import { createKeyResolver, SecretsError, type KeyResolver, type KeyResolverOptions } from '../src/secrets.ts';
import { startKeyVaultServer, type KeyVaultServer } from './support/key-vault-server.ts';
import { startManagedIdentityServer, type ManagedIdentityServer } from './support/managed-identity-server.ts';

const USER_ASSIGNED_CLIENT_ID = '6a1e2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b';
const UNATTACHED_CLIENT_ID = '0badc0de-0000-4000-8000-000000000001';

/** Distinctive values, so that any leak into a message is found. */
const PLANTED = {
  'aws-access-key-id': 'AKIAPLANTEDVAULT0001',
  'aws-secret-access-key': 'planted/vault+aws/secret0123456789abcdefGH',
  'oci-access-key-id': 'planted-vault-oci-key-id-0123456789abcdef',
  'oci-secret-key': 'planted/vault+oci/secret=0123456789abcdefGH',
} as const;

const BOTH = { aws: true, oci: true } as const;
const AWS_ONLY = { aws: true, oci: false } as const;

let identity: ManagedIdentityServer;
let restoreProcessEnv: () => void;
let vault: KeyVaultServer;

// The identity endpoint is read from process.env and then fixed for the process (see the server's header):
// one server for the whole file, in place before any credential asks for a token.
beforeAll(async () => {
  identity = await startManagedIdentityServer({ userAssignedClientIds: [USER_ASSIGNED_CLIENT_ID] });
  restoreProcessEnv = identity.applyToProcessEnv();
});
afterAll(async () => {
  restoreProcessEnv();
  await identity.close();
});
beforeEach(async () => {
  vault = await startKeyVaultServer({ secrets: PLANTED, acceptsToken: (token) => identity.issued(token) });
});
afterEach(async () => {
  await vault.close();
});

/** A resolver for the test vault, with the production credential (DefaultAzureCredential). */
function vaultResolver(settings: Record<string, string> = {}, options: KeyResolverOptions = {}): KeyResolver {
  return createKeyResolver(
    { KEY_VAULT_URL: vault.url, ...settings },
    { clientOptions: vault.clientOptions, allowLoopbackVaultUrl: true, ...options },
  );
}

async function failureOf(promise: Promise<unknown>): Promise<Error> {
  const outcome = await promise.then(() => undefined, (error: unknown) => error);
  if (!(outcome instanceof Error)) throw new Error('expected a failure, got success');
  return outcome;
}

function thrownBy(action: () => unknown): Error {
  try {
    action();
  } catch (error) {
    if (error instanceof Error) return error;
    throw error;
  }
  throw new Error('expected a throw');
}

describe('keys from Key Vault', () => {
  // First in the file on purpose: the system-assigned identity's token is cached for the process afterwards.
  it('the keys come from the vault, read with a managed-identity token after the vault\'s challenge', async () => {
    const resolver = vaultResolver();
    expect(resolver.source).toBe('key-vault');

    const keys = await resolver.resolve(BOTH);

    expect(keys).toEqual({
      aws: { accessKeyId: PLANTED['aws-access-key-id'], secretAccessKey: PLANTED['aws-secret-access-key'] },
      oci: { accessKeyId: PLANTED['oci-access-key-id'], secretAccessKey: PLANTED['oci-secret-key'] },
    });
    expect(identity.requests).toContainEqual({
      apiVersion: '2019-08-01',
      resource: 'https://vault.azure.net',
      clientId: undefined,
      headerMatched: true,
      status: 200,
    });
    const anonymous = vault.requests.filter((request) => request.token === undefined);
    expect(anonymous.length).toBeGreaterThan(0);
    expect(anonymous.every((request) => request.status === 401)).toBe(true);
    const reads = vault.requests.filter((request) => request.status === 200);
    expect(reads.map((request) => request.path).sort()).toEqual([
      '/secrets/aws-access-key-id/',
      '/secrets/aws-secret-access-key/',
      '/secrets/oci-access-key-id/',
      '/secrets/oci-secret-key/',
    ]);
    expect(reads.every((request) => request.token !== undefined && identity.issued(request.token))).toBe(true);
    expect(reads.every((request) => request.apiVersion !== null)).toBe(true);
  });

  it('AZURE_CLIENT_ID selects the user-assigned identity that reads the vault', async () => {
    const keys = await vaultResolver({ AZURE_CLIENT_ID: USER_ASSIGNED_CLIENT_ID }).resolve(AWS_ONLY);

    expect(keys.aws?.accessKeyId).toBe(PLANTED['aws-access-key-id']);
    expect(identity.requests).toContainEqual(expect.objectContaining({
      resource: 'https://vault.azure.net',
      clientId: USER_ASSIGNED_CLIENT_ID,
      status: 200,
    }));
  });

  it('secrets with other names are found through the KEY_VAULT_SECRET_* settings, the AWS session token only when its setting is set', async () => {
    vault.setSecret('prod-aws-id', 'AKIACUSTOMNAME000001');
    vault.setSecret('prod-aws-secret', 'custom/aws/secret/0123456789');
    vault.setSecret('prod-aws-session', 'custom-session-token-0123456789');
    vault.setSecret('prod-oci-id', 'custom-oci-key-id-0123456789');
    vault.setSecret('prod-oci-secret', 'custom/oci/secret/0123456789');

    const keys = await vaultResolver({
      KEY_VAULT_SECRET_AWS_ACCESS_KEY_ID: 'prod-aws-id',
      KEY_VAULT_SECRET_AWS_SECRET_ACCESS_KEY: 'prod-aws-secret',
      KEY_VAULT_SECRET_AWS_SESSION_TOKEN: 'prod-aws-session',
      KEY_VAULT_SECRET_OCI_ACCESS_KEY_ID: 'prod-oci-id',
      KEY_VAULT_SECRET_OCI_SECRET_KEY: 'prod-oci-secret',
    }).resolve(BOTH);

    expect(keys).toEqual({
      aws: { accessKeyId: 'AKIACUSTOMNAME000001', secretAccessKey: 'custom/aws/secret/0123456789', sessionToken: 'custom-session-token-0123456789' },
      oci: { accessKeyId: 'custom-oci-key-id-0123456789', secretAccessKey: 'custom/oci/secret/0123456789' },
    });
    expect(vault.served().sort()).toEqual(['prod-aws-id', 'prod-aws-secret', 'prod-aws-session', 'prod-oci-id', 'prod-oci-secret']);
  });

  it('without a session-token setting no session token is read', async () => {
    const keys = await vaultResolver().resolve(AWS_ONLY);

    expect(keys.aws).not.toHaveProperty('sessionToken');
    expect(vault.served().sort()).toEqual(['aws-access-key-id', 'aws-secret-access-key']);
  });

  it('a secret stored with a trailing newline is read without it', async () => {
    vault.setSecret('oci-secret-key', 'planted-from-a-file-0123456789\n');

    const keys = await vaultResolver().resolve(BOTH);

    expect(keys.oci?.secretAccessKey).toBe('planted-from-a-file-0123456789');
  });
});

describe('only the keys a run needs are read', () => {
  it('an Azure-only run reads only the AWS keys, the source\'s', async () => {
    const keys = await vaultResolver().resolve(AWS_ONLY);

    expect(keys.oci).toBeUndefined();
    expect(vault.served().sort()).toEqual(['aws-access-key-id', 'aws-secret-access-key']);
  });

  it('a run that needs no keys sends nothing to the vault', async () => {
    const keys = await vaultResolver().resolve({ aws: false, oci: false });

    expect(keys).toEqual({});
    expect(vault.requests).toEqual([]);
  });

  it('adding OCI later reads only the OCI keys, the AWS ones come from the cache', async () => {
    const resolver = vaultResolver();
    await resolver.resolve(AWS_ONLY);
    await resolver.resolve(BOTH);

    expect(vault.served().sort()).toEqual(['aws-access-key-id', 'aws-secret-access-key', 'oci-access-key-id', 'oci-secret-key']);
  });
});

describe('caching within SECRETS_CACHE_SECONDS', () => {
  it('two runs within SECRETS_CACHE_SECONDS read the vault once, and a rotated key is picked up after it', async () => {
    let clock = 1_000_000;
    const resolver = vaultResolver({ SECRETS_CACHE_SECONDS: '60' }, { now: () => clock });

    await resolver.resolve(AWS_ONLY);
    vault.setSecret('aws-secret-access-key', 'rotated/aws/secret/0123456789');
    clock += 59_000;
    const cached = await resolver.resolve(AWS_ONLY);

    expect(cached.aws?.secretAccessKey).toBe(PLANTED['aws-secret-access-key']);
    expect(vault.served()).toHaveLength(2);

    clock += 2_000;
    const refreshed = await resolver.resolve(AWS_ONLY);

    expect(refreshed.aws?.secretAccessKey).toBe('rotated/aws/secret/0123456789');
    expect(vault.served()).toHaveLength(4);
  });

  it('concurrent callers share one read of each secret', async () => {
    const resolver = vaultResolver();

    const results = await Promise.all([resolver.resolve(BOTH), resolver.resolve(BOTH), resolver.resolve(AWS_ONLY)]);

    expect(results[0]).toEqual(results[1]);
    expect(vault.served().sort()).toEqual(['aws-access-key-id', 'aws-secret-access-key', 'oci-access-key-id', 'oci-secret-key']);
  });

  it('with SECRETS_CACHE_SECONDS=0 every run reads the vault again', async () => {
    const resolver = vaultResolver({ SECRETS_CACHE_SECONDS: '0' });

    await resolver.resolve(AWS_ONLY);
    await resolver.resolve(AWS_ONLY);

    expect(vault.served()).toHaveLength(4);
  });

  it('a failed read is not cached: the next run asks again', async () => {
    vault.deleteSecret('oci-secret-key');
    const resolver = vaultResolver();
    await expect(resolver.resolve(BOTH)).rejects.toBeInstanceOf(SecretsError);

    vault.setSecret('oci-secret-key', 'created/after/the/failure/0123');
    const keys = await resolver.resolve(BOTH);

    expect(keys.oci?.secretAccessKey).toBe('created/after/the/failure/0123');
  });

  it('a cancelled run stops waiting, and the read it started still serves the next run', async () => {
    const resolver = vaultResolver();
    const controller = new AbortController();

    const cancelled = resolver.resolve(BOTH, controller.signal);
    controller.abort(new Error('run cancelled'));

    await expect(cancelled).rejects.toThrow('run cancelled');
    expect((await resolver.resolve(BOTH)).oci?.accessKeyId).toBe(PLANTED['oci-access-key-id']);
    expect(vault.served()).toHaveLength(4);
  });
});

describe('vault failures say what to fix', () => {
  it('a missing secret names the vault, the secret and the setting, not a value', async () => {
    vault.deleteSecret('oci-secret-key');

    const error = await failureOf(vaultResolver().resolve(BOTH));

    expect(error).toBeInstanceOf(SecretsError);
    expect(error).toMatchObject({ vaultUrl: vault.url, secretName: 'oci-secret-key', setting: 'KEY_VAULT_SECRET_OCI_SECRET_KEY', status: 404 });
    expect(error.message).toContain(vault.url);
    expect(error.message).toContain('"oci-secret-key"');
    expect(error.message).toContain('SecretNotFound');
    expect(error.message).toContain('create the secret "oci-secret-key" in the vault, or set KEY_VAULT_SECRET_OCI_SECRET_KEY');
    for (const value of Object.values(PLANTED)) expect(error.message).not.toContain(value);
  });

  it('a secret the identity may not read fails with the role to grant', async () => {
    vault.deny('aws-secret-access-key');

    const error = await failureOf(vaultResolver().resolve(AWS_ONLY));

    expect(error).toBeInstanceOf(SecretsError);
    expect(error).toMatchObject({ secretName: 'aws-secret-access-key', status: 403, code: 'ForbiddenByRbac' });
    expect(error.message).toContain('grant the identity \'Key Vault Secrets User\' on the vault');
  });

  it('an identity the app does not have fails with the managed-identity hint', async () => {
    const error = await failureOf(vaultResolver({ AZURE_CLIENT_ID: UNATTACHED_CLIENT_ID }).resolve(AWS_ONLY));

    expect(error).toBeInstanceOf(SecretsError);
    expect(error.message).toContain('no token for Key Vault');
    expect(error.message).toContain('AZURE_CLIENT_ID');
    expect(identity.requests).toContainEqual(expect.objectContaining({ clientId: UNATTACHED_CLIENT_ID, status: 400 }));
    expect(vault.served()).toEqual([]);
  });

  it('planted secret values never appear in an error, and redactSecrets masks each of them', async () => {
    vault.setSecret('aws-session-token', 'planted-vault-session-token-0123456789');
    let clock = 0;
    const resolver = vaultResolver({ KEY_VAULT_SECRET_AWS_SESSION_TOKEN: 'aws-session-token' }, { now: () => clock });
    const keys = await resolver.resolve(BOTH);
    const values = [keys.aws?.accessKeyId, keys.aws?.secretAccessKey, keys.aws?.sessionToken, keys.oci?.accessKeyId, keys.oci?.secretAccessKey];

    // Expire the cache, then fail in every way the vault can.
    clock += 3_600_000;
    vault.deny('oci-access-key-id');
    vault.deleteSecret('oci-secret-key');
    const errors = [
      await failureOf(resolver.resolve(BOTH)),
      await failureOf(vaultResolver({ AZURE_CLIENT_ID: UNATTACHED_CLIENT_ID }).resolve(BOTH)),
    ];

    for (const value of values) {
      expect(value).toBeTypeOf('string');
      const planted = value ?? '';
      expect(redactSecrets(`leaked: ${planted}.`)).toBe('leaked: [redacted].');
      for (const error of errors) {
        expect(error.message).not.toContain(planted);
        expect(JSON.stringify(error)).not.toContain(planted);
      }
    }
  });
});

describe('keys from the environment', () => {
  it('without KEY_VAULT_URL the keys come from the environment', async () => {
    const resolver = createKeyResolver({
      AWS_ACCESS_KEY_ID: 'AKIAPLANTEDENV000001',
      AWS_SECRET_ACCESS_KEY: 'planted/env+aws/secret0123456789',
      AWS_SESSION_TOKEN: 'planted-env-session-token-0123456789',
      OCI_ACCESS_KEY_ID: 'planted-env-oci-key-id-0123456789',
      OCI_SECRET_KEY: 'planted/env+oci/secret0123456789',
    });

    expect(resolver.source).toBe('environment');
    expect(await resolver.resolve(BOTH)).toEqual({
      aws: { accessKeyId: 'AKIAPLANTEDENV000001', secretAccessKey: 'planted/env+aws/secret0123456789', sessionToken: 'planted-env-session-token-0123456789' },
      oci: { accessKeyId: 'planted-env-oci-key-id-0123456789', secretAccessKey: 'planted/env+oci/secret0123456789' },
    });
    expect(redactSecrets('planted/env+oci/secret0123456789')).toBe('[redacted]');
  });

  it('without AWS keys the AWS SDK\'s default credential chain is used', async () => {
    const keys = await createKeyResolver({ OCI_ACCESS_KEY_ID: 'oci-id-0001', OCI_SECRET_KEY: 'oci-secret-0001' }).resolve(BOTH);

    expect(keys.aws).toBeUndefined();
    expect(keys.oci?.accessKeyId).toBe('oci-id-0001');
  });

  it('OCI keys are required when OCI is a target, and only then', async () => {
    const resolver = createKeyResolver({});

    expect(await resolver.resolve(AWS_ONLY)).toEqual({});
    const error = await failureOf(resolver.resolve(BOTH));
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toContain('OCI_ACCESS_KEY_ID and OCI_SECRET_KEY are required');
  });

  it('an AWS key id without its secret names both settings and not the id', () => {
    const error = thrownBy(() => createKeyResolver({ AWS_ACCESS_KEY_ID: 'AKIAPLANTEDALONE0001' }));

    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toContain('AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY');
    expect(error.message).not.toContain('AKIAPLANTEDALONE0001');
  });
});

describe('malformed settings fail before any request, naming the setting', () => {
  it.each([
    ['KEY_VAULT_URL', { KEY_VAULT_URL: 'myvault.vault.azure.net' }],
    ['KEY_VAULT_URL', { KEY_VAULT_URL: 'http://myvault.vault.azure.net' }],
    ['KEY_VAULT_URL', { KEY_VAULT_URL: 'https://myvault.vault.azure.net/secrets/aws-access-key-id' }],
    ['KEY_VAULT_URL', { KEY_VAULT_URL: 'https://myvault.vault.azure.net/?api-version=7.4' }],
    ['KEY_VAULT_URL', { KEY_VAULT_URL: 'https://127.0.0.1:8443' }],
    ['KEY_VAULT_URL', { KEY_VAULT_URL: 'https://localhost' }],
    ['KEY_VAULT_SECRET_AWS_ACCESS_KEY_ID', { KEY_VAULT_URL: 'https://myvault.vault.azure.net', KEY_VAULT_SECRET_AWS_ACCESS_KEY_ID: 'aws_access_key_id' }],
    ['KEY_VAULT_SECRET_OCI_SECRET_KEY', { KEY_VAULT_URL: 'https://myvault.vault.azure.net', KEY_VAULT_SECRET_OCI_SECRET_KEY: 'x'.repeat(128) }],
    ['KEY_VAULT_SECRET_AWS_SESSION_TOKEN', { KEY_VAULT_URL: 'https://myvault.vault.azure.net', KEY_VAULT_SECRET_AWS_SESSION_TOKEN: 'session token' }],
    ['KEY_VAULT_SECRET_OCI_ACCESS_KEY_ID', { KEY_VAULT_SECRET_OCI_ACCESS_KEY_ID: 'oci-id' }],
    ['SECRETS_CACHE_SECONDS', { SECRETS_CACHE_SECONDS: '-1' }],
    ['SECRETS_CACHE_SECONDS', { SECRETS_CACHE_SECONDS: '86401' }],
    ['SECRETS_CACHE_SECONDS', { SECRETS_CACHE_SECONDS: '1.5' }],
    ['SECRETS_CACHE_SECONDS', { SECRETS_CACHE_SECONDS: 'five minutes' }],
    ['AZURE_CLIENT_ID', { KEY_VAULT_URL: 'https://myvault.vault.azure.net', AZURE_CLIENT_ID: 'my-identity' }],
    ['AWS_SESSION_TOKEN', { AWS_SESSION_TOKEN: 'session-without-keys' }],
    ['OCI_SECRET_KEY', { OCI_ACCESS_KEY_ID: 'oci-id-without-secret' }],
  ])('%s: %j', (name, env) => {
    const error = thrownBy(() => createKeyResolver(env));

    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toContain(name);
  });

  it('a loopback vault is accepted only through the test option, never through the settings alone', () => {
    expect(() => createKeyResolver({ KEY_VAULT_URL: 'https://127.0.0.1:8443' })).toThrow(ConfigError);
    expect(createKeyResolver({ KEY_VAULT_URL: 'https://127.0.0.1:8443' }, { allowLoopbackVaultUrl: true }).source).toBe('key-vault');
  });

  it('a well-formed vault URL with a trailing slash is accepted', () => {
    expect(createKeyResolver({ KEY_VAULT_URL: 'https://myvault.vault.azure.net/' }).source).toBe('key-vault');
  });
});
