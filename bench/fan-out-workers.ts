/**
 * Scenario "fan-out-workers" (issue 13): the initial mirror's data, fanned out onto the object queue
 * by `artifacts-sync all --enqueue` and drained by 1, 2 and 4 concurrent `artifacts-sync work
 * --until-empty` processes, each N into fresh targets. Wall time from the start of the enqueue to
 * the last worker's exit, the CPU of the processes and of the emulators meanwhile, and afterwards
 * both targets read back and the run record's state (`artifacts-sync status <id>`).
 */
import { QueueServiceClient } from '@azure/storage-queue';
import { loadavg } from 'node:os';
import { TARGET_NAMES } from '../src/core/types.ts';
import { uniqueName } from '../test/support/emulators.ts';
import { createScenario } from '../test/support/scenario.ts';
import { CLI_PATH, mirrorCommand, type RunSetup } from './contenders.ts';
import { EMULATOR_NAMES, checkTargets, emulatorsTotalMs, withEmulatorCpu, type BenchContext, type EmulatorName, type ScenarioOutcome, type TargetChecks } from './context.ts';
import { describeCheck, freshTargets, listBucket, removeTargets, seedBucket } from './fixtures.ts';
import { initialMirrorObjects, type InitialMirrorSize } from './initial-mirror.ts';
import { machineBusyMs, measure, type CommandToMeasure, type MeasuredRun, type ProcessCpuTime } from './measure.ts';
import { renderTable, seconds } from './table.ts';

const MIB = 1024 * 1024;
const WORKER_COUNTS = [1, 2, 4] as const;

export interface FanOutWorkersSize extends InitialMirrorSize {
  /** SYNC_FAN_OUT_KEYS_PER_MESSAGE: small enough that every worker count has messages to share. */
  readonly keysPerMessage: number;
}

export interface WorkersRun {
  readonly workers: number;
  /** Start of the enqueue to the exit of the last worker. */
  readonly wallMs: number;
  readonly enqueueWallMs: number;
  readonly enqueueCpuMs: number | undefined;
  /** User + system CPU of all workers together; undefined without GNU time. */
  readonly workersCpuMs: number | undefined;
  readonly exitCodes: readonly number[];
  readonly emulatorCpu: Partial<Record<EmulatorName, ProcessCpuTime>>;
  readonly checks: TargetChecks;
  /** `artifacts-sync status <id>` exit code: 0 complete, 1 incomplete, 4 still running. */
  readonly statusExitCode: number | undefined;
  /** The machine's 1-minute load average right after the workers: other work on the 2 cores. */
  readonly loadAfter: number;
  /** CPU time every core of the machine spent busy during the run, whoever ran: ours, the emulators and other work. */
  readonly machineBusyMs: number | undefined;
  /** What the enqueue's report said per target: how many transfers went into how many messages. */
  readonly enqueueNotes: readonly string[];
  readonly errorOutput?: string;
}

export interface FanOutWorkersData {
  readonly smallObjects: number;
  readonly largeObjectBytes: number;
  readonly keysPerMessage: number;
  readonly runs: readonly WorkersRun[];
}

