/**
 * Local stand-ins for the three stores, shared by the tests, the demo and the benchmark:
 * Azurite (Azure Blob) and s3rver (AWS S3, and OCI through its S3-compatible API).
 *
 * Each emulator runs as a child process so a hung or crashed emulator cannot take the caller with it.
 * A child is stopped by its own PID; it also dies when the parent exits (an 'exit' handler here) or is
 * killed outright (./exit-with-parent.ts watches the stdin pipe), so no emulator outlives a test run.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { BlobServiceClient } from '@azure/storage-blob';

/** Where a running Azurite blob and queue service answer. Plain data: it can cross to a test worker or a child process. */
export interface AzuriteCoordinates {
  /** `http://127.0.0.1:PORT/devstoreaccount1` */
  blobEndpoint: string;
  /** The queue service, `http://127.0.0.1:PORT/devstoreaccount1` (its own port). */
  queueEndpoint: string;
  /** A SharedKey connection string for `BlobServiceClient.fromConnectionString` (and `QueueServiceClient`'s). */
  connectionString: string;
  accountName: string;
  accountKey: string;
}

/** Where a running s3rver answers, and the credentials it accepts. Plain data. */
export interface S3ServerCoordinates {
  /** `http://127.0.0.1:PORT`; clients must use path-style addressing. */
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
}

/** Both emulators' coordinates, as vitest's global setup provides them to test files. */
export interface EmulatorCoordinates {
  azurite: AzuriteCoordinates;
  s3: S3ServerCoordinates;
}

export interface AzuriteHandle extends AzuriteCoordinates {
  /** The blob service's process. */
  pid: number;
  /** The queue service's process. */
  queuePid: number;
  /** Ends the process (SIGTERM, SIGKILL after 3 s), waits for it and removes its work directory. Idempotent. */
  stop(): Promise<void>;
}

export interface S3ServerHandle extends S3ServerCoordinates {
  pid: number;
  /** Ends the process (SIGTERM, SIGKILL after 3 s), waits for it and removes its data directory. Idempotent. */
  stop(): Promise<void>;
}

export interface EmulatorsHandle {
  azurite: AzuriteHandle;
  s3: S3ServerHandle;
  /** The plain-data view of both handles. */
  coordinates: EmulatorCoordinates;
  stop(): Promise<void>;
}

/** Azurite's well-known development account; it is public and accepted by Azurite only. */
const AZURITE_ACCOUNT_NAME = 'devstoreaccount1';
const AZURITE_ACCOUNT_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

const READY_TIMEOUT_MS = 20_000;
const STOP_GRACE_MS = 3_000;
const OUTPUT_TAIL_LINES = 30;

/** Source (.ts, run with type stripping) or compiled (.js under dist/): the sibling scripts share our extension. */
const ownExtension = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
const siblingScript = (name: string): URL => new URL(`./${name}${ownExtension}`, import.meta.url);

/** Starts Azurite's blob and queue services (in-memory, two processes, no table) on free ports. */
export async function startAzurite(): Promise<AzuriteHandle> {
  const [blob, queue] = await Promise.allSettled([startAzuriteService('blob'), startAzuriteService('queue')]);
  if (blob.status === 'rejected' || queue.status === 'rejected') {
    await Promise.all([blob, queue].map((started) => (started.status === 'fulfilled' ? started.value.stop() : undefined)));
    throw blob.status === 'rejected' ? blob.reason : (queue as PromiseRejectedResult).reason;
  }
  const blobEndpoint = `http://127.0.0.1:${blob.value.port}/${AZURITE_ACCOUNT_NAME}`;
  const queueEndpoint = `http://127.0.0.1:${queue.value.port}/${AZURITE_ACCOUNT_NAME}`;
  return {
    blobEndpoint,
    queueEndpoint,
    connectionString:
      `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT_NAME};AccountKey=${AZURITE_ACCOUNT_KEY};` +
      `BlobEndpoint=${blobEndpoint};QueueEndpoint=${queueEndpoint};`,
    accountName: AZURITE_ACCOUNT_NAME,
    accountKey: AZURITE_ACCOUNT_KEY,
    pid: blob.value.pid,
    queuePid: queue.value.pid,
    stop: async () => {
      await Promise.all([blob.value.stop(), queue.value.stop()]);
    },
  };
}

