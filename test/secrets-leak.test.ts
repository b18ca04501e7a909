/**
 * No secret in any output: recognisable secret values are planted in the settings of the real CLI
 * (`node dist/bin/cli.js`, the bundled bin users run, built by `npm test` first; a fresh process per run, so nothing registered by an earlier run can mask a
 * leak), and every line of stdout and stderr (progress, failures, the text or JSON report, errors) is
 * searched for them, on success and on every error path.
 *
 * s3rver checks the access key id but no signature, so the AWS and OCI *secrets* are planted with its
 * valid key id; the Azure account key is Azurite's well-known one, which must be masked all the same.
 * Azure pulls from presigned S3 URLs (through the copy-from-URL stand-in), whose signature, credential
 * and security token must never show.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { putS3Object, putSource, pseudoRandomBytes, putBlob } from './support/scenario.ts';
import { createStandInScenario, type StandInScenario } from './support/stand-in-scenario.ts';

const emulators = inject('emulators');
const repoRoot = fileURLToPath(new URL('..', import.meta.url));

const PLANTED = {
  awsSecret: 'PlantedAwsSecret/0123+456789abcdefLEAK',
  awsSessionToken: 'PlantedAwsSessionToken0123456789abcdefLEAK',
  ociSecret: 'PlantedOciSecret/0123+456789abcdefLEAK',
  wrongOciKeyId: 'PLANTEDOCIKEYID0123LEAK',
  wrongAwsKeyId: 'AKIAPLANTEDAWSKEYLEAK',
  wrongAzureKey: Buffer.from('planted Azure account key, 64 bytes long, never to be printed!!!').toString('base64'),
} as const;

/** Everything that must never appear: the planted values, the account key, and any presigned-URL signature or credential. */
function leaksIn(output: string): string[] {
  const found: string[] = [];
  const secrets: [string, string][] = [...Object.entries(PLANTED), ['azuriteAccountKey', emulators.azurite.accountKey]];
  for (const [name, value] of secrets) if (output.includes(value)) found.push(name);
  const signatures = [
    /X-Amz-Signature=(?!\[redacted\])[^&\s"']+/gi,
    /X-Amz-Credential=(?!\[redacted\])[^&\s"']+/gi,
    /X-Amz-Security-Token=(?!\[redacted\])[^&\s"']+/gi,
    // The same in an Authorization header, as a service may echo it.
    /\bSignature=(?!\[redacted\])[0-9a-f]{16,}/g,
  ];
  for (const pattern of signatures) {
    for (const match of output.matchAll(pattern)) found.push(match[0]);
  }
  return found;
}

interface ProcessResult {
  readonly exitCode: number | null;
  readonly output: string;
}

/** The CLI in its own process; stdout and stderr together, as an operator's terminal or a log collector sees them. */
function runCliProcess(args: readonly string[], settings: Record<string, string>): Promise<ProcessResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['dist/bin/cli.js', ...args], {
      cwd: repoRoot,
      env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/tmp', ...settings },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', reject);
    child.on('close', (exitCode) => resolve({ exitCode, output }));
  });
}

let s: StandInScenario;
let planted: Record<string, string>;
beforeAll(async () => {
  s = await createStandInScenario(emulators, { prefix: 'secrets', serverSideCopy: true });
  planted = {
    ...s.settings,
    AWS_SECRET_ACCESS_KEY: PLANTED.awsSecret,
    AWS_SESSION_TOKEN: PLANTED.awsSessionToken,
    OCI_SECRET_KEY: PLANTED.ociSecret,
    SYNC_RETRY_ATTEMPTS: '2',
    // The targets start with one extra object each: let the run delete it.
    SYNC_MAX_DELETE_PERCENT: '100',
  };
  for (let index = 0; index < 6; index += 1) await putSource(s, `files/${index}.bin`, pseudoRandomBytes(2000 + index, index + 1));
  await putBlob(s, 'extra.txt', 'not in the source');
  await putS3Object(s, s.ociBucket, 'extra.txt', 'not in the source');
});
afterAll(async () => {
  await s.close();
});

/**
 * Runs the CLI with `--json` (and, with `text`, first without it: one run after the other, a run holds the
 * lock); nothing printed may leak. The text report renders the same strings as the JSON one, so JSON alone
 * covers a path. Returns the outputs, and checks the runs ended with `exitCode` (when given) so the path meant was taken.
 */
async function expectNoLeak(settings: Record<string, string>, args: readonly string[], exitCode: number | undefined, shows?: RegExp, text = false): Promise<string> {
  const outputs: string[] = [];
  for (const format of text ? [[], ['--json']] : [['--json']]) {
    const run = await runCliProcess([...args, ...format], settings);
    expect(leaksIn(run.output), run.output).toEqual([]);
    if (exitCode !== undefined) expect(run.exitCode, run.output).toBe(exitCode);
    if (shows !== undefined) expect(run.output).toMatch(shows);
    outputs.push(run.output);
  }
  return outputs.join('\n');
}

