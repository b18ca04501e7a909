/**
 * `npm run bench [-- --quick] [-- --only <scenario>[,<scenario>]] [-- --out <file.json>]`
 *
 * Starts its own Azurite and s3rver, measures our CLI side by side with rclone on the same emulators
 * in the same run (ours first, then rclone, each into fresh targets), prints a table per scenario and
 * the issue's targets as PASS/FAIL, and stops the emulators. See "Benchmark" in README.md.
 */
import { writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import { relative } from 'node:path';
import process from 'node:process';
import { blobServiceClientFor, s3ClientFor, startEmulators } from '../test/support/emulators.ts';
import type { BenchContext, Verdict } from './context.ts';
import { eventsScenario } from './events.ts';
import { initialMirror } from './initial-mirror.ts';
import { CLI_PATH } from './contenders.ts';
import { RSS_METHOD, endRunningCommands, measure, type CommandToMeasure, type MeasuredRun } from './measure.ts';
import { plannerAlone } from './planner.ts';
import { fanOutPlan } from './fan-out-plan.ts';
import { fanOutWorkers } from './fan-out-workers.ts';
import { RCLONE_INSTALL_HINT, RCLONE_SYNC_FLAGS, rcloneVersion } from './rclone.ts';
import { steadyState } from './steady-state.ts';
import { megabytes, renderTable, seconds } from './table.ts';

const SCENARIOS = ['initial', 'noop', 'change', 'planner', 'events', 'fan-out-plan', 'fan-out-workers'] as const;
type ScenarioName = (typeof SCENARIOS)[number];

const MIB = 1024 * 1024;

/** Full size is what the issue asks for; `--quick` is a smoke run of the same code in about a minute. */
const SIZES = {
  full: { initial: { smallObjects: 200, largeObjectBytes: 256 * MIB }, steady: { objects: 10_000, noopRepeats: 5 }, plannerObjects: 1_000_000, events: { events: 200, burstRequests: 300 }, fanOutWorkers: { smallObjects: 200, largeObjectBytes: 256 * MIB, keysPerMessage: 5 } },
  quick: { initial: { smallObjects: 20, largeObjectBytes: 32 * MIB }, steady: { objects: 1_000, noopRepeats: 1 }, plannerObjects: 100_000, events: { events: 20, burstRequests: 60 }, fanOutWorkers: { smallObjects: 20, largeObjectBytes: 32 * MIB, keysPerMessage: 2 } },
} as const;

const USAGE = `Usage: npm run bench -- [--quick] [--only ${SCENARIOS.join('|')}[,...]] [--out results.json]

  --quick     small sizes, same code: a smoke run (targets are judged only at full size)
  --only      run only these scenarios (noop and change share their setup)
  --out FILE  also write every figure as JSON to FILE`;

interface BenchOptions {
  readonly quick: boolean;
  readonly only: ReadonlySet<ScenarioName>;
  readonly out: string | undefined;
}

function parseOptions(args: readonly string[]): BenchOptions | 'help' {
  let quick = false;
  let only: Set<ScenarioName> = new Set(SCENARIOS);
  let out: string | undefined;
  for (let index = 0; index < args.length; index += 1) {
    const arg = args[index];
    if (arg === '--help' || arg === '-h') return 'help';
    if (arg === '--quick') quick = true;
    else if (arg === '--only' || arg === '--out') {
      const value = args[index + 1];
      if (value === undefined || value.startsWith('--')) throw new Error(`${arg} needs a value\n\n${USAGE}`);
      index += 1;
      if (arg === '--out') out = value;
      else {
        const names = value.split(',').map((name) => name.trim());
        const unknown = names.filter((name) => !SCENARIOS.some((scenario) => scenario === name));
        if (unknown.length > 0) throw new Error(`unknown scenario ${unknown.join(', ')}: choose from ${SCENARIOS.join(', ')}\n\n${USAGE}`);
        only = new Set(SCENARIOS.filter((scenario) => names.includes(scenario)));
      }
    } else throw new Error(`unknown option ${JSON.stringify(arg)}\n\n${USAGE}`);
  }
  return { quick, only, out };
}

const print = (text: string): void => {
  process.stdout.write(`${text}\n`);
};

async function main(): Promise<number> {
  let options: BenchOptions | 'help';
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`bench: ${error instanceof Error ? error.message : String(error)}\n`);
    return 2;
  }
  if (options === 'help') {
    print(USAGE);
    return 0;
  }
  const sizes = options.quick ? SIZES.quick : SIZES.full;
  const rclone = rcloneVersion();
  const machine = {
    cpus: availableParallelism(),
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryBytes: totalmem(),
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
  };
  const startedAt = new Date();
  print(`artifacts-sync benchmark${options.quick ? ' (--quick: small sizes, targets not judged)' : ''}, ${startedAt.toISOString()}`);
  print(`machine: ${machine.cpus} cores (${machine.cpuModel}), ${Math.round(machine.memoryBytes / 2 ** 30)} GiB RAM, Node ${machine.node}; emulators: Azurite + s3rver on this machine`);
  print(`load average at start: ${describeLoad()}`);
  if (Number(process.versions.node.split('.')[0]) < 22) print(`WARNING: Node ${process.version}; the product needs Node >= 22 - run the benchmark with \`npm run bench\`, which uses node_modules/.bin/node`);
  print(`peer: ${rclone ?? `rclone NOT installed - only our figures are taken; install it with: ${RCLONE_INSTALL_HINT}`}`);
  if (rclone !== undefined) print(`rclone flags: sync ${RCLONE_SYNC_FLAGS.join(' ')} [--size-only]; ours: default settings (SYNC_CONCURRENCY 16, SYNC_MEMORY_MB 64)`);
  print(`peak RSS: ${RSS_METHOD}, the same for both tools; scenarios: ${[...options.only].join(', ')}`);
  const startup = await measureStartup(rclone !== undefined);
  print(`process start alone, median of 3: ours (node ${relative(process.cwd(), CLI_PATH)} --help) ${seconds(startup.ours.wallMs)}, ${megabytes(startup.ours.peakRssBytes)} RSS${startup.rclone === undefined ? '' : `; rclone version ${seconds(startup.rclone.wallMs)}, ${megabytes(startup.rclone.peakRssBytes)} RSS`}\n`);

  const benchStarted = performance.now();
  const progress = (line: string): void => {
    process.stderr.write(`  .. ${line} (${seconds(performance.now() - benchStarted)})\n`);
  };
  const verdicts: Verdict[] = [];
  const results: Record<string, unknown> = {};
  // The planner needs no emulators: it runs first, before they start, so nothing else runs beside it.
  const planner = options.only.has('planner') ? await plannerAlone(progress, sizes.plannerObjects) : undefined;
  const fanOut = options.only.has('fan-out-plan') ? await fanOutPlan(progress, sizes.plannerObjects) : undefined;
  if (fanOut !== undefined) {
    print(`${fanOut.text}\n`);
    verdicts.push(...fanOut.verdicts);
    results['fanOutPlan'] = fanOut.data;
  }
  const needsEmulators = [...options.only].some((scenario) => scenario !== 'planner' && scenario !== 'fan-out-plan');
  if (needsEmulators) {
    const emulators = await startEmulators();
    const s3 = s3ClientFor(emulators.coordinates.s3);
    const context: BenchContext = {
      emulators: emulators.coordinates,
      s3,
      blobs: blobServiceClientFor(emulators.coordinates.azurite),
      rclone: rclone !== undefined,
      direct: { source: emulators.coordinates.s3.endpoint, oci: emulators.coordinates.s3.endpoint, azure: new URL(emulators.coordinates.azurite.blobEndpoint).origin },
      emulatorProcesses: [{ name: 's3rver', pid: emulators.s3.pid }, { name: 'azurite', pid: emulators.azurite.pid }],
      progress,
    };

    try {
      if (options.only.has('initial')) {
        const outcome = await initialMirror(context, sizes.initial);
        print(`${outcome.text}\n`);
        verdicts.push(...outcome.verdicts);
        results['initialMirror'] = outcome.data;
      }
      if (options.only.has('noop') || options.only.has('change')) {
        const outcome = await steadyState(context, sizes.steady, { noop: options.only.has('noop'), change: options.only.has('change') });
        for (const part of [outcome.noop, outcome.change]) {
          if (part === undefined) continue;
          print(`${part.text}\n`);
          verdicts.push(...part.verdicts);
        }
        results['steadyState'] = outcome.data;
      }
      if (options.only.has('events')) {
        const outcome = await eventsScenario(context, sizes.events);
        print(`${outcome.text}\n`);
        verdicts.push(...outcome.verdicts);
        results['events'] = outcome.data;
      }
      if (options.only.has('fan-out-workers')) {
        const outcome = await fanOutWorkers(context, sizes.fanOutWorkers);
        print(`${outcome.text}\n`);
        results['fanOutWorkers'] = outcome.data;
      }
    } finally {
      s3.destroy();
      await emulators.stop();
    }
  }
  // Printed last, as scenario 4, though it ran first.
  if (planner !== undefined) {
    print(`${planner.text}\n`);
    verdicts.push(...planner.verdicts);
    results['planner'] = planner.data;
  }

  const judged = options.quick ? verdicts.map((entry) => ({ ...entry, result: 'NOT MEASURED' as const })) : verdicts;
  print(`Targets (initial mirror: issue 14; the others: issue 4)${options.quick ? ': not judged in --quick mode (sizes too small)' : ''}`);
  print(renderTable(['scenario', 'goal', 'measured', 'result'], judged.map((entry) => [entry.scenario, entry.goal, entry.observed, entry.result]), { leftOnly: true }));
  const failed = judged.filter((entry) => entry.result === 'FAIL').length;
  const passed = judged.filter((entry) => entry.result === 'PASS').length;
  print(`\n${passed} passed, ${failed} failed, ${judged.length - passed - failed} not measured; total bench time ${seconds(performance.now() - benchStarted)}; load average at the end: ${describeLoad()}`);

  if (options.out !== undefined) {
    const document = { startedAt: startedAt.toISOString(), quick: options.quick, machine, rclone: rclone ?? null, rcloneFlags: RCLONE_SYNC_FLAGS, rssMethod: RSS_METHOD, startup, results, targets: judged };
    await writeFile(options.out, `${JSON.stringify(document, null, 2)}\n`);
    print(`results written to ${options.out}`);
  }
  // Missed targets are findings, not errors: the benchmark itself succeeded.
  return 0;
}

