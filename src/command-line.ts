/** The CLI adapter: arguments and environment in, a report and an exit code out. */
import { ConfigError, InterruptedError, LockHeldError, describeError } from './core/errors.ts';
import type { KeyToReconcile, ReconcileEvent, ReconcileReport } from './core/reconcile.ts';
import { failureCount, formatBytes, renderText, type RunReport } from './core/report.ts';
import type { RunEvent } from './core/run.ts';
import { renderVerifyText, type VerifyReport } from './core/verify.ts';
import { EventDocumentError } from './core/s3-events.ts';
import { PROVIDER_CHOICES, type ProviderChoice } from './core/types.ts';
import { parseProvider, type Settings } from './config.ts';
import { createEventService } from './events.ts';
import { SecretsError } from './secrets.ts';
import { createSyncService, type SyncReport, type SyncServiceOptions } from './sync.ts';

export const EXIT = {
  /** The mirror is complete (or the dry run planned without errors, and a real run would delete what it plans). */
  complete: 0,
  /** Some object or listing failed, deletions were held back (or a dry run found they would be), or the run stopped early. */
  failed: 1,
  /** Bad arguments, settings or secrets: nothing was changed. */
  usage: 2,
  /** Another run holds the lock of a target: nothing was changed. */
  locked: 3,
  /** Stopped by SIGINT (Ctrl-C): transfers in flight cancelled, nothing partial visible, the lock released. */
  interrupted: 130,
  /** Stopped by SIGTERM, as SIGINT. */
  terminated: 143,
} as const;

/** The queue commands, in src/command-line-runs.ts: loaded only when one is asked for (it brings the queue worker). */
export const QUEUE_COMMANDS = ['work', 'status'] as const;

export const QUEUE_USAGE = `       artifacts-sync work [--until-empty]
       artifacts-sync status [<run-id>] [--json]

  work             work on the object queue (events, queued runs and fanned-out pieces), as the
                   queue function does; several may run at once; --until-empty returns once the
                   queue is empty
  status           the last complete run per target and the queue's pending and poisoned
                   messages; with a run id, that run: exit 0 complete, 1 incomplete or stalled,
                   4 running`;

export const USAGE = `Usage: artifacts-sync <${PROVIDER_CHOICES.join('|')}> [--dry-run] [--json] [--key <key>]... [--events <file|->] [--enqueue]
       artifacts-sync verify <${PROVIDER_CHOICES.join('|')}> [--json] [--checksum]
${QUEUE_USAGE}

Mirrors the S3 bucket AWS_S3_BUCKET (the source of truth) to the Azure container
AZURE_STORAGE_CONTAINER (azure), the OCI bucket OCI_BUCKET (oci), or both (all).

  --dry-run        show what would change, one line per action with its reason; change nothing
  --json           print the report as JSON (progress still goes to stderr)
  --key <key>      reconcile this key only, to the source's current state, without listing
                   the buckets (repeat for more keys)
  --events <file>  reconcile the keys an S3 event document names (EventBridge event, array
                   of them, or {"Records":[...]}); - reads it from stdin
  --enqueue        plan, run the deletions, and put every transfer on the queue for workers;
                   prints the run id (--json: runId); exit 0 once everything is enqueued
  -h, --help       show this help

Exit codes: 0 mirror complete, 1 some object failed, deletions were (or, in a dry
run, would be) held back by a delete guard, the run lock was lost, or the run
stopped early, 2 usage or configuration error, or an event document that is
malformed or names another bucket (nothing changed), 3 another run holds the lock,
4 (status <run-id>) the run is still running, 130/143 stopped by SIGINT/SIGTERM
(nothing partial left, the lock released).
Settings are read from the environment; see README.md.
\`verify --help\` describes verify.`;

export const VERIFY_USAGE = `Usage: artifacts-sync verify <${PROVIDER_CHOICES.join('|')}> [--json] [--checksum]

Compares the S3 source with the target(s) and prints every difference with its key:
missing, extra, refused keys, size, content (the source ETag the copy recorded),
content headers and user metadata. Changes nothing, takes no lock.

  --checksum  also read every object on both sides and compare the MD5 of the bytes
  --json      print the report as JSON
  -h, --help  show this help

Cost: one listing of each side, one HEAD per object on the source and on each
target; with --checksum one GET per object on each side as well.
Exit codes: 0 the target is exact, 1 it is not (or not every object could be
compared), 2 usage or configuration error.`;