describe('planted secrets never appear in what the CLI prints', () => {
  it('on a successful run, with Azure pulling from presigned URLs', async () => {
    await expectNoLeak(planted, ['all'], 0, undefined, true);
    expect(s.copyProxy!.pulls().length).toBeGreaterThan(0);
    // Later cases start from a complete mirror: put the drift back.
    await putBlob(s, 'extra.txt', 'not in the source');
    await putS3Object(s, s.ociBucket, 'extra.txt', 'not in the source');
    await putSource(s, 'files/new.bin', 'new since');
  });

  it('on a dry run', async () => {
    await expectNoLeak(planted, ['all', '--dry-run'], 0, /delete not in source/, true);
  });

  it('on a configuration error', async () => {
    const { AWS_ACCESS_KEY_ID: _id, ...withoutKeyId } = planted;
    const settings = { ...withoutKeyId, SYNC_CONCURRENCY: 'many', AZURE_STORAGE_CONNECTION_STRING: `AccountKey=${emulators.azurite.accountKey};Foo=bar` };
    await expectNoLeak(settings, ['all'], 2, /AZURE_STORAGE_CONNECTION_STRING is not a storage connection string/);
    // Settings valid, keys not: the key problem is named, and no key shown.
    await expectNoLeak(withoutKeyId, ['all'], 2, /AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY go together/);
  });

  it('with a wrong OCI access key id, and with a wrong Azure account key', async () => {
    await expectNoLeak({ ...planted, OCI_ACCESS_KEY_ID: PLANTED.wrongOciKeyId }, ['all'], 1, /InvalidAccessKeyId/);
    const wrongAzure = planted['AZURE_STORAGE_CONNECTION_STRING']!.replace(/AccountKey=[^;]+/, `AccountKey=${PLANTED.wrongAzureKey}`);
    await expectNoLeak({ ...planted, AZURE_STORAGE_CONNECTION_STRING: wrongAzure }, ['all'], 1, /403/);
  });

  it('when a target is down', async () => {
    await s.ociProxy.setDown('refuse');
    try {
      await expectNoLeak(planted, ['all'], 1, /list failed on oci:\/\//);
    } finally {
      await s.ociProxy.setDown(null);
    }
  });

  it('when Azure refuses to pull from the presigned URL, falling back to streaming or failing each object', async () => {
    await putSource(s, 'files/refused.bin', 'refused pull');
    s.copyProxy!.setRefuse(true);
    try {
      await expectNoLeak({ ...planted, SYNC_TRANSFER_MODE: 'server-side' }, ['azure'], 1, /CannotVerifyCopySource/);
      await expectNoLeak(planted, ['azure'], 0);
    } finally {
      s.copyProxy!.setRefuse(false);
    }
  });

  it('with faults at every store', async () => {
    await putSource(s, 'files/faulty.bin', pseudoRandomBytes(3000, 99));
    const faults = { rate: 0.2, kinds: ['500', '503', 'reset', 'reset-mid-body'] as const };
    for (const proxy of [s.sourceProxy, s.ociProxy, s.azureProxy]) proxy.reset();
    s.sourceProxy.setFaults({ ...faults, seed: 7 });
    s.ociProxy.setFaults({ ...faults, seed: 8 });
    s.azureProxy.setFaults({ ...faults, seed: 9 });
    try {
      // Without retries, whichever requests the faults hit fail (that depends on timing): any exit code.
      await expectNoLeak({ ...planted, SYNC_RETRY_ATTEMPTS: '1' }, ['all'], undefined);
      const injected = [s.sourceProxy, s.ociProxy, s.azureProxy].flatMap((proxy) => proxy.requests()).filter((request) => request.fault !== null);
      expect(injected.length).toBeGreaterThan(0);
    } finally {
      for (const proxy of [s.sourceProxy, s.ociProxy, s.azureProxy]) proxy.setFaults(null);
    }
  });

  it('when an S3-compatible service repeats the request, key id and signature included, in its errors', async () => {
    s.ociStandIn.setEchoErrors(true);
    s.sourceStandIn.setEchoErrors(true);
    try {
      const output = await expectNoLeak({ ...planted, AWS_ACCESS_KEY_ID: PLANTED.wrongAwsKeyId, OCI_ACCESS_KEY_ID: PLANTED.wrongOciKeyId }, ['all'], 1, /InvalidRequest/, true);
      // The echo reached the messages, masked.
      expect(output).toContain('(Authorization: AWS4-HMAC-SHA256 Credential=[redacted], SignedHeaders=');
      expect(output).toContain(', Signature=[redacted])');
    } finally {
      s.ociStandIn.setEchoErrors(false);
      s.sourceStandIn.setEchoErrors(false);
    }
  });
});