/** Other work on the machine skews every figure: say how busy it was. */
function describeLoad(): string {
  const [one, five] = loadavg();
  const busy = (five ?? 0) > availableParallelism();
  return `${(one ?? 0).toFixed(1)} (1 min), ${(five ?? 0).toFixed(1)} (5 min)${busy ? ' - the machine is busy with other work: figures are noisier and slower than on an idle machine' : ''}`;
}

interface StartupFigures {
  readonly wallMs: number;
  readonly peakRssBytes: number | undefined;
}

/** What starting each tool costs before any request: part of every wall time and RSS figure below. */
async function measureStartup(withRclone: boolean): Promise<{ ours: StartupFigures; rclone?: StartupFigures }> {
  const medianOf = async (command: CommandToMeasure): Promise<StartupFigures> => {
    const runs: MeasuredRun[] = [];
    for (let attempt = 0; attempt < 3; attempt += 1) runs.push(await measure(command));
    const median = runs.sort((a, b) => a.wallMs - b.wallMs)[1]!;
    return { wallMs: median.wallMs, peakRssBytes: median.peakRssBytes };
  };
  const ours = await medianOf({ command: process.execPath, args: [CLI_PATH, '--help'], env: process.env });
  if (!withRclone) return { ours };
  return { ours, rclone: await medianOf({ command: 'rclone', args: ['version'], env: process.env }) };
}

// Interrupted: end the measured process (the emulators end with us, see test/support/emulators.ts).
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    endRunningCommands();
    process.exit(130);
  });
}
process.exitCode = await main();