export interface CommandLineIo {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
  /** Reads `--events`' file, or stdin for `-` (default: node:fs and process.stdin). */
  readonly readInput?: (path: string) => Promise<string>;
}

interface ParsedArguments {
  readonly provider: ProviderChoice;
  readonly dryRun: boolean;
  readonly json: boolean;
  /** `--key` values, in order; empty when none was given. */
  readonly keys: readonly string[];
  /** `--events`' file (`-`: stdin). */
  readonly events: string | undefined;
  readonly enqueue: boolean;
}

/** Options that take a value: `--key k` or `--key=k` (the value may start with a dash). */
const VALUE_OPTIONS = new Set(['--key', '--events']);

interface ProviderAndOptions {
  readonly provider: ProviderChoice;
  readonly given: ReadonlySet<string>;
  /** Values of options that take one, in order. */
  readonly values: readonly { readonly option: string; readonly value: string }[];
}

/**
 * Parses `<provider>`, the flags allowed beside it and, among `VALUE_OPTIONS`, those in `valueOptions`
 * (`command` names the subcommand in errors); throws `ConfigError` with what is allowed.
 */
function parseProviderAndOptions(args: readonly string[], flags: readonly string[], valueOptions: readonly string[], command?: string): ProviderAndOptions | 'help' {
  if (args.includes('--help') || args.includes('-h')) return 'help';
  const values: { option: string; value: string }[] = [];
  const rest: string[] = [];
  for (let index = 0; index < args.length; index += 1) {
    const arg = args[index] ?? '';
    const [option = '', inline] = arg.startsWith('--') && arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    if (!valueOptions.includes(option)) {
      rest.push(arg);
      continue;
    }
    const value = inline ?? args[++index];
    if (value === undefined || value === '') throw new ConfigError([`${option} needs a value: ${option === '--key' ? '--key <key> (repeat for more keys)' : '--events <file> or --events - for stdin'}`]);
    values.push({ option, value });
  }
  const unknown = rest.filter((arg) => arg.startsWith('-') && !flags.includes(arg));
  if (unknown.length > 0) {
    const allowed = [...flags, ...valueOptions.map((option) => (option === '--key' ? '--key <key>' : `${option} <file|->`)), '--help'];
    throw new ConfigError([`unknown option ${unknown.map((arg) => JSON.stringify(arg)).join(', ')}${command === undefined ? '' : ` for ${command}`}: allowed are ${allowed.join(', ')}`]);
  }
  const positional = rest.filter((arg) => !arg.startsWith('-'));
  if (positional.length === 0) throw new ConfigError([`missing provider: choose one of ${PROVIDER_CHOICES.join(', ')}`]);
  if (positional.length > 1) throw new ConfigError([`one provider at a time, got ${positional.map((arg) => JSON.stringify(arg)).join(' ')}: choose one of ${PROVIDER_CHOICES.join(', ')}`]);
  return { provider: parseProvider(positional[0]), given: new Set(rest), values };
}

/** Parses `<provider> [--dry-run] [--json] [--key <key>]... [--events <file|->] [--enqueue]`; throws `ConfigError` with what is allowed. */
export function parseArguments(args: readonly string[]): ParsedArguments | 'help' {
  const parsed = parseProviderAndOptions(args, ['--dry-run', '--json', '--enqueue'], [...VALUE_OPTIONS]);
  if (parsed === 'help') return parsed;
  const keys = parsed.values.filter((entry) => entry.option === '--key').map((entry) => entry.value);
  const events = parsed.values.filter((entry) => entry.option === '--events').map((entry) => entry.value);
  if (events.length > 1) throw new ConfigError(['--events is given more than once: give one event document (an array of events, or {"Records":[...]}, holds many)']);
  if (events.length > 0 && keys.length > 0) throw new ConfigError(['--key and --events do not go together: name the keys, or give an event document']);
  const enqueue = parsed.given.has('--enqueue');
  if (enqueue && (keys.length > 0 || events.length > 0)) throw new ConfigError(['--enqueue goes with a full run only: --key and --events reconcile inline']);
  if (enqueue && parsed.given.has('--dry-run')) throw new ConfigError(['--enqueue and --dry-run do not go together: a dry run enqueues nothing']);
  return { provider: parsed.provider, dryRun: parsed.given.has('--dry-run'), json: parsed.given.has('--json'), keys, events: events[0], enqueue };
}

