/** The command line: arguments, settings, exit codes; and the same CLI as a real process on Node and on Deno. */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, inject, it } from 'vitest';
import type { RunReport } from '../src/core/report.ts';
import { runCli } from './support/cli-run.ts';
import { createScenario, mirrorDifferences, putSource, readAll, type Scenario } from './support/scenario.ts';

const emulators = inject('emulators');
const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const scenarios: Scenario[] = [];
afterAll(() => {
  for (const scenario of scenarios) scenario.s3.destroy();
});
async function scenario(): Promise<Scenario> {
  const created = await createScenario(emulators, 'cli');
  scenarios.push(created);
  return created;
}

/** Settings that are complete and valid but point at a closed port: a run that makes any request would fail with exit 1, not 2. */
const unreachable: Record<string, string> = {
  AWS_S3_BUCKET: 'artifacts',
  AWS_REGION: 'us-east-1',
  AWS_S3_ENDPOINT: 'http://127.0.0.1:9',
  AWS_ACCESS_KEY_ID: 'AKIAEXAMPLE',
  AWS_SECRET_ACCESS_KEY: 'example-secret',
  AZURE_STORAGE_CONTAINER: 'artifacts',
  AZURE_STORAGE_CONNECTION_STRING: 'DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;',
  OCI_S3_ENDPOINT: 'http://127.0.0.1:9',
  OCI_REGION: 'eu-frankfurt-1',
  OCI_BUCKET: 'artifacts',
  OCI_ACCESS_KEY_ID: 'ocid-key',
  OCI_SECRET_KEY: 'oci-secret',
};

function without(settings: Record<string, string>, ...names: string[]): Record<string, string> {
  return Object.fromEntries(Object.entries(settings).filter(([name]) => !names.includes(name)));
}

describe('command-line usage', () => {
  it('names the valid providers when given an unknown one, and exits 2', async () => {
    const result = await runCli(['gcp'], unreachable);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain('unknown provider "gcp": choose one of all, azure, oci');
  });

  it('asks for a provider when none is given', async () => {
    const result = await runCli([], unreachable);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain('missing provider: choose one of all, azure, oci');
  });

  it('refuses an unknown option and lists the allowed ones', async () => {
    const result = await runCli(['all', '--force'], unreachable);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain('unknown option "--force": allowed are --dry-run, --json, --enqueue, --key <key>, --events <file|->, --help');
  });

  it('refuses two providers at once', async () => {
    const result = await runCli(['azure', 'oci'], unreachable);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain('one provider at a time');
  });

  it('prints help with the exit codes and exits 0', async () => {
    const result = await runCli(['--help'], {});
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toContain('Usage: artifacts-sync <all|azure|oci> [--dry-run] [--json]');
    expect(result.stdout).toContain('Exit codes: 0 mirror complete');
  });
});

