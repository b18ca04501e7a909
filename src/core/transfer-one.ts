/**
 * How one object is transferred: pulled by the targets that can pull from a URL (after a small probe
 * tells whether they will), streamed through this process (read once) to the rest, continuing the
 * uploads earlier runs left. A full run calls `transferOne` for each planned object; a per-key worker
 * can call it for one key.
 */
import type { SourceStore } from '../stores/store.ts';
import { ByteBudget } from './concurrency.ts';
import { StoreError } from './errors.ts';
import { deferReasonOf, type TargetEvent, type TargetRun } from './target-run.ts';
import { describeWrite, streamObject, type ResumePoint, type StreamDestination, type TransferTuning } from './transfer.ts';
import type { TargetName, TransferAction, TransferModeSetting } from './types.ts';

/** What every transfer of one run shares. */
export interface TransferContext {
  readonly source: SourceStore;
  readonly tuning: TransferTuning;
  readonly budget: ByteBudget;
  readonly transferMode: TransferModeSetting;
  /** Cancels transfers (deadline's end, lock lost, interrupted): nothing partial becomes visible. */
  readonly signal: AbortSignal;
  /** Fires when no new part should start: multi-part uploads then stop after the parts in flight and are kept for the next run. */
  readonly stopStarting?: AbortSignal;
  /** How long target-side failures must go on before the target is taken as down. */
  readonly downAfterMs: number;
  /** The longest a presigned URL lives (SYNC_PRESIGN_TTL_SECONDS); see `presignLifetimeSeconds`. */
  readonly presignMaxSeconds: number;
  /** When transfers are cancelled (epoch ms), if ever. */
  readonly abortAt: number | undefined;
  readonly now: () => number;
  readonly emit: (event: TargetEvent | { readonly event: 'fallback'; readonly target: TargetName; readonly reason: string }) => void;
}

/** The settings of a run that its transfers follow (the fields of `RunOptions` they read). */
export interface TransferSettings {
  readonly tuning: TransferTuning;
  readonly memoryBudget: number;
  readonly transferMode?: TransferModeSetting;
  readonly downAfterMs?: number;
  readonly presignTtlSeconds?: number;
}

/** The context a full run or a per-key reconcile hands its transfers, with the defaults both share. */
export function transferContext(
  settings: TransferSettings,
  run: Pick<TransferContext, 'source' | 'signal' | 'now' | 'emit' | 'abortAt'> & { readonly stopStarting?: AbortSignal },
): TransferContext {
  return {
    ...run,
    tuning: settings.tuning,
    budget: new ByteBudget(settings.memoryBudget),
    transferMode: settings.transferMode ?? 'auto',
    downAfterMs: settings.downAfterMs ?? 60_000,
    presignMaxSeconds: settings.presignTtlSeconds ?? 3600,
  };
}

/** A presigned URL lives at least this long. */
const MIN_PRESIGN_SECONDS = 60;
/** A pull is given at least this rate when the run has no deadline: 1 MiB/s. */
const SLOWEST_PULL_BYTES_PER_SECOND = 1024 * 1024;

/**
 * How long the URL handed to a pulling target lives: as long as the pull may run and no longer. With a
 * deadline, until transfers are cancelled plus a minute; without one, 15 minutes plus a second per MiB
 * (1 MiB/s, far below any service's pull rate). Never more than `maxSeconds`, never less than 60 s.
 */
export function presignLifetimeSeconds(size: number, nowMs: number, abortAt: number | undefined, maxSeconds: number): number {
  const wanted = abortAt !== undefined ? Math.ceil((abortAt - nowMs) / 1000) + 60 : 15 * 60 + Math.ceil(size / SLOWEST_PULL_BYTES_PER_SECOND);
  return Math.max(MIN_PRESIGN_SECONDS, Math.min(maxSeconds, wanted));
}

/** Writes one object to the targets that need it: pulled server-side where the target can, streamed (read once) to the rest. */
export async function transferOne(key: string, pending: readonly [TargetRun, TransferAction][], context: TransferContext): Promise<void> {
  const startedMs = context.now();
  let endProbe: (() => void) | undefined;
  for (const [run] of pending) {
    if (run.mode !== 'server-side' || run.pullConfirmed) continue;
    if (run.pullProbe === undefined) run.pullProbe = new Promise<void>((resolve) => (endProbe = resolve));
    else await run.pullProbe;
  }
  let streaming: [TargetRun, TransferAction][];
  try {
    const pulling = pending.filter(([run]) => run.mode === 'server-side');
    const refused = pulling.length === 0 ? [] : await pullFromUrl(key, pulling, context, startedMs, () => endProbe?.());
    streaming = [...pending.filter(([run]) => run.mode === 'streaming' && !pulling.some(([pulled]) => pulled === run)), ...refused];
  } finally {
    endProbe?.();
  }
  if (streaming.length > 0) await streamToTargets(key, streaming, context, startedMs);
}