/** One Azurite service as its own process: the blob service (`blob/main.js`) or the queue service (`queue/main.js`). */
function startAzuriteService(service: 'blob' | 'queue'): Promise<LaunchedChild> {
  const mainScript = createRequire(import.meta.url).resolve(`azurite/dist/src/${service}/main.js`);
  // Azurite refuses --location together with --inMemoryPersistence; in memory it writes nothing,
  // and running it inside its own temporary directory keeps anything it might write out of the repo.
  return launch({
    name: service === 'blob' ? 'azurite' : 'azurite-queue',
    args: [
      mainScript,
      `--${service}Host`, '127.0.0.1',
      `--${service}Port`, '0',
      '--inMemoryPersistence',
      '--skipApiVersionCheck', // current SDKs send an API version Azurite does not know yet
      '--disableTelemetry',
      '--silent', // no access log: on two cores it costs time and nobody reads it
    ],
    readyLine: /successfully listens on http:\/\/127\.0\.0\.1:(\d+)/,
  });
}

/** Starts s3rver on a free port, with its data in a temporary directory removed on stop. No buckets exist yet. */
export async function startS3Server(): Promise<S3ServerHandle> {
  const child = await launch({
    name: 's3rver',
    // s3rver encrypts ListObjectsV2 continuation tokens with DES: without the legacy provider every truncated page fails with 500.
    args: ['--openssl-legacy-provider', fileURLToPath(siblingScript('s3rver-process')), '<workDir>'],
    readyLine: /"event":"s3rver_listening","port":(\d+)/,
  });
  return {
    endpoint: `http://127.0.0.1:${child.port}`,
    region: 'us-east-1',
    accessKeyId: 'S3RVER',
    secretAccessKey: 'S3RVER',
    pid: child.pid,
    stop: child.stop,
  };
}

/** Starts Azurite and s3rver concurrently; if either fails, the other is stopped and the error is thrown. */
export async function startEmulators(): Promise<EmulatorsHandle> {
  const [azurite, s3] = await Promise.allSettled([startAzurite(), startS3Server()]);
  if (azurite.status === 'rejected' || s3.status === 'rejected') {
    await Promise.all([azurite, s3].map((started) => (started.status === 'fulfilled' ? started.value.stop() : undefined)));
    const reasons = [azurite, s3].flatMap((started) => (started.status === 'rejected' ? [started.reason] : []));
    throw reasons.length === 1 ? reasons[0] : new AggregateError(reasons, 'Azurite and s3rver both failed to start');
  }
  return {
    azurite: azurite.value,
    s3: s3.value,
    coordinates: { azurite: azuriteCoordinates(azurite.value), s3: s3ServerCoordinates(s3.value) },
    stop: async () => {
      await Promise.all([azurite.value.stop(), s3.value.stop()]);
    },
  };
}