describe('configuration errors stop the run before any request, exit 2, and name the setting', () => {
  const cases: [string, Record<string, string>, string, string][] = [
    ['a missing source bucket', without(unreachable, 'AWS_S3_BUCKET'), 'all', 'AWS_S3_BUCKET is required'],
    ['an invalid source bucket name', { ...unreachable, AWS_S3_BUCKET: 'Bad_Bucket!' }, 'all', 'AWS_S3_BUCKET "Bad_Bucket!" is not a valid S3 bucket name'],
    ['a missing region', without(unreachable, 'AWS_REGION'), 'all', 'AWS_REGION is required'],
    ['a malformed region', { ...unreachable, OCI_REGION: 'Frankfurt' }, 'oci', 'OCI_REGION "Frankfurt" is not a region name'],
    ['an endpoint that is not a URL', { ...unreachable, AWS_S3_ENDPOINT: 'not a url' }, 'all', 'AWS_S3_ENDPOINT is not a URL'],
    ['a plain-http endpoint off this machine', { ...unreachable, OCI_S3_ENDPOINT: 'http://example.com' }, 'oci', 'OCI_S3_ENDPOINT must use https'],
    ['an endpoint with a query', { ...unreachable, OCI_S3_ENDPOINT: 'https://ns.compat.objectstorage.eu-frankfurt-1.oraclecloud.com/?x=1' }, 'oci', 'OCI_S3_ENDPOINT must not carry a query'],
    ['a missing OCI endpoint', without(unreachable, 'OCI_S3_ENDPOINT'), 'oci', 'OCI_S3_ENDPOINT is required: an https URL such as https://<namespace>.compat.objectstorage.<region>.oraclecloud.com'],
    ['a missing OCI bucket', without(unreachable, 'OCI_BUCKET'), 'all', 'OCI_BUCKET is required'],
    ['missing OCI keys', without(unreachable, 'OCI_ACCESS_KEY_ID', 'OCI_SECRET_KEY'), 'oci', 'OCI_ACCESS_KEY_ID'],
    ['half of the AWS keys', without(unreachable, 'AWS_SECRET_ACCESS_KEY'), 'azure', 'AWS_SECRET_ACCESS_KEY'],
    ['a missing container', without(unreachable, 'AZURE_STORAGE_CONTAINER'), 'azure', 'AZURE_STORAGE_CONTAINER is required'],
    ['an invalid container name', { ...unreachable, AZURE_STORAGE_CONTAINER: 'Has--Caps' }, 'azure', 'AZURE_STORAGE_CONTAINER "Has--Caps" is not a valid container name'],
    ['no Azure account at all', without(unreachable, 'AZURE_STORAGE_CONNECTION_STRING'), 'azure', 'AZURE_STORAGE_ACCOUNT_URL or AZURE_STORAGE_CONNECTION_STRING is required'],
    ['a connection string that is not one', { ...unreachable, AZURE_STORAGE_CONNECTION_STRING: 'hello' }, 'azure', 'AZURE_STORAGE_CONNECTION_STRING is not a storage connection string'],
    ['a non-number concurrency', { ...unreachable, SYNC_CONCURRENCY: 'lots' }, 'all', 'SYNC_CONCURRENCY "lots" is not a whole number from 1 to 64'],
    ['a concurrency out of range', { ...unreachable, SYNC_CONCURRENCY: '0' }, 'all', 'SYNC_CONCURRENCY "0" is not a whole number from 1 to 64'],
    ['an unknown transfer mode', { ...unreachable, SYNC_TRANSFER_MODE: 'fast' }, 'all', 'SYNC_TRANSFER_MODE "fast" must be one of auto, server-side, streaming'],
    ['a non-boolean flag', { ...unreachable, SYNC_ALLOW_EMPTY_SOURCE: 'maybe' }, 'all', 'SYNC_ALLOW_EMPTY_SOURCE "maybe" must be true or false'],
    ['a percentage over 100', { ...unreachable, SYNC_MAX_DELETE_PERCENT: '150' }, 'all', 'SYNC_MAX_DELETE_PERCENT "150" is not a whole number from 0 to 100'],
    ['a part size above the memory budget', { ...unreachable, SYNC_PART_SIZE_MB: '64', SYNC_MEMORY_MB: '32' }, 'all', 'SYNC_MEMORY_MB (32) must be at least SYNC_PART_SIZE_MB (64)'],
    // The lock blobs would show up as extra objects of the mirror, and the leased one could never be deleted.
    ['the lock container being the mirror\'s container', { ...unreachable, AZURE_STORAGE_CONTAINER: 'mirror', SYNC_LOCK_CONTAINER: 'mirror' }, 'azure', 'SYNC_LOCK_CONTAINER "mirror" is the mirror\'s own container (AZURE_STORAGE_CONTAINER)'],
    ['the same, on an OCI-only run', { ...unreachable, AZURE_STORAGE_CONTAINER: 'mirror', SYNC_LOCK_CONTAINER: 'mirror' }, 'oci', 'SYNC_LOCK_CONTAINER "mirror" is the mirror\'s own container'],
    ['a retry budget out of range', { ...unreachable, SYNC_RETRY_BUDGET_SECONDS: '-1' }, 'all', 'SYNC_RETRY_BUDGET_SECONDS "-1" is not a whole number from 0 to 3600'],
    ['a deferral limit of 0', { ...unreachable, SYNC_MAX_DEFERRED_RUNS: '0' }, 'all', 'SYNC_MAX_DEFERRED_RUNS "0" is not a whole number from 1 to 1000'],
    ['a non-boolean archived setting', { ...unreachable, SYNC_FAIL_ON_ARCHIVED: 'sometimes' }, 'all', 'SYNC_FAIL_ON_ARCHIVED "sometimes" must be true or false'],
  ];
  for (const [what, settings, provider, message] of cases) {
    it(`${what}`, async () => {
      const result = await runCli([provider], settings);
      expect(result.stderr).toContain(message);
      expect(result.exitCode).toBe(2);
    });
  }

  it('lists every problem at once', async () => {
    const result = await runCli(['all'], { ...without(unreachable, 'AWS_S3_BUCKET', 'OCI_BUCKET'), SYNC_CONCURRENCY: 'x' });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain('AWS_S3_BUCKET is required');
    expect(result.stderr).toContain('OCI_BUCKET is required');
    expect(result.stderr).toContain('SYNC_CONCURRENCY "x"');
  });

  it('requires only the chosen provider\'s settings', async () => {
    const azureOnly = { ...without(unreachable, 'OCI_S3_ENDPOINT', 'OCI_REGION', 'OCI_BUCKET', 'OCI_ACCESS_KEY_ID', 'OCI_SECRET_KEY'), SYNC_RETRY_ATTEMPTS: '1' };
    const result = await runCli(['azure'], azureOnly);
    // Valid settings for azure: it gets as far as the (closed) endpoints, which is a run failure, not a usage error.
    expect(result.exitCode).toBe(1);
    expect(result.stderr).not.toContain('OCI_');
  });
});

