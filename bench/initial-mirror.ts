/**
 * Scenario 1: the first mirror of a source of many 1 MiB objects and one large one, to Azure, to OCI,
 * and to both in one run (`all`). Each contender gets fresh, empty targets; wall time, peak RSS and CPU
 * time of the process, and afterwards every object is read back from every target.
 */
import { targetsOf } from '../src/config.ts';
import { TARGET_NAMES, type ProviderChoice } from '../src/core/types.ts';
import { createScenario, pseudoRandomBytes } from '../test/support/scenario.ts';
import { mirrorCommand, type Contender, type RunSetup } from './contenders.ts';
import {
  EMULATOR_NAMES,
  checkTargets,
  emulatorsTotalMs,
  runContender,
  verdict,
  type BenchContext,
  type EmulatorName,
  type MirrorRun,
  type ScenarioOutcome,
  type TargetChecks,
  type Verdict,
} from './context.ts';
import { describeCheck, freshTargets, listBucket, removeTargets, seedBucket, type ListedObject, type SeedObject } from './fixtures.ts';
import type { ProcessCpuTime } from './measure.ts';
import { megabytes, perGib, ratio, renderTable, seconds } from './table.ts';

const MIB = 1024 * 1024;
const GIB = 1024 * MIB;

export interface InitialMirrorSize {
  readonly smallObjects: number;
  readonly largeObjectBytes: number;
}

/** One contender's mirror into fresh targets: one target, or both (`all`), each read back. */
export interface InitialMirrorRun extends MirrorRun {
  readonly checks: TargetChecks;
  /** CPU time (user+sys) in seconds per GiB of the source, which every run reads once (rclone's `all`: twice). */
  readonly cpuSecondsPerGib: number | undefined;
}

/** A run as measured and checked, before its CPU per GiB is worked out. */
type MirrorRunWithChecks = Omit<InitialMirrorRun, 'cpuSecondsPerGib'>;

export interface InitialMirrorData {
  readonly smallObjects: number;
  readonly smallObjectBytes: number;
  readonly largeObjectBytes: number;
  /** The source's bytes: read once per run, written once per target. */
  readonly sourceBytes: number;
  /** How rclone's `all` figures were taken. */
  readonly rcloneAll: string;
  readonly runs: readonly InitialMirrorRun[];
}

/** Each target alone, then both in one run. */
const GROUPS: readonly ProviderChoice[] = [...TARGET_NAMES, 'all'];

/** Our peak RSS while streaming the large object must stay at or under this. */
const RSS_GOAL_BYTES = 150_000_000;
/** Our wall time at most this fraction of rclone's. */
const WALL_GOAL_RATIO = 0.8;
/** Our CPU time (user+sys) at most this fraction of rclone's. */
const CPU_GOAL_RATIO = 1.0;

/** rclone syncs one destination per run: its `all` is its two runs of the same scenario, not run again. */
const RCLONE_ALL =
  'its azure and oci runs above, one after the other: walls and CPU times added, the larger peak RSS, the worse exit code (not run again: the same two commands into fresh targets on the same emulators; it reads the source twice)';

const NODE_FLOOR =
  'the least a Node program does for the same mirror (bench/node-floor.ts): list, GET each object and pipe it into one PUT per target (both at once for all), 16 at once, node:http only; no SDK, no hashing, no checks, lock or records. floor/rclone is what Node\'s HTTP allows here; ours/floor what the tool adds';

/** The source of the initial mirror: `smallObjects` x 1 MiB and one large object (also seeded by ./fan-out-workers.ts). */
export function initialMirrorObjects(size: InitialMirrorSize): SeedObject[] {
  return [
    ...Array.from({ length: size.smallObjects }, (_, index) => ({ key: `initial/small/object-${String(index).padStart(4, '0')}.bin`, body: () => pseudoRandomBytes(MIB, index + 1) })),
    { key: `initial/large-${size.largeObjectBytes / MIB}MiB.bin`, body: () => pseudoRandomBytes(size.largeObjectBytes, 424_242) },
  ];
}