/**
 * Lets each target pull the object from a presigned URL; resolves with the ones that refused and
 * should stream it instead. A refusal is checked at the source first: when the source cannot serve the
 * object itself (archived, SSE-C, a KMS key denied, gone), the object fails (or is reported archived),
 * and the target keeps pulling the others.
 */
async function pullFromUrl(key: string, pulling: readonly [TargetRun, TransferAction][], context: TransferContext, startedMs: number, accepted: () => void): Promise<[TargetRun, TransferAction][]> {
  const { source, signal } = context;
  const refused: [TargetRun, TransferAction][] = [];
  let head: Awaited<ReturnType<SourceStore['head']>>;
  let url: string;
  try {
    head = await source.head(key, signal);
    url = await source.presignGet(key, presignLifetimeSeconds(head.size, context.now(), context.abortAt, context.presignMaxSeconds));
  } catch (error) {
    for (const [run, action] of pulling) failTransfer(run, action, error, context, startedMs);
    return refused;
  }
  await Promise.all(pulling.map(async ([run, action]) => {
    try {
      const description = describeWrite(key, head);
      const version = await run.store.serverSideCopy!.copyFromUrl(url, description, signal);
      run.pullConfirmed = true;
      accepted();
      run.succeed(action, head.size, 'server-side', context.emit, { source: description.recordedSource, targetEtag: version.etag });
    } catch (error) {
      if (!(error instanceof StoreError && error.scope === 'refused-pull' && context.transferMode === 'auto')) {
        failTransfer(run, action, error, context, startedMs);
        return;
      }
      const unreadable = await sourceCannotServe(source, key, head.etag, signal);
      if (unreadable !== undefined) {
        failTransfer(run, action, unreadable, context, startedMs);
        return;
      }
      if (run.mode === 'server-side') {
        run.mode = 'streaming';
        const reason = `${run.store.label} refused to pull from the source (${error.code ?? error.status ?? 'refused'}); streaming through this process instead`;
        run.notes.push(reason);
        context.emit({ event: 'fallback', target: run.name, reason });
      }
      refused.push([run, action]);
    }
  }));
  return refused;
}

/** The source's own error when it will not serve the object's first byte to us either; `undefined` when it will. */
async function sourceCannotServe(source: SourceStore, key: string, etag: string, signal: AbortSignal): Promise<unknown> {
  try {
    const read = await source.read(key, { start: 0, end: 0, ifMatch: etag, signal });
    // Served: that answers the question. The byte is read to its end so the connection goes back to the pool (a body
    // left unread held the process open until the socket timed out); an empty object's answer may break off, which says nothing.
    await readToEnd(read.body).catch(() => undefined);
    return undefined;
  } catch (error) {
    return error;
  }
}

async function readToEnd(body: AsyncIterable<Uint8Array>): Promise<void> {
  for await (const chunk of body) void chunk;
}

/** Streams the object through this process to every target in `streaming`, reading the source once. */
async function streamToTargets(key: string, streaming: readonly [TargetRun, TransferAction][], context: TransferContext, startedMs: number): Promise<void> {
  const { source, tuning, budget, signal } = context;
  const byName = new Map(streaming.map(([run, action]) => [run.name, { run, action }]));
  const destinations: StreamDestination<TargetName>[] = streaming.map(([run]) => ({ name: run.name, store: run.store }));
  const resume = new Map<TargetName, ResumePoint>();
  for (const [run, action] of streaming) {
    const earlier = run.earlier.get(key);
    if (earlier?.upload !== undefined && earlier.etag === action.source.etag) resume.set(run.name, { etag: earlier.etag, ...earlier.upload });
  }
  try {
    // Under a deadline a large object is read a part at a time: a run that stops leaves no bytes in flight.
    const size = streaming[0]![1].source.size;
    const stopping = context.stopStarting === undefined ? {} : { stopStarting: context.stopStarting, ...(size > tuning.partSize ? { readWindow: tuning.partSize } : {}), ...(context.abortAt === undefined ? {} : { finishBy: context.abortAt }) };
    const outcomes = await streamObject({ source, key, destinations, tuning, budget, signal, resume, listed: streaming[0]![1].source, ...stopping });
    for (const [name, outcome] of outcomes) {
      const { run, action } = byName.get(name)!;
      if (resume.has(name) && !('error' in outcome)) run.resumed += 1;
      if (outcome.ok) run.succeed(action, outcome.bytes, 'streaming', context.emit, outcome.written);
      else if ('stopped' in outcome) run.deferTransfer(action, signal.aborted ? deferReasonOf(signal) : 'deadline', context.emit, { bytes: outcome.stopped.bytes, partSize: outcome.stopped.partSize, token: outcome.stopped.resumeToken });
      else failTransfer(run, action, outcome.error, context, startedMs);
    }
  } catch (error) {
    for (const { run, action } of byName.values()) failTransfer(run, action, error, context, startedMs);
  }
}

function failTransfer(run: TargetRun, action: TransferAction, error: unknown, context: TransferContext, startedMs: number): void {
  run.fail(action, error, { signal: context.signal, sourceLabel: context.source.label, downAfterMs: context.downAfterMs, now: context.now, emit: context.emit }, startedMs);
}
