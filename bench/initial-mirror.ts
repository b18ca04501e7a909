/**
 * Scenario 1: the first mirror of a source of many 1 MiB objects and one large one, to Azure and to
 * OCI separately. Each contender gets a fresh, empty target; wall time, peak RSS and CPU time of the
 * process, and afterwards every object is read back from the target.
 */
import { TARGET_NAMES, type TargetName } from '../src/core/types.ts';
import { createScenario, pseudoRandomBytes } from '../test/support/scenario.ts';
import { mirrorCommand, type Contender, type RunSetup } from './contenders.ts';
import { EMULATOR_NAMES, checkTarget, emulatorsTotalMs, runContender, verdict, type BenchContext, type EmulatorName, type MirrorRun, type ScenarioOutcome, type Verdict } from './context.ts';
import { describeCheck, freshTargets, listBucket, removeTargets, seedBucket, type SeedObject } from './fixtures.ts';
import { megabytes, ratio, renderTable, seconds } from './table.ts';

const MIB = 1024 * 1024;

export interface InitialMirrorSize {
  readonly smallObjects: number;
  readonly largeObjectBytes: number;
}

export interface InitialMirrorData {
  readonly smallObjects: number;
  readonly smallObjectBytes: number;
  readonly largeObjectBytes: number;
  readonly runs: readonly MirrorRun[];
}

/** Our peak RSS while streaming the large object must stay under this. */
const RSS_GOAL_BYTES = 200_000_000;
/** Our wall time at most this fraction of rclone's. */
const WALL_GOAL_RATIO = 0.8;

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
  const runs: MirrorRun[] = [];
  for (const [round, target] of TARGET_NAMES.entries()) {
    // Alternating who goes first (ours on Azure, rclone on OCI) keeps a slow start or a warm cache from favouring one side.
    for (const contender of round % 2 === 0 ? contenders : [...contenders].reverse()) {
      const pair = await freshTargets(context.emulators, 'bench-initial');
      context.progress(`initial mirror: ${contender} -> ${target}`);
      const run = await runContender(mirrorCommand(contender, target, setup, pair, context.direct), contender, target, context.emulatorProcesses);
      // Every object is read back: a mirror that only looks right by its listing is not a mirror.
      runs.push({ ...run, check: await checkTarget(context, setup, target, pair, source.keys(), source) });
      await removeTargets(context.s3, context.blobs, pair);
    }
  }
  scenario.s3.destroy();

  const data: InitialMirrorData = { smallObjects: size.smallObjects, smallObjectBytes: MIB, largeObjectBytes: size.largeObjectBytes, runs };
  return { text: render(data, context.rclone), verdicts: verdicts(data, context.rclone), data };
}

function find(runs: readonly MirrorRun[], contender: Contender, target: TargetName): MirrorRun | undefined {
  return runs.find((run) => run.contender === contender && run.target === target);
}

function render(data: InitialMirrorData, rclone: boolean): string {
  const totalMib = (data.smallObjects * data.smallObjectBytes + data.largeObjectBytes) / MIB;
  const rows: string[][] = [];
  for (const target of TARGET_NAMES) {
    const ours = find(data.runs, 'ours', target);
    const theirs = find(data.runs, 'rclone', target);
    rows.push([`${target}  wall time`, seconds(ours?.wallMs), rclone ? seconds(theirs?.wallMs) : 'not installed', ratio(ours?.wallMs, theirs?.wallMs)]);
    rows.push([`${target}  peak RSS`, megabytes(ours?.peakRssBytes), rclone ? megabytes(theirs?.peakRssBytes) : '-', ratio(ours?.peakRssBytes, theirs?.peakRssBytes)]);
    rows.push([`${target}  CPU time (user+sys)`, seconds(ours?.cpuMs), rclone ? seconds(theirs?.cpuMs) : '-', ratio(ours?.cpuMs, theirs?.cpuMs)]);
    for (const emulator of target === 'azure' ? (['s3rver', 'azurite'] as const) : (['s3rver'] as const)) {
      rows.push([`${target}  ${emulator} JS thread busy`, emulatorBusy(ours, emulator), rclone ? emulatorBusy(theirs, emulator) : '-', '']);
      rows.push([`${target}  ${emulator} CPU, all threads`, emulatorAllThreads(ours, emulator), rclone ? emulatorAllThreads(theirs, emulator) : '-', '']);
    }
    rows.push([`${target}  cores busy (tool + emulators)`, coresBusy(ours), rclone ? coresBusy(theirs) : '-', '']);
    rows.push([`${target}  exit code`, String(ours?.exitCode ?? '-'), theirs === undefined ? '-' : String(theirs.exitCode), '']);
    rows.push([`${target}  result`, ours?.check === undefined ? '-' : describeCheck(ours.check), theirs?.check === undefined ? '-' : describeCheck(theirs.check), '']);
    if (ours?.ours?.mode !== undefined) rows.push([`${target}  our transfer mode`, ours.ours.mode, '', '']);
  }
  const notes = data.runs.flatMap((run) => [
    ...(run.ours === undefined ? [] : [`  ours -> ${run.target}, timeline: ${run.ours.timeline}`]),
    ...(run.ours?.notes ?? []).map((note) => `  ours -> ${run.target}, report note: ${note}`),
    ...(run.errorOutput === undefined ? [] : [`  ${run.contender} -> ${run.target} failed (exit ${run.exitCode}):\n${indent(run.errorOutput)}`]),
  ]);
  return [
    `1. Initial mirror: ${data.smallObjects} x 1 MiB + 1 x ${data.largeObjectBytes / MIB} MiB (${totalMib} MiB), each contender into a fresh empty target${rclone ? ' (Azure: ours first; OCI: rclone first)' : ''}`,
    renderTable(['', 'ours', 'rclone', 'ours/rclone'], rows),
    ...notes,
  ].join('\n');
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
  const list: Verdict[] = [];
  for (const target of TARGET_NAMES) {
    const ours = find(data.runs, 'ours', target);
    const theirs = find(data.runs, 'rclone', target);
    const oursOk = ours !== undefined && ours.exitCode === 0 && ours.check?.exact === true;
    const wallRatio = ours !== undefined && theirs !== undefined ? ours.wallMs / theirs.wallMs : undefined;
    list.push(
      verdict(
        'initial mirror',
        `${target}: wall time <= ${WALL_GOAL_RATIO} x rclone's`,
        !rclone ? `ours ${seconds(ours?.wallMs)}; rclone not installed` : `${seconds(ours?.wallMs)} vs ${seconds(theirs?.wallMs)} = ${ratio(ours?.wallMs, theirs?.wallMs)}${oursOk ? '' : ' (our mirror is not exact)'}${busiestEmulator(ours, theirs)}`,
        wallRatio === undefined ? undefined : oursOk && wallRatio <= WALL_GOAL_RATIO,
      ),
    );
    list.push(
      verdict(
        'initial mirror',
        `${target}: our peak RSS < ${megabytes(RSS_GOAL_BYTES)}`,
        megabytes(ours?.peakRssBytes, 1),
        ours?.peakRssBytes === undefined ? undefined : ours.peakRssBytes < RSS_GOAL_BYTES,
      ),
    );
  }
  return list;
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((line) => `    ${line}`)
    .join('\n');
}