export async function fanOutWorkers(context: BenchContext, size: FanOutWorkersSize): Promise<ScenarioOutcome<FanOutWorkersData>> {
  const scenario = await createScenario(context.emulators, 'bench-workers');
  const setup: RunSetup = { s3: context.emulators.s3, azurite: context.emulators.azurite, baseSettings: scenario.settings, sourceBucket: scenario.sourceBucket };
  context.progress(`fan-out workers: seeding ${size.smallObjects} x 1 MiB + 1 x ${size.largeObjectBytes / MIB} MiB into s3://${scenario.sourceBucket}`);
  await seedBucket(scenario.s3, scenario.sourceBucket, initialMirrorObjects(size), 8);
  scenario.s3.destroy();
  const source = await listBucket(context.s3, scenario.sourceBucket);
  const queues = QueueServiceClient.fromConnectionString(context.emulators.azurite.connectionString);

  const runs: WorkersRun[] = [];
  for (const workers of WORKER_COUNTS) {
    const pair = await freshTargets(context.emulators, 'bench-workers');
    const queueName = uniqueName('bench-workers');
    const base = mirrorCommand('ours', 'all', setup, pair, context.direct);
    // Every N gets its own queue, so nothing left by an earlier N is drained by a later one.
    const env = { ...base.env, AzureWebJobsStorage: context.emulators.azurite.connectionString, SYNC_QUEUE_NAME: queueName, SYNC_FAN_OUT_MIN_TRANSFERS: '1', SYNC_FAN_OUT_KEYS_PER_MESSAGE: String(size.keysPerMessage) };
    const cli = (args: readonly string[]): CommandToMeasure => ({ command: base.command, args: [CLI_PATH, ...args], env });
    context.progress(`fan-out workers: enqueue, then ${workers} worker(s)`);
    const { result, emulatorCpu } = await withEmulatorCpu(context.emulatorProcesses, async () => {
      const started = performance.now();
      const busyBefore = await machineBusyMs();
      const enqueue = await measure(cli(['all', '--enqueue', '--json']));
      const drained = enqueue.exitCode === 0 ? await Promise.all(Array.from({ length: workers }, () => measure(cli(['work', '--until-empty'])))) : [];
      const busyAfter = await machineBusyMs();
      return { enqueue, drained, wallMs: performance.now() - started, machineBusyMs: busyBefore === undefined || busyAfter === undefined ? undefined : busyAfter - busyBefore };
    });
    const loadAfter = loadavg()[0] ?? 0;
    const { runId, notes } = enqueueReport(result.enqueue);
    const status = runId === undefined ? undefined : await measure(cli(['status', runId]));
    const checks = await checkTargets(context, setup, 'all', pair, source.keys(), source);
    await removeTargets(context.s3, context.blobs, pair);
    await Promise.all([queueName, `${queueName}-poison`].map((name) => queues.getQueueClient(name).deleteIfExists()));
    const failed = [result.enqueue, ...result.drained].find((run) => run.exitCode !== 0);
    runs.push({
      workers,
      wallMs: result.wallMs,
      enqueueWallMs: result.enqueue.wallMs,
      enqueueCpuMs: result.enqueue.cpuMs,
      workersCpuMs: sumOf(result.drained.map((run) => run.cpuMs)),
      exitCodes: [result.enqueue, ...result.drained].map((run) => run.exitCode),
      emulatorCpu,
      checks,
      statusExitCode: status?.exitCode,
      loadAfter,
      machineBusyMs: result.machineBusyMs,
      enqueueNotes: notes,
      ...(failed === undefined ? {} : { errorOutput: failed.stderr.split('\n').slice(-12).join('\n') }),
    });
  }

  const data: FanOutWorkersData = { smallObjects: size.smallObjects, largeObjectBytes: size.largeObjectBytes, keysPerMessage: size.keysPerMessage, runs };
  return { text: render(data), verdicts: [], data };
}

/** The run id and the targets' notes (`N transfer(s) enqueued in M message(s)`) from the enqueue's JSON report. */
function enqueueReport(enqueue: MeasuredRun): { runId: string | undefined; notes: string[] } {
  try {
    const report = JSON.parse(enqueue.stdout) as { runId?: unknown; targets?: { target?: unknown; notes?: unknown }[] };
    const notes = (report.targets ?? []).flatMap((target) => (Array.isArray(target.notes) ? target.notes.map((note) => `${String(target.target)}: ${String(note)}`) : []));
    return { runId: typeof report.runId === 'string' ? report.runId : undefined, notes };
  } catch {
    return { runId: undefined, notes: [] };
  }
}

function sumOf(values: readonly (number | undefined)[]): number | undefined {
  return values.some((value) => value === undefined) ? undefined : values.reduce<number>((sum, value) => sum + (value ?? 0), 0);
}