interface ProcessResult {
  readonly exitCode: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function runProcess(command: string, args: readonly string[], env: Record<string, string>): Promise<ProcessResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: repoRoot, env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/tmp', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (exitCode) => resolve({ exitCode, stdout, stderr }));
  });
}

const nodeBinary = process.execPath;
const denoBinary = fileURLToPath(new URL('../node_modules/.bin/deno', import.meta.url));

// `dist/bin/cli.js` is what `npx artifacts-sync` runs: the CLI bundled by `npm run build` (which `npm test` runs first).
describe.each([
  ['Node', nodeBinary, ['src/cli.ts']],
  ['Node, as the bundled bin', nodeBinary, ['dist/bin/cli.js']],
  ['Deno', denoBinary, ['run', '--allow-all', 'src/cli.ts']],
])('the artifacts-sync process on %s', (_runtime, command, prefix) => {
  it('exits 2 for an unknown provider', async () => {
    const result = await runProcess(command, [...prefix, 'gcp'], {});
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain('choose one of all, azure, oci');
  });

  it('mirrors a bucket to both targets, exits 0, and prints a JSON report', async () => {
    const s = await scenario();
    await putSource(s, 'runtime/app.zip', 'zip bytes', 'application/zip');
    await putSource(s, 'runtime/ünï.txt', 'unicode', 'text/plain');
    const result = await runProcess(command, [...prefix, 'all', '--json'], s.settings);
    expect(result.exitCode, result.stderr).toBe(0);
    const report = JSON.parse(result.stdout) as RunReport;
    expect(report.complete).toBe(true);
    expect(report.targets.map((target) => target.copied)).toEqual([2, 2]);
    const state = await readAll(s);
    expect(mirrorDifferences(state.source, state.azure)).toEqual([]);
    expect(mirrorDifferences(state.source, state.oci)).toEqual([]);
  });
});
