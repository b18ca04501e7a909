/** Runs the CLI adapter in-process, as `artifacts-sync <args>` would, capturing what it prints. */
import { runCommandLine } from '../../src/command-line.ts';
import type { RunReport } from '../../src/core/report.ts';
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