/** `12.3 s (97%)`: the emulator's CPU over all threads, and how much of the wall its JavaScript thread ran. */
function emulatorFigure(run: WorkersRun, emulator: EmulatorName): string {
  const cpu = run.emulatorCpu[emulator];
  return cpu === undefined ? '-' : `${seconds(cpu.totalMs)} (JS ${Math.round((100 * cpu.mainThreadMs) / run.wallMs)}%)`;
}

/** Cores kept busy by our processes and the emulators over the wall time, out of the machine's two. */
function coresBusy(run: WorkersRun): number | undefined {
  if (run.workersCpuMs === undefined || run.enqueueCpuMs === undefined) return undefined;
  return (run.workersCpuMs + run.enqueueCpuMs + emulatorsTotalMs(run.emulatorCpu)) / run.wallMs;
}

/** What held this N back, from the figures: a saturated emulator thread, or the cores. */
function cap(run: WorkersRun): string {
  const saturated = EMULATOR_NAMES.filter((name) => (run.emulatorCpu[name]?.mainThreadMs ?? 0) / run.wallMs >= 0.85);
  if (saturated.length > 0) return `${saturated.join(' + ')} JS thread saturated`;
  const machine = run.machineBusyMs === undefined ? undefined : run.machineBusyMs / run.wallMs;
  const ours = coresBusy(run);
  if (machine !== undefined && machine >= 1.7) return `the 2 cores: nearly all busy (${machine.toFixed(2)}), ${ours?.toFixed(2) ?? '-'} of it this run and its emulators, the rest other work`;
  return `not the cores (${machine?.toFixed(2) ?? '-'} of 2 busy): waits, not broken down here (a batch waits for its slowest message; idle workers poll)`;
}

function render(data: FanOutWorkersData): string {
  const first = data.runs[0];
  const rows = data.runs.map((run) => [
    String(run.workers),
    seconds(run.wallMs),
    first === undefined ? '-' : `${(first.wallMs / run.wallMs).toFixed(2)}×`,
    seconds(run.enqueueWallMs),
    seconds(run.workersCpuMs),
    emulatorFigure(run, 's3rver'),
    emulatorFigure(run, 'azurite'),
    coresBusy(run)?.toFixed(2) ?? '-',
    run.machineBusyMs === undefined ? '-' : (run.machineBusyMs / run.wallMs).toFixed(2),
    run.loadAfter.toFixed(1),
    TARGET_NAMES.map((target) => `${target} ${run.checks[target] === undefined ? '-' : describeCheck(run.checks[target])}`).join('; ') + `; status exit ${run.statusExitCode ?? '-'}`,
    cap(run),
  ]);
  const failures = data.runs.filter((run) => run.errorOutput !== undefined).map((run) => `  ${run.workers} worker(s): exit codes ${run.exitCodes.join(', ')}\n${run.errorOutput ?? ''}`);
  return [
    `Fan-out workers: ${data.smallObjects} x 1 MiB + 1 x ${data.largeObjectBytes / MIB} MiB to both targets, \`all --enqueue\` (SYNC_FAN_OUT_MIN_TRANSFERS=1, ${data.keysPerMessage} keys per message) then N concurrent \`work --until-empty\`, each N into fresh targets`,
    renderTable(['N', 'wall (enqueue → last worker)', 'speed-up', 'of which enqueue', 'workers CPU', 's3rver CPU', 'azurite CPU', 'cores busy (run)', 'cores busy (machine)', 'load (1 min)', 'result', 'what caps it'], rows, { leftOnly: true }),
    'Speed-up is N=1\'s wall over this N\'s. Cores busy (run) = (enqueue + workers + emulators CPU) / wall; (machine) = every process\'s CPU / wall (/proc/stat), out of the machine\'s 2 cores, which the emulators share with the workers (and with whatever else runs on it).',
    'Each worker takes up to 16 messages at a time (host.json batchSize), each with SYNC_CONCURRENCY transfers in flight: one worker alone already keeps many requests going.',
    ...data.runs.map((run) => `  ${run.workers} worker(s), enqueue: ${run.enqueueNotes.join('; ')}`),
    ...failures,
  ].join('\n');
}