export async function initialMirror(context: BenchContext, size: InitialMirrorSize): Promise<ScenarioOutcome<InitialMirrorData>> {
  const scenario = await createScenario(context.emulators, 'bench-initial');
  const setup: RunSetup = { s3: context.emulators.s3, azurite: context.emulators.azurite, baseSettings: scenario.settings, sourceBucket: scenario.sourceBucket };
  const objects = initialMirrorObjects(size);
  context.progress(`initial mirror: seeding ${size.smallObjects} x 1 MiB + 1 x ${size.largeObjectBytes / MIB} MiB into s3://${scenario.sourceBucket}`);
  await seedBucket(scenario.s3, scenario.sourceBucket, objects, 8);
  const source = await listBucket(context.s3, scenario.sourceBucket);

  const contenders: Contender[] = context.rclone ? ['ours', 'rclone'] : ['ours'];
  const runs: MirrorRunWithChecks[] = [];
  for (const [round, target] of TARGET_NAMES.entries()) {
    // Alternating who goes first (ours on Azure, rclone on OCI) keeps a slow start or a warm cache from favouring one side.
    for (const contender of round % 2 === 0 ? contenders : [...contenders].reverse()) runs.push(await mirrorIntoFreshTargets(context, setup, source, contender, target));
    runs.push(await mirrorIntoFreshTargets(context, setup, source, 'node floor', target));
  }
  runs.push(await mirrorIntoFreshTargets(context, setup, source, 'ours', 'all'));
  runs.push(await mirrorIntoFreshTargets(context, setup, source, 'node floor', 'all'));
  const rcloneRuns = runs.filter((run) => run.contender === 'rclone');
  if (rcloneRuns.length > 0) runs.push(oneAfterTheOther(rcloneRuns));
  scenario.s3.destroy();

  const sourceBytes = [...source.values()].reduce((sum, object) => sum + object.size, 0);
  const data: InitialMirrorData = {
    smallObjects: size.smallObjects,
    smallObjectBytes: MIB,
    largeObjectBytes: size.largeObjectBytes,
    sourceBytes,
    rcloneAll: RCLONE_ALL,
    runs: runs.map((run) => ({ ...run, cpuSecondsPerGib: run.cpuMs === undefined ? undefined : run.cpuMs / 1000 / (sourceBytes / GIB) })),
  };
  return { text: render(data, context.rclone), verdicts: verdicts(data, context.rclone), data };
}

/** One measured run into fresh targets; then every object is read back from each target and the targets removed. */
async function mirrorIntoFreshTargets(context: BenchContext, setup: RunSetup, source: Map<string, ListedObject>, contender: Contender, provider: ProviderChoice): Promise<MirrorRunWithChecks> {
  const pair = await freshTargets(context.emulators, 'bench-initial');
  context.progress(`initial mirror: ${contender} -> ${provider}`);
  const run = await runContender(mirrorCommand(contender, provider, setup, pair, context.direct), contender, provider, context.emulatorProcesses);
  // Every object is read back: a mirror that only looks right by its listing is not a mirror.
  const checks = await checkTargets(context, setup, provider, pair, source.keys(), source);
  await removeTargets(context.s3, context.blobs, pair);
  return { ...run, checks };
}

/** Single-target runs of one contender, made one after the other, as one `all` run. */
function oneAfterTheOther(runs: readonly MirrorRunWithChecks[]): MirrorRunWithChecks {
  const emulatorCpu: Partial<Record<EmulatorName, ProcessCpuTime>> = {};
  for (const name of EMULATOR_NAMES) {
    const times = runs.map((run) => run.emulatorCpu?.[name]);
    const totalMs = sumOf(times.map((time) => time?.totalMs));
    const mainThreadMs = sumOf(times.map((time) => time?.mainThreadMs));
    if (totalMs !== undefined && mainThreadMs !== undefined) emulatorCpu[name] = { totalMs, mainThreadMs };
  }
  const checks: TargetChecks = {};
  for (const run of runs) Object.assign(checks, run.checks);
  return {
    contender: runs[0]?.contender ?? 'rclone',
    target: 'all',
    wallMs: runs.reduce((sum, run) => sum + run.wallMs, 0),
    peakRssBytes: combined(runs.map((run) => run.peakRssBytes), Math.max),
    cpuMs: sumOf(runs.map((run) => run.cpuMs)),
    exitCode: runs.find((run) => run.exitCode !== 0)?.exitCode ?? 0,
    checks,
    emulatorCpu,
  };
}

function sumOf(values: readonly (number | undefined)[]): number | undefined {
  return combined(values, (a, b) => a + b);
}

/** The figures folded by `combine` from 0, or `undefined` when any figure is missing. */
function combined(values: readonly (number | undefined)[], combine: (a: number, b: number) => number): number | undefined {
  return values.reduce<number | undefined>((result, value) => (result === undefined || value === undefined ? undefined : combine(result, value)), 0);
}

