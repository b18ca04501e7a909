/**
 * What registers with the Functions host, checked on the compiled output as the host loads it.
 *
 * The host cannot run here (`func` cannot be installed), so this stands in for its Node.js worker:
 * - src/functions is compiled with the project's tsconfig into a temporary app directory holding a copy
 *   of package.json and host.json, with node_modules linked (the shape of a deployment package);
 * - a child Node process installs a fake `@azure/functions-core` the way the worker installs the real
 *   one (a Proxy on Module.prototype.require, see setupCoreModule in azure-functions-nodejs-worker),
 *   expands package.json `main` and imports each file as the worker does for `"type": "module"`
 *   (in order, stopping at the first that throws), and records every `registerFunction(metadata, callback)`;
 * - it then calls the registered `sync` callback once, to show it is the real handler.
 */
import { execFile } from 'node:child_process';
import { copyFile, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const repo = fileURLToPath(new URL('..', import.meta.url));
let appDir: string;

/** Stands in for the worker's built-in module; the library finds it with require('@azure/functions-core'). */
const FAKE_CORE = `
const Module = require('node:module');
const registrations = [];
globalThis.registeredFunctions = registrations;
let programmingModel;
const coreApi = {
  version: '0.0.0-test',
  hostVersion: '0.0.0-test',
  registerHook: () => ({ dispose() {} }),
  setProgrammingModel: (model) => { programmingModel = model; },
  getProgrammingModel: () => programmingModel,
  registerFunction: (metadata, callback) => { registrations.push({ metadata, callback }); return { dispose() {} }; },
  Disposable: class { dispose() {} },
};
Module.prototype.require = new Proxy(Module.prototype.require, {
  apply(target, thisArg, args) {
    return args[0] === '@azure/functions-core' ? coreApi : Reflect.apply(target, thisArg, args);
  },
});
`;

/** Loads the app as the worker does, then reports what registered and what the registered HTTP callback answers. */
const WORKER = `
import { globSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const appDir = process.argv[2];
const packageJson = JSON.parse(readFileSync(join(appDir, 'package.json'), 'utf8'));
const files = globSync(packageJson.main, { cwd: appDir }).sort();
let loadError;
try {
  for (const file of files) await import(pathToFileURL(join(appDir, file)).href);
} catch (error) {
  loadError = error instanceof Error ? error.message : String(error);
}
const registrations = globalThis.registeredFunctions;
let probe;
const sync = registrations.find((entry) => entry.metadata.name === 'sync');
if (sync !== undefined) {
  const { HttpRequest, InvocationContext } = createRequire(join(appDir, 'package.json'))('@azure/functions');
  const request = new HttpRequest({ method: 'GET', url: 'http://localhost:7071/api/sync/gcp', params: { provider: 'gcp' } });
  const context = new InvocationContext({ invocationId: 'registration-probe', functionName: 'sync', logHandler: () => undefined });
  const response = await sync.callback(request, context);
  probe = { status: response.status, headers: response.headers, body: JSON.parse(response.body) };
}
process.stdout.write(JSON.stringify({ files, loadError, functions: registrations.map((entry) => entry.metadata), probe }));
`;

interface Binding {
  readonly type: string;
  readonly direction: string;
  readonly [field: string]: unknown;
}

interface Loaded {
  readonly files: string[];
  readonly loadError?: string;
  readonly functions: { readonly name: string; readonly bindings: Record<string, Binding> }[];
  readonly probe?: { status: number; headers: Record<string, string>; body: Record<string, unknown> };
}

beforeAll(async () => {
  appDir = await mkdtemp(join(tmpdir(), 'artifacts-sync-functions-app-'));
  await symlink(join(repo, 'node_modules'), join(appDir, 'node_modules'), 'dir');
  await copyFile(join(repo, 'package.json'), join(appDir, 'package.json'));
  await copyFile(join(repo, 'host.json'), join(appDir, 'host.json'));
  await writeFile(join(appDir, 'fake-functions-core.cjs'), FAKE_CORE);
  await writeFile(join(appDir, 'worker.mjs'), WORKER);
  await writeFile(join(appDir, 'tsconfig.json'), JSON.stringify({
    extends: join(repo, 'tsconfig.json'),
    compilerOptions: { rootDir: repo, outDir: join(appDir, 'dist'), sourceMap: false },
    include: [join(repo, 'src/functions')],
  }));
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  await run(process.execPath, [tsc, '-p', join(appDir, 'tsconfig.json')], { cwd: repo }).catch((error: { stdout?: string; message: string }) => {
    throw new Error(`tsc failed on src/functions: ${error.stdout || error.message}`);
  });
}, 180_000);

afterAll(async () => {
  await rm(appDir, { recursive: true, force: true });
});

/** Loads the compiled app in a fresh Node process with these app settings (and nothing else from this process). */
async function loadApp(settings: Record<string, string> = {}): Promise<Loaded> {
  const { stdout } = await run(process.execPath, ['--require', join(appDir, 'fake-functions-core.cjs'), join(appDir, 'worker.mjs'), appDir], {
    cwd: appDir,
    env: { PATH: process.env['PATH'] ?? '', ...settings },
  });
  return JSON.parse(stdout) as Loaded;
}

function triggerOf(loaded: Loaded, name: string): Binding {
  const registered = loaded.functions.find((entry) => entry.name === name);
  const trigger = Object.values(registered?.bindings ?? {}).find((binding) => binding.type.endsWith('Trigger'));
  if (trigger === undefined) throw new Error(`${name} is not registered with a trigger: ${JSON.stringify(loaded)}`);
  return trigger;
}

describe('what the compiled main files register with the host', () => {
  it('package.json main matches the compiled function files, and loading them registers exactly sync, syncTimer and verify', async () => {
    const loaded = await loadApp();

    expect(loaded.loadError).toBeUndefined();
    expect(loaded.files).toContain('dist/src/functions/register.js');
    expect(loaded.files.every((file) => /^dist\/src\/functions\/[\w-]+\.js$/.test(file))).toBe(true);
    expect(loaded.functions.map((entry) => entry.name).sort()).toEqual(['sync', 'syncTimer', 'verify']);
  });

  it('verify is an HTTP trigger on route verify/{provider}, needing a function key, for GET', async () => {
    const loaded = await loadApp();
    expect(triggerOf(loaded, 'verify')).toMatchObject({ type: 'httpTrigger', direction: 'in', route: 'verify/{provider}', authLevel: 'function', methods: ['GET'] });
  });

  it('sync is an HTTP trigger on route sync/{provider}, needing a function key, for GET and POST, answering through its return value', async () => {
    const loaded = await loadApp();
    const sync = loaded.functions.find((entry) => entry.name === 'sync');

    expect(triggerOf(loaded, 'sync')).toMatchObject({ type: 'httpTrigger', direction: 'in', route: 'sync/{provider}', authLevel: 'function', methods: ['GET', 'POST'] });
    expect(sync?.bindings['$return']).toMatchObject({ type: 'http', direction: 'out' });
  });

  it('without SYNC_SCHEDULE syncTimer runs hourly, on the hour', async () => {
    const loaded = await loadApp();

    expect(triggerOf(loaded, 'syncTimer')).toMatchObject({ type: 'timerTrigger', direction: 'in', schedule: '0 0 * * * *' });
    expect(triggerOf(loaded, 'syncTimer')['runOnStartup']).toBeUndefined();
  });

  it('SYNC_SCHEDULE sets the timer\'s schedule', async () => {
    const loaded = await loadApp({ SYNC_SCHEDULE: '0 */15 * * * *' });

    expect(triggerOf(loaded, 'syncTimer')).toMatchObject({ type: 'timerTrigger', schedule: '0 */15 * * * *' });
  });

  it('a malformed SYNC_SCHEDULE fails loading with a message naming the setting, and sync and verify are still registered', async () => {
    const loaded = await loadApp({ SYNC_SCHEDULE: '0 * * * *' });

    expect(loaded.loadError).toContain('SYNC_SCHEDULE "0 * * * *" is not an NCRONTAB schedule (5 fields instead of 6)');
    expect(loaded.functions.map((entry) => entry.name)).toEqual(['sync', 'verify']);
  });

  it('the registered sync callback is the real handler: an unknown provider answers 400 with the invocation id', async () => {
    const loaded = await loadApp();

    expect(loaded.probe).toMatchObject({
      status: 400,
      headers: { 'x-invocation-id': 'registration-probe' },
      body: { invocationId: 'registration-probe', error: expect.stringContaining('choose one of all, azure, oci') },
    });
  });
});

describe('host.json', () => {
  it('declares version 2.0, the extension bundle timer triggers need, and the function timeout the timer deadline is measured against', async () => {
    const host = JSON.parse(await readFile(join(repo, 'host.json'), 'utf8')) as Record<string, unknown>;
    const { FUNCTION_TIMEOUT } = await import('../src/functions/run-sync.ts');

    expect(host['version']).toBe('2.0');
    expect(host['extensionBundle']).toEqual({ id: 'Microsoft.Azure.Functions.ExtensionBundle', version: '[4.*, 5.0.0)' });
    expect(host['functionTimeout']).toBe(FUNCTION_TIMEOUT);
  });
});