interface VerifyArguments {
  readonly provider: ProviderChoice;
  readonly checksum: boolean;
  readonly json: boolean;
}

/** Parses `verify <provider> [--json] [--checksum]` (without the word `verify`); throws `ConfigError` with what is allowed. */
export function parseVerifyArguments(args: readonly string[]): VerifyArguments | 'help' {
  const parsed = parseProviderAndOptions(args, ['--checksum', '--json'], [], 'verify');
  return parsed === 'help' ? parsed : { provider: parsed.provider, checksum: parsed.given.has('--checksum'), json: parsed.given.has('--json') };
}

/** The parsed arguments; or, after printing the help (exit 0) or the error and the usage (exit 2), the exit code. */
function argumentsOrExit<Parsed extends object>(parse: () => Parsed | 'help', usage: string, io: CommandLineIo): Parsed | { readonly exit: number } {
  let parsed: Parsed | 'help';
  try {
    parsed = parse();
  } catch (error) {
    io.err(`artifacts-sync: ${describeError(error)}\n\n${usage}`);
    return { exit: EXIT.usage };
  }
  if (parsed !== 'help') return parsed;
  io.out(usage);
  return { exit: EXIT.complete };
}

/** `artifacts-sync verify ...`: 0 exact, 1 not exact (or not verified), 2 bad input. */
async function runVerify(args: readonly string[], settings: Settings, io: CommandLineIo, options: SyncServiceOptions): Promise<number> {
  const parsed = argumentsOrExit(() => parseVerifyArguments(args), VERIFY_USAGE, io);
  if ('exit' in parsed) return parsed.exit;
  let report: VerifyReport;
  try {
    report = await createSyncService(settings, options).verify({ provider: parsed.provider, checksum: parsed.checksum });
  } catch (error) {
    io.err(`artifacts-sync: ${describeError(error)}`);
    if (error instanceof ConfigError || error instanceof SecretsError) return EXIT.usage;
    return EXIT.failed;
  }
  io.out(parsed.json ? JSON.stringify(report, null, 2) : renderVerifyText(report));
  return report.exact ? EXIT.complete : EXIT.failed;
}

/**
 * Runs the command. `signal` stops the run (the CLI aborts it on SIGINT/SIGTERM with an `InterruptedError`):
 * no new work starts, transfers in flight are cancelled with nothing partial left visible, the lock is
 * released, and the exit code is 130 (SIGINT) or 143 (SIGTERM).
 */
export async function runCommandLine(args: readonly string[], settings: Settings, io: CommandLineIo, options: SyncServiceOptions = {}, signal?: AbortSignal): Promise<number> {
  if (args[0] === 'verify') return runVerify(args.slice(1), settings, io, options);
  if (QUEUE_COMMANDS.some((command) => command === args[0])) return (await import('./command-line-runs.ts')).runQueueCommand(args, settings, io, options);
  const parsed = argumentsOrExit(() => parseArguments(args), USAGE, io);
  if ('exit' in parsed) return parsed.exit;
  const { provider, dryRun, json } = parsed;
  let report: SyncReport | ReconcileReport;
  try {
    report = parsed.keys.length > 0 || parsed.events !== undefined
      ? await reconcileNamedKeys(parsed, settings, io, options)
      : await createSyncService(settings, options).sync({ provider, dryRun, trigger: 'cli', enqueue: parsed.enqueue, onEvent: (event) => progressLine(event, io), ...(signal === undefined ? {} : { signal }) });
  } catch (error) {
    io.err(`artifacts-sync: ${describeError(error)}`);
    const interrupted = interruptedExit(signal);
    if (interrupted !== undefined) return interrupted;
    if (error instanceof LockHeldError) return EXIT.locked;
    if (error instanceof ConfigError || error instanceof SecretsError || error instanceof EventDocumentError) return EXIT.usage;
    return EXIT.failed;
  }
  io.out(json ? JSON.stringify(report, null, 2) : renderText(report) + heldLines(report) + ('runId' in report && report.runId !== undefined ? `\nrun ${report.runId}` : ''));
  const interrupted = interruptedExit(signal);
  if (interrupted !== undefined) return interrupted;
  // Enqueued: done once every transfer is on the queue and the run's own part (deletions) is clean.
  if (parsed.enqueue) return failureCount(report) === 0 && report.stoppedEarly === undefined && !('withheld' in report) ? EXIT.complete : EXIT.failed;
  // A dry run fails where the real run would: a delete guard holding deletions back.
  const clean = failureCount(report) === 0 && (dryRun ? report.targets.every((target) => target.deleteVerdict.allowed) : report.complete);
  return clean ? EXIT.complete : EXIT.failed;
}