function find(runs: readonly InitialMirrorRun[], contender: Contender, group: ProviderChoice): InitialMirrorRun | undefined {
  return runs.find((run) => run.contender === contender && run.target === group);
}

function render(data: InitialMirrorData, rclone: boolean): string {
  const sourceMib = data.sourceBytes / MIB;
  const rows: string[][] = [];
  for (const group of GROUPS) {
    const ours = find(data.runs, 'ours', group);
    const theirs = find(data.runs, 'rclone', group);
    const floor = find(data.runs, 'node floor', group);
    const measured = (label: string, figure: (run: InitialMirrorRun | undefined) => number | undefined, show: (value: number | undefined) => string, missing = '-'): string[] =>
      [`${group}  ${label}`, show(figure(ours)), rclone ? show(figure(theirs)) : missing, ratio(figure(ours), figure(theirs)), show(figure(floor)), ratio(figure(floor), figure(theirs)), ratio(figure(ours), figure(floor))];
    rows.push(measured('wall time', (run) => run?.wallMs, seconds, 'not installed'));
    rows.push(measured('peak RSS', (run) => run?.peakRssBytes, megabytes));
    rows.push(measured('CPU time (user+sys)', (run) => run?.cpuMs, seconds));
    rows.push(measured('CPU per GiB of the source', (run) => run?.cpuSecondsPerGib, perGib));
    for (const emulator of emulatorsOf(group)) {
      rows.push([`${group}  ${emulator} JS thread busy`, emulatorBusy(ours, emulator), rclone ? emulatorBusy(theirs, emulator) : '-', '', emulatorBusy(floor, emulator), '', '']);
      rows.push([`${group}  ${emulator} CPU, all threads`, emulatorAllThreads(ours, emulator), rclone ? emulatorAllThreads(theirs, emulator) : '-', '', emulatorAllThreads(floor, emulator), '', '']);
    }
    rows.push([`${group}  cores busy (tool + emulators)`, coresBusy(ours), rclone ? coresBusy(theirs) : '-', '', coresBusy(floor), '', '']);
    rows.push([`${group}  exit code`, String(ours?.exitCode ?? '-'), theirs === undefined ? '-' : String(theirs.exitCode), '', String(floor?.exitCode ?? '-'), '', '']);
    for (const target of targetsOf(group)) {
      const result = (run: InitialMirrorRun | undefined): string => (run?.checks[target] === undefined ? '-' : describeCheck(run.checks[target]));
      rows.push([`${group}  result${group === target ? '' : ` ${target}`}`, result(ours), result(theirs), '', result(floor), '', '']);
    }
    if (ours?.ours?.mode !== undefined) rows.push([`${group}  our transfer mode`, ours.ours.mode, '', '', '', '', '']);
  }
  const notes = data.runs.flatMap((run) => [
    ...(run.ours === undefined ? [] : [`  ours -> ${run.target}, timeline: ${run.ours.timeline}`]),
    ...(run.ours?.notes ?? []).map((note) => `  ours -> ${run.target}, report note: ${note}`),
    ...(run.errorOutput === undefined ? [] : [`  ${run.contender} -> ${run.target} failed (exit ${run.exitCode}):\n${indent(run.errorOutput)}`]),
  ]);
  return [
    `1. Initial mirror: ${data.smallObjects} x 1 MiB + 1 x ${data.largeObjectBytes / MIB} MiB (${sourceMib} MiB), each contender into fresh empty targets${rclone ? ' (azure: ours first; oci: rclone first)' : ''}`,
    renderTable(['', 'ours', 'rclone', 'ours/rclone', 'node floor', 'floor/rclone', 'ours/floor'], rows),
    `  all: ours mirrors both targets in one run (reads ${sourceMib} MiB once, writes ${2 * sourceMib} MiB)${rclone ? `; rclone's all: ${data.rcloneAll}` : ''}`,
    `  CPU per GiB of the source: CPU time (user+sys) over the ${(data.sourceBytes / GIB).toFixed(3)} GiB of the source, counted once also for all`,
    `  node floor: ${NODE_FLOOR}`,
    ...notes,
  ].join('\n');
}

/** The emulators a run into `group` talks to: s3rver (the source, and OCI), Azurite when Azure is a target. */
function emulatorsOf(group: ProviderChoice): readonly EmulatorName[] {
  return targetsOf(group).includes('azure') ? EMULATOR_NAMES : ['s3rver'];
}

/** The share of the run's wall time the emulator's JavaScript thread ran, `97%`: near 100%, it set the pace. */
function busyShare(run: MirrorRun, emulator: EmulatorName): string | undefined {
  const ms = run.emulatorCpu?.[emulator]?.mainThreadMs;
  return ms === undefined ? undefined : `${Math.round((100 * ms) / run.wallMs)}%`;
}

