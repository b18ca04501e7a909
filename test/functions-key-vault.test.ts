/**
 * The Functions adapters with the AWS and OCI keys in Key Vault, read with the app's managed identity:
 * the real SecretClient and DefaultAzureCredential talk to the protocol-level stand-ins in ./support
 * (the vault's 401 challenge, the token request to IDENTITY_ENDPOINT, each secret read).
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { createSyncRunner, type SyncRunner } from '../src/functions/run-sync.ts';
import { callHttp, callTimer, loggedEvents } from './support/functions-invocation.ts';
import { startKeyVaultServer, type KeyVaultServer } from './support/key-vault-server.ts';
import { startManagedIdentityServer, type ManagedIdentityServer } from './support/managed-identity-server.ts';
import { createScenario, mirrorDifferences, putSource, readAll, type Scenario } from './support/scenario.ts';

const emulators = inject('emulators');

/** s3rver accepts only its own key id and checks no signature: the ids must be S3RVER, the secrets are planted. */
const VAULT_SECRETS = {
  'aws-access-key-id': emulators.s3.accessKeyId,
  'aws-secret-access-key': 'planted/vault+aws/Secret=0123456789abcdef',
  'oci-access-key-id': emulators.s3.accessKeyId,
  'oci-secret-key': 'planted/vault+oci/Secret=0123456789abcdef',
} as const;
const PLANTED = [VAULT_SECRETS['aws-secret-access-key'], VAULT_SECRETS['oci-secret-key']];

let identity: ManagedIdentityServer;
let restoreProcessEnv: () => void;
let vault: KeyVaultServer;
let scenario: Scenario;

// The identity endpoint is read from process.env and then fixed for the process: one server per file, first.
beforeAll(async () => {
  identity = await startManagedIdentityServer();
  restoreProcessEnv = identity.applyToProcessEnv();
});
afterAll(async () => {
  restoreProcessEnv();
  await identity.close();
});
beforeEach(async () => {
  vault = await startKeyVaultServer({ secrets: VAULT_SECRETS, acceptsToken: (token) => identity.issued(token) });
  scenario = await createScenario(emulators, 'fnkv');
  await putSource(scenario, 'releases/2.0.0/app.zip', 'app 2.0.0');
  await putSource(scenario, 'releases/2.0.1/app.zip', 'app 2.0.1!');
});
afterEach(async () => {
  scenario.s3.destroy();
  await vault.close();
});

/** The scenario's settings with the keys taken out of the environment and KEY_VAULT_URL pointing at the test vault. */
function vaultRunner(): SyncRunner {
  const settings: Record<string, string> = { ...scenario.settings, KEY_VAULT_URL: vault.url };
  for (const name of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'OCI_ACCESS_KEY_ID', 'OCI_SECRET_KEY']) delete settings[name];
  return createSyncRunner({ settings, serviceOptions: { keyResolverOptions: { clientOptions: vault.clientOptions, allowLoopbackVaultUrl: true } } });
}

describe('keys from Key Vault', () => {
  it('with KEY_VAULT_URL the HTTP trigger mirrors with the vault\'s keys, and later runs of the instance reuse them', async () => {
    const runner = vaultRunner();
    const first = await callHttp(runner, '/api/sync/all');
    const second = await callHttp(runner, '/api/sync/all?dryRun=true');
    const timer = await callTimer(runner);

    expect(first.status).toBe(200);
    expect(second.status).toBe(200);
    expect(timer.error).toBeUndefined();
    const stored = await readAll(scenario);
    expect(mirrorDifferences(stored.source, stored.azure)).toEqual([]);
    expect(mirrorDifferences(stored.source, stored.oci)).toEqual([]);
    // One read per secret for the instance: the cache spans invocations and triggers.
    expect(vault.served().sort()).toEqual(Object.keys(VAULT_SECRETS).sort());
    for (const call of [first, second]) for (const secret of PLANTED) expect(call.text + call.lines.map((line) => line.text).join('\n')).not.toContain(secret);
  });

  it('a secret missing from the vault answers 503 naming the vault and the secret, never a value, and nothing is attempted', async () => {
    vault.deleteSecret('oci-secret-key');
    const call = await callHttp(vaultRunner(), '/api/sync/all');

    expect(call.status).toBe(503);
    expect(Object.keys(call.body).sort()).toEqual(['error', 'invocationId']);
    expect(call.body['error']).toContain(`Key Vault ${vault.url}: reading secret "oci-secret-key" (KEY_VAULT_SECRET_OCI_SECRET_KEY) failed (404`);
    expect(call.headers.get('x-invocation-id')).toBe(call.invocationId);
    for (const event of loggedEvents(call.lines)) expect(event['invocationId']).toBe(call.invocationId);
    const outputs = [call.text, ...call.lines.map((line) => line.text)];
    for (const secret of PLANTED) for (const output of outputs) expect(output).not.toContain(secret);
    const stored = await readAll(scenario);
    expect([...stored.azure.keys(), ...stored.oci.keys()]).toEqual([]);
  });

  it('a secret the identity may not read answers 503 with the role to grant', async () => {
    vault.deny('aws-secret-access-key');
    const call = await callHttp(vaultRunner(), '/api/sync/azure');

    expect(call.status).toBe(503);
    expect(call.body['error']).toContain('"aws-secret-access-key"');
    expect(call.body['error']).toContain('Key Vault Secrets User');
  });

  it('an Azure-only run does not read the OCI keys', async () => {
    const call = await callHttp(vaultRunner(), '/api/sync/azure');

    expect(call.status).toBe(200);
    expect(vault.served().sort()).toEqual(['aws-access-key-id', 'aws-secret-access-key']);
  });

  it('a timer run whose secret is missing throws naming the secret, and a run after it is restored succeeds', async () => {
    vault.deleteSecret('aws-access-key-id');
    const runner = vaultRunner();
    const failed = await callTimer(runner);

    expect(failed.error?.message).toMatch(/could not start.*"aws-access-key-id"/s);
    for (const secret of PLANTED) expect(failed.error?.message).not.toContain(secret);

    vault.setSecret('aws-access-key-id', emulators.s3.accessKeyId);
    const restored = await callTimer(runner);

    expect(restored.error).toBeUndefined();
  });
});
