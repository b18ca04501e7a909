/** Runs the CLI adapter in-process, as `artifacts-sync <args>` would, capturing what it prints. */
import { runCommandLine } from '../../src/command-line.ts';
import type { RunReport, TargetReport } from '../../src/core/report.ts';
import type { Settings } from '../../src/config.ts';

export interface CliResult {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

export async function runCli(args: readonly string[], settings: Settings): Promise<CliResult> {
  const out: string[] = [];
  const err: string[] = [];
  const exitCode = await runCommandLine(args, settings, { out: (text) => out.push(text), err: (text) => err.push(text) });
  return { exitCode, stdout: out.join('\n'), stderr: err.join('\n') };
}

/** Runs `<provider> --json [...]` and parses the report. */
export async function runJson(provider: string, settings: Settings, extra: readonly string[] = []): Promise<{ exitCode: number; report: RunReport; stderr: string }> {
  const result = await runCli([provider, '--json', ...extra], settings);
  let report: RunReport;
  try {
    report = JSON.parse(result.stdout) as RunReport;
  } catch {
    throw new Error(`no JSON report (exit ${result.exitCode}); stdout: ${result.stdout}\nstderr: ${result.stderr}`);
  }
  return { exitCode: result.exitCode, report, stderr: result.stderr };
}

/** One target's part of a report; fails the test when the target is missing. */
export function targetOf(report: Pick<RunReport, 'targets'>, name: 'azure' | 'oci'): TargetReport {
  const found = report.targets.find((entry) => entry.target === name);
  if (found === undefined) throw new Error(`no ${name} in the report`);
  return found;
}
