/**
 * Runs one command as a child process and measures it the same way whatever the command is
 * (our CLI, rclone, the planner child): wall time from spawn to exit, and peak resident memory.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import process from 'node:process';
import { join } from 'node:path';

/** GNU time reports the child's peak RSS (ru_maxrss, from wait4) with `%M`, in KiB, and its user and system CPU seconds with `%U %S`. */
const GNU_TIME = '/usr/bin/time';
const RSS_POLL_MS = 20;

export interface MeasuredRun {
  readonly exitCode: number;
  readonly wallMs: number;
  /** Peak resident set size of the process; `undefined` when it could not be read. */
  readonly peakRssBytes: number | undefined;
  /** How the peak was taken, for the report. */
  readonly rssMethod: RssMethod;
  /** User plus system CPU time of the process; `undefined` without GNU time. */
  readonly cpuMs: number | undefined;
  readonly stdout: string;
  readonly stderr: string;
  /** Each stderr line with when it arrived (ms after spawn): progress lines become a timeline. */
  readonly stderrLines: readonly TimedLine[];
}

export interface TimedLine {
  readonly atMs: number;
  readonly line: string;
}

export type RssMethod = '/usr/bin/time -f %M' | '/proc/<pid>/status VmHWM, polled';

/** The one method used for every measured process in a run. */
export const RSS_METHOD: RssMethod = existsSync(GNU_TIME) ? '/usr/bin/time -f %M' : '/proc/<pid>/status VmHWM, polled';

export interface CommandToMeasure {
  readonly command: string;
  readonly args: readonly string[];
  readonly env: NodeJS.ProcessEnv;
}

/** Runs the command to completion; never throws for a non-zero exit (the caller judges it). */
export async function measure(run: CommandToMeasure): Promise<MeasuredRun> {
  return RSS_METHOD === '/usr/bin/time -f %M' ? measureWithGnuTime(run) : measureByPolling(run);
}