/** An S3 client set up for s3rver: path-style addressing, and checksums only where required (see below). */
export function s3ClientFor(s3: S3ServerCoordinates): S3Client {
  return new S3Client({
    endpoint: s3.endpoint,
    region: s3.region,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    forcePathStyle: true,
    // The SDK's default (aws-chunked uploads with trailing checksums) is stored verbatim inside the object by s3rver.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

/** A SharedKey client for Azurite's development account. */
export function blobServiceClientFor(azurite: AzuriteCoordinates): BlobServiceClient {
  return BlobServiceClient.fromConnectionString(azurite.connectionString);
}

/** Creates the bucket and returns its name. */
export async function createBucket(s3: S3ServerCoordinates, name: string): Promise<string> {
  const client = s3ClientFor(s3);
  try {
    await client.send(new CreateBucketCommand({ Bucket: name }));
  } finally {
    client.destroy();
  }
  return name;
}

/** Creates the container and returns its name. */
export async function createContainer(azurite: AzuriteCoordinates, name: string): Promise<string> {
  await blobServiceClientFor(azurite).getContainerClient(name).create();
  return name;
}

/**
 * A fresh name valid both as an S3 bucket and as an Azure container: `<prefix>-<12 hex digits>`,
 * lowercase, at most 63 characters. The prefix must be lowercase letters and digits in hyphen-separated
 * words (Azure forbids `--`), at most 50 characters.
 */
export function uniqueName(prefix: string): string {
  if (!/^[a-z0-9]+(?:-[a-z0-9]+)*$/.test(prefix) || prefix.length > 50) {
    throw new Error(`uniqueName: prefix ${JSON.stringify(prefix)} must be 1-50 characters of a-z, 0-9 and single inner hyphens`);
  }
  return `${prefix}-${randomBytes(6).toString('hex')}`;
}

function azuriteCoordinates(handle: AzuriteCoordinates): AzuriteCoordinates {
  const { blobEndpoint, queueEndpoint, connectionString, accountName, accountKey } = handle;
  return { blobEndpoint, queueEndpoint, connectionString, accountName, accountKey };
}

function s3ServerCoordinates(handle: S3ServerCoordinates): S3ServerCoordinates {
  const { endpoint, region, accessKeyId, secretAccessKey } = handle;
  return { endpoint, region, accessKeyId, secretAccessKey };
}

// ---------------------------------------------------------------------------------------------------
// Child process plumbing

interface LaunchOptions {
  /** Used in errors and log lines. */
  name: string;
  /** Arguments after the Node flags; the string `<workDir>` is replaced by the temporary work directory. */
  args: string[];
  /** Matched against each output line; group 1 is the port the emulator listens on. */
  readyLine: RegExp;
}

interface LaunchedChild {
  pid: number;
  port: number;
  stop(): Promise<void>;
}

/** Children still running, with their work directories: the 'exit' handler's list. */
const runningChildren = new Map<ChildProcess, string>();
let exitHandlerInstalled = false;

function killRunningChildrenOnExit(): void {
  // Only synchronous work is possible in an 'exit' handler.
  for (const [child, workDir] of runningChildren) {
    child.kill('SIGKILL');
    rmSync(workDir, { recursive: true, force: true });
  }
  runningChildren.clear();
}

async function launch(options: LaunchOptions): Promise<LaunchedChild> {
  // ./exit-with-parent.ts removes only directories named like this, directly in the temporary directory.
  const workDir = await mkdtemp(join(tmpdir(), `artifacts-sync-${options.name}-`));
  const args = options.args.map((arg) => (arg === '<workDir>' ? workDir : arg));
  const child = spawn(process.execPath, ['--import', siblingScript('exit-with-parent').href, ...args], {
    cwd: workDir,
    stdio: ['pipe', 'pipe', 'pipe'],
    // The parent's NODE_OPTIONS (a debugger, a loader) is not meant for the emulator.
    env: { ...process.env, NODE_OPTIONS: '', EMULATOR_WORK_DIR: workDir },
  });
  if (!exitHandlerInstalled) {
    process.once('exit', killRunningChildrenOnExit);
    exitHandlerInstalled = true;
  }
  runningChildren.set(child, workDir);

  const outputTail: string[] = [];
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', () => resolve()); // a failed spawn never exits
  });
  let stopping = false;

  const port = await new Promise<number>((resolve, reject) => {
    let ready = false;
    const fail = (reason: string): void => {
      clearTimeout(timer);
      const output = outputTail.join('\n');
      reject(new Error(`${options.name} did not start: ${reason}${output ? `\n--- its output ---\n${output}` : ''}`));
    };
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      fail(`no ready line within ${READY_TIMEOUT_MS} ms`);
    }, READY_TIMEOUT_MS);
    const onLine = (line: string): void => {
      outputTail.push(line);
      if (outputTail.length > OUTPUT_TAIL_LINES) outputTail.shift();
      const match = ready ? null : options.readyLine.exec(line);
      if (match?.[1] !== undefined) {
        ready = true;
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    };
    forEachLine(child.stdout, onLine);
    forEachLine(child.stderr, onLine);
    child.once('error', (error) => fail(`spawn failed: ${error.message}`));
    child.once('exit', (code, signal) => {
      runningChildren.delete(child);
      if (!ready) fail(`exited with ${signal ?? `code ${code}`}`);
      else if (!stopping) {
        // Tests would then fail with connection errors; this line says why.
        process.stderr.write(`${JSON.stringify({ event: 'emulator_exited_unexpectedly', emulator: options.name, code, signal, output: outputTail.join('\n') })}\n`);
      }
    });
  }).catch(async (error: unknown) => {
    await exited;
    await rm(workDir, { recursive: true, force: true });
    throw error;
  });

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      stopping = true;
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const escalation = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
        await exited;
        clearTimeout(escalation);
      }
      runningChildren.delete(child);
      await rm(workDir, { recursive: true, force: true });
    })();
    return stopped;
  };

  if (child.pid === undefined) throw new Error(`${options.name}: no PID after start`);
  return { pid: child.pid, port, stop };
}

function forEachLine(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  let partial = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) onLine(line);
  });
}
