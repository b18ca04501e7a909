/** What every scenario is given, and the shapes of what it gives back. */
import type { S3Client } from '@aws-sdk/client-s3';
import type { BlobServiceClient } from '@azure/storage-blob';
import { targetsOf } from '../src/config.ts';
import type { ProviderChoice, TargetName } from '../src/core/types.ts';
import type { EmulatorCoordinates } from '../test/support/emulators.ts';
import { summarizeOurRun, type Contender, type Endpoints, type OurRunSummary, type RunSetup } from './contenders.ts';
import { checkMirror, listBucket, listContainer, blobByteReader, s3ByteReader, type ListedObject, type MirrorCheck, type TargetPair } from './fixtures.ts';
import { flushFileSystems, measure, processCpuTime, type CommandToMeasure, type ProcessCpuTime } from './measure.ts';
import type { RequestCounts } from './request-counts.ts';

export interface BenchContext {
  readonly emulators: EmulatorCoordinates;
  readonly s3: S3Client;
  readonly blobs: BlobServiceClient;
  /** Whether rclone is installed; without it only our figures are taken. */
  readonly rclone: boolean;
  /** The emulators themselves. */
  readonly direct: Endpoints;
  /** The emulators' processes, whose CPU time is taken around the runs that share them. */
  readonly emulatorProcesses: readonly EmulatorProcess[];
  /** Progress for the person waiting, on stderr. */
  readonly progress: (line: string) => void;
}

export const EMULATOR_NAMES = ['s3rver', 'azurite'] as const;
export type EmulatorName = (typeof EMULATOR_NAMES)[number];

export interface EmulatorProcess {
  readonly name: EmulatorName;
  readonly pid: number;
}

/** One measured run of one contender against one target, or both in one run (`all`). */
export interface MirrorRun {
  readonly contender: Contender;
  readonly target: ProviderChoice;
  readonly wallMs: number;
  readonly peakRssBytes: number | undefined;
  /** User plus system CPU time of the process. */
  readonly cpuMs: number | undefined;
  readonly exitCode: number;
  /** Requests per store, when the run went through the counting proxies. */
  readonly requests?: RequestCounts;
  /** The target after the run, compared with the source. */
  readonly check?: MirrorCheck;
  /** What our CLI's JSON report and progress lines said (our runs only). */
  readonly ours?: OurRunSummary;
  /** The end of stderr, kept when the run failed. */
  readonly errorOutput?: string;
  /** CPU time each watched emulator spent during the run: shows which process held the run back. */
  readonly emulatorCpu?: Partial<Record<EmulatorName, ProcessCpuTime>>;
}

/** One of the figures the issue sets, as measured. */
export interface Verdict {
  readonly scenario: string;
  readonly goal: string;
  readonly observed: string;
  readonly result: 'PASS' | 'FAIL' | 'NOT MEASURED';
}

export interface ScenarioOutcome<Data> {
  /** The printed section: title, table, notes, verdicts. */
  readonly text: string;
  readonly verdicts: readonly Verdict[];
  /** Everything measured, for the JSON file. */
  readonly data: Data;
}

export function verdict(scenario: string, goal: string, observed: string, pass: boolean | undefined): Verdict {
  return { scenario, goal, observed, result: pass === undefined ? 'NOT MEASURED' : pass ? 'PASS' : 'FAIL' };
}

/**
 * Runs one contender's command and records what every scenario keeps of it (the target check is added by the caller),
 * with the CPU time the `watched` emulators spent meanwhile.
 */
export async function runContender(command: CommandToMeasure, contender: Contender, target: ProviderChoice, watched: readonly EmulatorProcess[] = []): Promise<MirrorRun> {
  const { result: run, emulatorCpu } = await withEmulatorCpu(watched, () => measure(command));
  const ours = contender === 'ours' ? summarizeOurRun(run) : undefined;
  return {
    contender,
    target,
    wallMs: run.wallMs,
    peakRssBytes: run.peakRssBytes,
    cpuMs: run.cpuMs,
    exitCode: run.exitCode,
    ...(ours === undefined ? {} : { ours }),
    ...(run.exitCode === 0 ? {} : { errorOutput: run.stderr.split('\n').slice(-12).join('\n') }),
    ...(watched.length === 0 ? {} : { emulatorCpu }),
  };
}

/** Runs `work` (after flushing the file systems) and takes the CPU time the `watched` emulators spent meanwhile. */
export async function withEmulatorCpu<Result>(watched: readonly EmulatorProcess[], work: () => Promise<Result>): Promise<{ result: Result; emulatorCpu: Partial<Record<EmulatorName, ProcessCpuTime>> }> {
  // What earlier runs wrote to the emulators' files must not be flushed to disk during this one, at its cost.
  flushFileSystems();
  const before = await Promise.all(watched.map((emulator) => processCpuTime(emulator.pid)));
  const result = await work();
  const after = await Promise.all(watched.map((emulator) => processCpuTime(emulator.pid)));
  const emulatorCpu: Partial<Record<EmulatorName, ProcessCpuTime>> = {};
  for (const [index, emulator] of watched.entries()) {
    const [start, end] = [before[index], after[index]];
    if (start !== undefined && end !== undefined) emulatorCpu[emulator.name] = { totalMs: end.totalMs - start.totalMs, mainThreadMs: end.mainThreadMs - start.mainThreadMs };
  }
  return { result, emulatorCpu };
}

/** CPU time of every watched emulator together, all threads. */
export function emulatorsTotalMs(emulatorCpu: Partial<Record<EmulatorName, ProcessCpuTime>>): number {
  return EMULATOR_NAMES.reduce((sum, name) => sum + (emulatorCpu[name]?.totalMs ?? 0), 0);
}

/** Lists the source and the target and compares them; reads back the bytes of `keysToRead`. */
export async function checkTarget(context: BenchContext, setup: RunSetup, target: TargetName, pair: TargetPair, keysToRead: Iterable<string>, source?: Map<string, ListedObject>): Promise<MirrorCheck> {
  const sourceListing = source ?? (await listBucket(context.s3, setup.sourceBucket));
  const targetListing = target === 'azure' ? await listContainer(context.blobs, pair.container) : await listBucket(context.s3, pair.ociBucket);
  return checkMirror({
    source: sourceListing,
    target: targetListing,
    keysToRead,
    readSource: s3ByteReader(context.s3, setup.sourceBucket),
    readTarget: target === 'azure' ? blobByteReader(context.blobs, pair.container) : s3ByteReader(context.s3, pair.ociBucket),
  });
}

/** What each target of a run holds afterwards. */
export type TargetChecks = Partial<Record<TargetName, MirrorCheck>>;

/** `checkTarget` for every target of `provider` (both for `all`), reading back the same keys from each. */
export async function checkTargets(context: BenchContext, setup: RunSetup, provider: ProviderChoice, pair: TargetPair, keysToRead: Iterable<string>, source?: Map<string, ListedObject>): Promise<TargetChecks> {
  // An iterator (a Map's keys) reads once: every target needs the whole list.
  const keys = [...keysToRead];
  const checks: TargetChecks = {};
  for (const target of targetsOf(provider)) checks[target] = await checkTarget(context, setup, target, pair, keys, source);
  return checks;
}
