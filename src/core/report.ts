import { describeAction } from './plan.ts';
import type { Action, DeferReason, DeleteVerdict, Failure, ProviderChoice, TargetName, TransferMode } from './types.ts';

/** What happened at one target. */
export interface TargetReport {
  readonly target: TargetName;
  /** Where the target points (`azure://account/container`, `oci://bucket`). */
  readonly store: string;
  /** How the bytes went: pulled by the service from a presigned URL, or streamed through this process. */
  readonly mode: TransferMode;
  readonly planned: { readonly copy: number; readonly replace: number; readonly delete: number; readonly unchanged: number };
  readonly copied: number;
  readonly replaced: number;
  readonly deleted: number;
  readonly unchanged: number;
  readonly failed: number;
  /** Planned actions not attempted (or cut off with nothing partial visible); `deferredBy` says why. */
  readonly deferred: number;
  /** The deferred actions by reason: deadline, delete guard, lock lost, target down, interrupted. */
  readonly deferredBy: Partial<Record<DeferReason, number>>;
  /**
   * Objects archived at the source (GLACIER, DEEP_ARCHIVE, an Intelligent-Tiering archive tier) that this
   * target lacks or holds in another version: not mirrored, never deleted here. `keys` lists the first 1000.
   */
  readonly archived: { readonly count: number; readonly keys: readonly string[] };
  /** Object bytes that passed through this process to the target. */
  readonly bytesStreamed: number;
  /** Object bytes the target pulled from the source itself. */
  readonly bytesCopiedServerSide: number;
  readonly durationMs: number;
  readonly deleteVerdict: DeleteVerdict;
  /**
   * True when the target is an exact mirror of the source listing taken at the start of the run, archived
   * objects aside (they are listed in `archived`, and fail the run only with SYNC_FAIL_ON_ARCHIVED=true).
   */
  readonly complete: boolean;
  /** Things the operator should know: a fallback to streaming, a lock not taken, leftovers cleaned. */
  readonly notes: readonly string[];
  readonly failures: readonly Failure[];
  /** Present on dry runs: every planned action with its reason. */
  readonly plan?: readonly PlannedAction[];
}

export interface PlannedAction {
  readonly action: Action['kind'];
  readonly key: string;
  readonly reason: string;
  readonly size?: number;
}

export interface RunReport {
  readonly provider: ProviderChoice;
  readonly dryRun: boolean;
  readonly source: { readonly store: string; readonly objects: number; readonly bytes: number };
  readonly startedAt: string;
  readonly durationMs: number;
  /** True when every target is an exact mirror. */
  readonly complete: boolean;
  /** Why the run stopped early, when it did, in words. */
  readonly stoppedEarly?: string;
  /** Why the run stopped early, by name. `lock-lost` and `source-listing` are failures; `deadline` is one only when an object keeps being deferred. */
  readonly stoppedBy?: DeferReason | 'source-listing';
  readonly targets: readonly TargetReport[];
  /** Failures not tied to one target (the source listing). */
  readonly failures: readonly Failure[];
}

export function plannedAction(action: Action): PlannedAction {
  const size = action.kind === 'delete' ? action.target.size : action.source.size;
  return { action: action.kind, key: action.key, reason: describeAction(action), size };
}

/** Total failures of a run (objects, listings, held-back deletions): any of them means exit code 1 / HTTP 500. */
export function failureCount(report: RunReport): number {
  return report.failures.length + report.targets.reduce((sum, target) => sum + target.failures.length, 0);
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${UNITS[unit]}`;
}

export function formatDuration(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** The report as a person reads it in a terminal. */
export function renderText(report: RunReport): string {
  const lines: string[] = [];
  const verb = report.dryRun ? 'Dry run (nothing changed)' : 'Mirror';
  lines.push(`${verb}: ${report.source.store} (${report.source.objects} objects, ${formatBytes(report.source.bytes)}) → ${report.provider}`);
  for (const failure of report.failures) lines.push(`  FAILED ${failure.operation}: ${failure.message}`);
  for (const target of report.targets) {
    lines.push('');
    lines.push(`${target.target}: ${target.store}`);
    if (target.plan !== undefined) {
      for (const action of target.plan) lines.push(`  ${action.reason.padEnd(24)} ${action.key}`);
      if (target.plan.length === 0) lines.push('  nothing to do');
    }
    const p = target.planned;
    if (report.dryRun) {
      lines.push(`  would copy ${p.copy}, replace ${p.replace}, delete ${p.delete}; unchanged ${p.unchanged}`);
    } else {
      const why = Object.entries(target.deferredBy).map(([reason, count]) => `${count} ${reason}`).join(', ');
      lines.push(
        `  copied ${target.copied}, replaced ${target.replaced}, deleted ${target.deleted}, unchanged ${target.unchanged}, failed ${target.failed}` +
          (target.deferred > 0 ? `, deferred ${target.deferred} (${why})` : ''),
      );
      lines.push(
        `  ${formatBytes(target.bytesStreamed)} streamed through this process, ${formatBytes(target.bytesCopiedServerSide)} pulled server-side, in ${formatDuration(target.durationMs)}`,
      );
    }
    if (!target.deleteVerdict.allowed) {
      lines.push(`  DELETIONS HELD BACK: ${target.deleteVerdict.reason}${target.deleteVerdict.setting ? ` (raise ${target.deleteVerdict.setting} if this is intended)` : ''}`);
    }
    if (target.archived.count > 0) {
      const more = target.archived.count - target.archived.keys.length;
      lines.push(`  ARCHIVED at the source, not mirrored: ${target.archived.count} object(s): ${target.archived.keys.slice(0, 20).map((key) => JSON.stringify(key)).join(', ')}${target.archived.count > 20 ? ` and ${target.archived.count - 20} more${more > 0 ? ` (${more} not listed in the report)` : ''}` : ''}`);
    }
    for (const note of target.notes) lines.push(`  note: ${note}`);
    for (const failure of target.failures) {
      lines.push(`  FAILED ${failure.operation}${failure.key === undefined ? '' : ` ${JSON.stringify(failure.key)}`}: ${failure.message}`);
    }
    if (!report.dryRun) lines.push(`  ${target.complete ? 'mirror complete' : 'mirror NOT complete'}${target.complete && target.archived.count > 0 ? ` except ${target.archived.count} object(s) archived at the source` : ''}`);
  }
  lines.push('');
  if (report.stoppedEarly !== undefined) lines.push(`Stopped early (${report.stoppedBy ?? 'cancelled'}): ${report.stoppedEarly}`);
  lines.push(`${report.complete ? 'Complete' : report.dryRun ? 'Planned' : 'Incomplete'} in ${formatDuration(report.durationMs)}`);
  return lines.join('\n');
}
