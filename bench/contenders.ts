/**
 * The tools the benchmark compares, each turned into one command: our CLI as a child process (as a
 * user runs it) and rclone in its default and `--size-only` modes.
 */
import process from 'node:process';
import { fileURLToPath } from 'node:url';
import type { RunReport } from '../src/core/report.ts';
import type { TargetName } from '../src/core/types.ts';
import type { AzuriteCoordinates, S3ServerCoordinates } from '../test/support/emulators.ts';
import type { TargetPair } from './fixtures.ts';
import type { CommandToMeasure, MeasuredRun, TimedLine } from './measure.ts';
import type { FloorSettings } from './node-floor.ts';
import { rcloneSync } from './rclone.ts';

export const CONTENDERS = ['ours', 'rclone', 'rclone --size-only'] as const;
/** The tools, and the node floor (./node-floor.ts): a measuring stick for the initial mirror, not a tool. */
export type Contender = (typeof CONTENDERS)[number] | 'node floor';

/** Compiled (dist/bench/*.js): the bundled bin users run (dist/bin/cli.js); run from source (bench/*.ts): src/cli.ts. */
export const CLI_PATH = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? '../src/cli.ts' : '../bin/cli.js', import.meta.url));
const NODE_FLOOR_PATH = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? './node-floor.ts' : './node-floor.js', import.meta.url));

/** Where the tools send their requests: straight to the emulators, or to the counting proxies in front of them. */
export interface Endpoints {
  /** S3 endpoint of the source bucket. */
  readonly source: string;
  /** S3-compatible endpoint of the OCI bucket. */
  readonly oci: string;
  /** `http://host:port` of the Azure Blob service (the account name is appended). */
  readonly azure: string;
}

export interface RunSetup {
  readonly s3: S3ServerCoordinates;
  readonly azurite: AzuriteCoordinates;
  /** The settings `createScenario` gives, pointing at the source bucket. */
  readonly baseSettings: Readonly<Record<string, string>>;
  readonly sourceBucket: string;
}

/** The command that mirrors the source to `target` of `pair`, as `contender`; `all` (both targets in one run) is ours alone. */
export function mirrorCommand(contender: Contender, target: TargetName | 'all', setup: RunSetup, pair: TargetPair, endpoints: Endpoints): CommandToMeasure {
  const azureBlobEndpoint = `${endpoints.azure}/${setup.azurite.accountName}`;
  if (contender === 'ours') {
    const settings: Record<string, string> = {
      ...setup.baseSettings,
      AWS_S3_ENDPOINT: endpoints.source,
      OCI_S3_ENDPOINT: endpoints.oci,
      AZURE_STORAGE_CONNECTION_STRING: `DefaultEndpointsProtocol=http;AccountName=${setup.azurite.accountName};AccountKey=${setup.azurite.accountKey};BlobEndpoint=${azureBlobEndpoint};`,
      AZURE_STORAGE_CONTAINER: pair.container,
      OCI_BUCKET: pair.ociBucket,
    };
    return { command: process.execPath, args: [CLI_PATH, target, '--json'], env: { ...process.env, ...settings } };
  }
  if (contender === 'node floor') {
    const settings: FloorSettings = {
      source: `${endpoints.source}/${setup.sourceBucket}`,
      oci: `${endpoints.oci}/${pair.ociBucket}`,
      azure: `${azureBlobEndpoint}/${pair.container}`,
      s3Region: setup.s3.region,
      s3AccessKeyId: setup.s3.accessKeyId,
      s3SecretAccessKey: setup.s3.secretAccessKey,
      azureAccount: setup.azurite.accountName,
      azureAccountKey: setup.azurite.accountKey,
    };
    return { command: process.execPath, args: [NODE_FLOOR_PATH, target], env: { ...process.env, FLOOR_SETTINGS: JSON.stringify(settings) } };
  }
  const remotes = { sourceEndpoint: endpoints.source, ociEndpoint: endpoints.oci, azureBlobEndpoint, s3: setup.s3, azurite: setup.azurite };
  if (target === 'all') throw new Error('rclone syncs one destination per run');
  const destination = target === 'azure' ? `az:${pair.container}` : `oci:${pair.ociBucket}`;
  return rcloneSync(remotes, `src:${setup.sourceBucket}`, destination, contender === 'rclone --size-only' ? ['--size-only'] : []);
}

/** What our CLI's JSON report says about the targets of a run, and when its progress lines came. */
export interface OurRunSummary {
  /** `server-side` or `streaming` (`azure streaming, oci streaming` for both targets); absent when no JSON report was printed. */
  readonly mode?: string;
  readonly transferred?: number;
  readonly notes: readonly string[];
  readonly complete?: boolean;
  /** `listed 1.90 s, 51/200 4.07 s, ..., exit 9.61 s`: where the wall time went. */
  readonly timeline: string;
}

export function summarizeOurRun(run: MeasuredRun): OurRunSummary {
  const timeline = ourTimeline(run.stderrLines, run.wallMs);
  let report: RunReport;
  try {
    report = JSON.parse(run.stdout) as RunReport;
  } catch {
    return { notes: [], timeline };
  }
  const targets = report.targets;
  if (targets.length === 0) return { notes: [], timeline, complete: report.complete };
  return {
    mode: targets.map((target) => (targets.length === 1 ? target.mode : `${target.target} ${target.mode}`)).join(', '),
    transferred: targets.reduce((sum, target) => sum + target.copied + target.replaced, 0),
    notes: targets.flatMap((target) => target.notes),
    complete: report.complete,
    timeline,
  };
}

/** The moments of a run from its progress lines (./command-line.ts prints them on stderr). */
function ourTimeline(lines: readonly TimedLine[], wallMs: number): string {
  const at = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
  const steps: string[] = [];
  const listed = lines.filter((entry) => entry.line.startsWith('listed '));
  const lastListing = listed.at(-1);
  if (lastListing !== undefined) {
    const durations = listed.map((entry) => /: (\d+) objects in (\d+) ms$/.exec(entry.line)).map((match) => Number(match?.[2] ?? Number.NaN));
    steps.push(`listed ${at(lastListing.atMs)} (listings took ${durations.map((ms) => at(ms)).join(' + ')})`);
  }
  const progressLines = lines.flatMap((entry) => {
    const match = /^\[(\w+)\] (\d+\/\d+) transfers/.exec(entry.line);
    return match?.[1] === undefined || match[2] === undefined ? [] : [{ target: match[1], done: match[2], atMs: entry.atMs }];
  });
  // A run of both targets reports each: name the target then.
  const severalTargets = new Set(progressLines.map((progress) => progress.target)).size > 1;
  const seen = new Set<string>();
  for (const progress of progressLines) {
    const step = severalTargets ? `${progress.target} ${progress.done}` : progress.done;
    if (!seen.has(step)) steps.push(`${step} ${at(progress.atMs)}`);
    seen.add(step);
  }
  steps.push(`exit ${at(wallMs)}`);
  return steps.join(', ');
}