/** `--key`/`--events`: the named keys, reconciled inline (no queue, no listing); a bad document throws before anything changes. */
async function reconcileNamedKeys(parsed: ParsedArguments, settings: Settings, io: CommandLineIo, options: SyncServiceOptions): Promise<ReconcileReport> {
  const service = createEventService(settings, options);
  let keys: readonly KeyToReconcile[] = parsed.keys.map((key) => ({ key }));
  if (parsed.events !== undefined) {
    const text = await (io.readInput ?? readInput)(parsed.events);
    const events = service.parse(text);
    if (events.ignored > 0) io.err(`ignored ${events.ignored} test event(s)`);
    keys = events.keys;
  }
  return service.reconcile({ provider: parsed.provider, keys, dryRun: parsed.dryRun, onEvent: (event) => progressLine(event, io) });
}

async function readInput(path: string): Promise<string> {
  if (path !== '-') {
    const { readFile } = await import('node:fs/promises');
    return readFile(path, 'utf8').catch((error: unknown) => {
      throw new ConfigError([`--events ${JSON.stringify(path)} could not be read (${describeError(error)}): give a readable file, or - for stdin`]);
    });
  }
  const { stdin } = await import('node:process');
  const chunks: Buffer[] = [];
  for await (const chunk of stdin) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

/** The deletions the event deletion window held, one line each, under the report. */
function heldLines(report: RunReport | ReconcileReport): string {
  if (!('held' in report) || report.held.length === 0) return '';
  return `\nHeld by the event deletion window (the next full run decides, behind its own guard):\n${report.held.map((held) => `  ${held.target} ${JSON.stringify(held.key)}`).join('\n')}`;
}

function interruptedExit(signal: AbortSignal | undefined): number | undefined {
  const reason: unknown = signal?.reason;
  if (!(reason instanceof InterruptedError)) return undefined;
  return reason.signalName === 'SIGTERM' ? EXIT.terminated : EXIT.interrupted;
}

/** Progress for a person watching: one line per listing, plan and progress tick, on stderr. */
function progressLine(event: ReconcileEvent, io: CommandLineIo): void {
  switch (event.event) {
    case 'listed':
      io.err(`listed ${event.store}: ${event.objects} objects in ${event.durationMs} ms`);
      return;
    case 'plan':
      io.err(`[${event.target}] plan: copy ${event.copy}, replace ${event.replace}, delete ${event.delete}, unchanged ${event.unchanged}`);
      return;
    case 'progress':
      io.err(`[${event.target}] ${event.done}/${event.total} transfers, ${formatBytes(event.bytes)}`);
      return;
    case 'fallback':
      io.err(`[${event.target}] ${event.reason}`);
      return;
    case 'key-mirrored':
      io.err(`[${event.target}] ${event.outcome} ${JSON.stringify(event.key)}${event.lagMs === undefined ? '' : ` (${event.lagMs} ms after the event)`}`);
      return;
    case 'failure':
      io.err(`[${event.target}] FAILED ${event.operation}${event.key === undefined ? '' : ` ${JSON.stringify(event.key)}`}: ${event.message}`);
      return;
    default:
      return;
  }
}