async function measureWithGnuTime(run: CommandToMeasure): Promise<MeasuredRun> {
  const directory = await mkdtemp(join(tmpdir(), 'artifacts-sync-bench-time-'));
  const output = join(directory, 'max-rss-kib');
  try {
    const result = await execute(GNU_TIME, ['-f', '%M %U %S', '-o', output, run.command, ...run.args], run.env, () => () => undefined);
    // The last line; GNU time writes "Command exited with non-zero status N" above it.
    const fields = ((await readFile(output, 'utf8').catch(() => '')).trim().split('\n').pop() ?? '').split(' ').map(Number);
    const [kib, user, system] = fields;
    const cpuMs = user !== undefined && system !== undefined && Number.isFinite(user + system) ? Math.round((user + system) * 1000) : undefined;
    return { ...result, peakRssBytes: kib !== undefined && Number.isFinite(kib) ? kib * 1024 : undefined, rssMethod: RSS_METHOD, cpuMs };
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

async function measureByPolling(run: CommandToMeasure): Promise<MeasuredRun> {
  let peakKib: number | undefined;
  const result = await execute(run.command, run.args, run.env, (pid) => {
    const timer = setInterval(() => {
      readFile(`/proc/${pid}/status`, 'utf8')
        .then((status) => {
          const kib = Number(/^VmHWM:\s+(\d+) kB$/m.exec(status)?.[1]);
          if (Number.isFinite(kib)) peakKib = Math.max(peakKib ?? 0, kib);
        })
        .catch(() => undefined); // the process may have exited between two polls
    }, RSS_POLL_MS);
    return () => clearInterval(timer);
  });
  return { ...result, peakRssBytes: peakKib === undefined ? undefined : peakKib * 1024, rssMethod: RSS_METHOD, cpuMs: undefined };
}

/** Writes the kernel's dirty pages to disk (`sync`), so the writeback of one run does not land in the next run's time. */
export function flushFileSystems(): void {
  spawnSync('sync', { stdio: 'ignore' });
}

/** CPU time a running process has used so far. */
export interface ProcessCpuTime {
  /** All its threads (user + system). */
  readonly totalMs: number;
  /** Its main thread alone: where a Node process runs its JavaScript, so a single-threaded server is saturated when this keeps pace with the wall clock. */
  readonly mainThreadMs: number;
}

/** Reads a process's CPU time from /proc (Linux); `undefined` where /proc does not have it. */
export async function processCpuTime(pid: number): Promise<ProcessCpuTime | undefined> {
  try {
    const [stat, schedstat] = await Promise.all([readFile(`/proc/${pid}/stat`, 'utf8'), readFile(`/proc/${pid}/task/${pid}/schedstat`, 'utf8')]);
    // utime and stime are fields 14 and 15 of stat; counting from the field after the command name "(...)", which is field 3.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    // The first field of schedstat: nanoseconds the thread has run.
    const mainThreadNs = Number(schedstat.split(' ')[0]);
    if (!Number.isFinite(ticks) || !Number.isFinite(mainThreadNs)) return undefined;
    return { totalMs: ticks * PROC_TICK_MS, mainThreadMs: mainThreadNs / 1e6 };
  } catch {
    return undefined;
  }
}

/** /proc counts utime and stime in USER_HZ ticks, 100 per second on Linux. */
const PROC_TICK_MS = 10;

/** CPU time all cores of the machine have spent busy so far (everything but idle and iowait, /proc/stat); `undefined` where /proc does not have it. */
export async function machineBusyMs(): Promise<number | undefined> {
  try {
    const fields = ((await readFile('/proc/stat', 'utf8')).split('\n')[0] ?? '').trim().split(/\s+/).slice(1).map(Number);
    const [user, nice, system, , , irq, softirq, steal] = fields;
    const busy = [user, nice, system, irq, softirq, steal].reduce<number>((sum, value) => sum + (value ?? Number.NaN), 0);
    return Number.isFinite(busy) ? busy * PROC_TICK_MS : undefined;
  } catch {
    return undefined;
  }
}

/** Processes being measured right now, so an interrupted benchmark can end them (`endRunningCommands`). */
const running = new Set<ChildProcess>();

/** Ends every measured process still running (by its own PID); for an interrupted benchmark. */
export function endRunningCommands(): void {
  for (const child of running) {
    // The command runs in a process group of its own (GNU time and what it runs): end the whole group.
    if (child.pid !== undefined) process.kill(-child.pid, 'SIGTERM');
  }
}

/** Spawns, collects output, and times spawn to exit. `watch` starts per-PID sampling and returns its stopper. */
function execute(
  command: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  watch: (pid: number) => () => void,
): Promise<{ exitCode: number; wallMs: number; stdout: string; stderr: string; stderrLines: TimedLine[] }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    running.add(child);
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    const stderrLines: TimedLine[] = [];
    let partialLine = '';
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => {
      stderr.push(chunk);
      const atMs = performance.now() - started;
      const lines = (partialLine + chunk.toString('utf8')).split('\n');
      partialLine = lines.pop() ?? '';
      for (const line of lines) stderrLines.push({ atMs, line });
    });
    const stopWatching = child.pid === undefined ? () => undefined : watch(child.pid);
    child.once('error', (error) => {
      running.delete(child);
      stopWatching();
      reject(new Error(`could not run ${command}: ${error.message}`));
    });
    child.once('close', (code, signal) => {
      const wallMs = performance.now() - started;
      running.delete(child);
      stopWatching();
      resolve({
        exitCode: code ?? (signal === null ? 1 : 128),
        wallMs,
        stdout: Buffer.concat(stdout).toString('utf8'),
        stderr: Buffer.concat(stderr).toString('utf8'),
        stderrLines: partialLine === '' ? stderrLines : [...stderrLines, { atMs: wallMs, line: partialLine }],
      });
    });
  });
}