/** How long the emulator's JavaScript thread ran during the run, and its share of the wall time. */
function emulatorBusy(run: MirrorRun | undefined, emulator: EmulatorName): string {
  const share = run === undefined ? undefined : busyShare(run, emulator);
  return share === undefined ? '-' : `${seconds(run?.emulatorCpu?.[emulator]?.mainThreadMs)} (${share} of wall)`;
}

/** The emulator's CPU over all its threads: its file I/O runs in Node's thread pool, so this is its share of the cores. */
function emulatorAllThreads(run: MirrorRun | undefined, emulator: EmulatorName): string {
  return seconds(run?.emulatorCpu?.[emulator]?.totalMs);
}

/** The CPU time of the tool and of every watched emulator over the wall time: how much of the machine's cores the run kept busy. */
function coresBusy(run: MirrorRun | undefined): string {
  if (run?.cpuMs === undefined || run.emulatorCpu === undefined) return '-';
  return ((run.cpuMs + emulatorsTotalMs(run.emulatorCpu)) / run.wallMs).toFixed(2);
}

/** `; s3rver's JS thread busy 97% / 95% of the walls`: the emulator that worked hardest during our run, in both runs. */
function busiestEmulator(ours: MirrorRun | undefined, theirs: MirrorRun | undefined): string {
  if (ours === undefined || theirs === undefined) return '';
  const busyMs = (run: MirrorRun, name: EmulatorName): number | undefined => run.emulatorCpu?.[name]?.mainThreadMs;
  const busiest = EMULATOR_NAMES.filter((name) => busyMs(ours, name) !== undefined).sort((a, b) => (busyMs(ours, b) ?? 0) - (busyMs(ours, a) ?? 0))[0];
  if (busiest === undefined) return '';
  return `; ${busiest}'s JS thread busy ${busyShare(ours, busiest) ?? '-'} / ${busyShare(theirs, busiest) ?? '-'} of the walls`;
}

function verdicts(data: InitialMirrorData, rclone: boolean): Verdict[] {
  return GROUPS.flatMap((group) => {
    const ours = find(data.runs, 'ours', group);
    const theirs = find(data.runs, 'rclone', group);
    const floor = find(data.runs, 'node floor', group);
    const oursExact = ours !== undefined && ours.exitCode === 0 && targetsOf(group).every((target) => ours.checks[target]?.exact === true);
    const against = { rclone, oursExact };
    return [
      versusRclone(`${group}: wall time <= ${WALL_GOAL_RATIO} x rclone's`, ours?.wallMs, theirs?.wallMs, WALL_GOAL_RATIO, against, busiestEmulator(ours, theirs)),
      versusRclone(`${group}: CPU time <= ${CPU_GOAL_RATIO.toFixed(1)} x rclone's`, ours?.cpuMs, theirs?.cpuMs, CPU_GOAL_RATIO, against, `; ${perGib(ours?.cpuSecondsPerGib)} vs ${perGib(theirs?.cpuSecondsPerGib)}; node floor ${seconds(floor?.cpuMs)} = ${ratio(floor?.cpuMs, theirs?.cpuMs)}`),
      verdict('initial mirror', `${group}: our peak RSS <= ${megabytes(RSS_GOAL_BYTES)}`, `${megabytes(ours?.peakRssBytes, 1)} (node floor ${megabytes(floor?.peakRssBytes, 1)})`, ours?.peakRssBytes === undefined ? undefined : ours.peakRssBytes <= RSS_GOAL_BYTES),
    ];
  });
}

/** Our time against rclone's, passed at or under `limit` x rclone's and only for an exact mirror; `detail` is appended to what was measured. */
function versusRclone(goal: string, oursMs: number | undefined, theirsMs: number | undefined, limit: number, against: { rclone: boolean; oursExact: boolean }, detail: string): Verdict {
  const observed = !against.rclone
    ? `ours ${seconds(oursMs)}; rclone not installed`
    : `${seconds(oursMs)} vs ${seconds(theirsMs)} = ${ratio(oursMs, theirsMs)}${against.oursExact ? '' : ' (our mirror is not exact)'}${detail}`;
  return verdict('initial mirror', goal, observed, oursMs === undefined || theirsMs === undefined ? undefined : against.oursExact && oursMs / theirsMs <= limit);
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((line) => `    ${line}`)
    .join('\n');
}
