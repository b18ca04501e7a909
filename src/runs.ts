/**
 * Runs with an id and a status, kept in the Functions host's storage account (`AzureWebJobsStorage`):
 * one JSON blob per run (`runs/<id>.json` in the container `artifacts-sync-runs`), changed only with
 * If-Match on the ETag read, so the planning run and any number of queue workers update it without
 * losing a count; and one blob per target naming the last complete run. It wires core/fan-out.ts and
 * core/run-record.ts to the host storage and the queue; it holds no mirror logic.
 */
import { randomBytes } from 'node:crypto';
import { RestError, type BlockBlobClient, type ContainerClient } from '@azure/storage-blob';
import { loadEventConfig, loadFanOutConfig, type FanOutConfig, type Settings } from './config.ts';
import { ConfigError, describeError } from './core/errors.ts';
import { FanOut, type RunPieceMessage, type RunStartMessage } from './core/fan-out.ts';
import { retryableFailureList, type ReconcileEvent } from './core/reconcile.ts';
import type { RunReport } from './core/report.ts';
import { claimRun, newRunId, newRunRecord, piecesPending, recordPiece, recordPlanning, releaseRun, type RunClaim, type RunDelivery, type RunRecord, type RunState } from './core/run-record.ts';
import type { ProviderChoice, TargetName } from './core/types.ts';
import type { EventService } from './events.ts';
import { eventQueue, hostStorageClients, text, type EventQueue, type HostStorageClients } from './host-storage.ts';

/** Container of the host storage account that holds the run records. */
export const RUN_STATUS_CONTAINER = 'artifacts-sync-runs';
/** Conditional writes of a record tried before an update gives up (each loses only to another writer's update). */
const RECORD_WRITE_ATTEMPTS = 50;
/**
 * A running run whose record has not changed for this long is stalled (its invocation or its messages
 * were lost): `GET /api/runs/{id}` and `status` say `stalled`, and later runs enqueue its keys again.
 */
export const STALLED_RUN_MS = 60 * 60_000;

/** What `GET /api/status` and `artifacts-sync status` show. */
export interface StatusOverview {
  readonly targets: Partial<Record<TargetName, { readonly lastCompleteRun: { readonly id: string; readonly finishedAt: string } | null; readonly lastRun: { readonly id: string; readonly state: RunState; readonly finishedAt?: string } | null }>>;
  /** The object queue (events and fanned-out pieces of every run) and its poison queue; approximate counts, invisible messages included. */
  readonly queue: { readonly name: string; readonly pending: number; readonly poisoned: number };
}

/** A run's pointer, per target. */
interface RunPointer {
  readonly id: string;
  readonly state: RunState;
  readonly finishedAt?: string;
}

export interface RunService {
  /** The fan-out settings (validated). */
  readonly config: FanOutConfig;
  /** The object queue (to read pending counts, and for the CLI worker). */
  readonly clients: () => Promise<HostStorageClients>;
  readonly queueName: string;
  /** Opens a record for a run about to start; resolves with its id. */
  open(provider: ProviderChoice, trigger: string): Promise<string>;
  /** Opens a record and puts the run on the queue (a `RunStartMessage`) for a queue worker to run; resolves with its id. */
  enqueueRun(provider: ProviderChoice, trigger: string): Promise<string>;
  /** A delivery of a queued run's message claims the run under the record's ETag: only `start` runs it. */
  claimRun(id: string, delivery: Omit<RunDelivery, 'startedAt' | 'error'>): Promise<RunClaim>;
  /**
   * The delivery's attempt failed with `error` before a report existed: the run stays open for the next
   * delivery (ended as incomplete on the last attempt). Resolves true while it is open for a retry.
   */
  failAttempt(id: string, delivery: Omit<RunDelivery, 'startedAt' | 'error'>, error: string): Promise<boolean>;
  /** Ends a queued run that is still open as incomplete with `error` (its message's last attempt failed, or an attempt was abandoned); no change once it ended. */
  endRun(id: string, error: string): Promise<void>;
  /**
   * The fan-out of the run `id` to the stores labelled `targets` (`oci://bucket`): its transfers go on
   * the queue once the run is large (`always`: whatever its size), unless an earlier fanned-out run to
   * one of them is still running.
   */
  fanOut(id: string, always: boolean, targets: readonly string[]): FanOut<TargetName>;
  /** The planning run ended (with its report, or an error before one existed). */
  closePlanning(id: string, fanOut: FanOut<TargetName> | undefined, ended: { report?: RunReport; error?: string }): Promise<RunRecord>;
  /** A queue worker's part: reconciles a piece's keys on its target and records the outcome. Throws (for a retry) while keys fail and attempts remain. */
  workPiece(events: EventService, piece: RunPieceMessage, lastAttempt: boolean, onEvent?: (event: ReconcileEvent) => void): Promise<void>;
  /** The run's record, or `undefined` when there is no such run. */
  get(id: string): Promise<RunRecord | undefined>;
  overview(): Promise<StatusOverview>;
}

/** Throws `ConfigError` when AzureWebJobsStorage is not set: runs are kept in the host storage. */
export function createRunService(settings: Settings, now: () => number = Date.now): RunService {
  const config = loadFanOutConfig(settings);
  const eventConfig = loadEventConfig(settings);
  const hostStorage = eventConfig.hostStorage;
  if (hostStorage === undefined) throw new ConfigError(['AzureWebJobsStorage is required to keep runs and their queue: a storage connection string (Azurite: with BlobEndpoint= and QueueEndpoint=), or AzureWebJobsStorage__accountName with an identity']);
  // Pointers per source bucket: one host storage may serve several mirrors (and the tests' many).
  const scope = encodeURIComponent(settings['AWS_S3_BUCKET']?.trim() ?? '');
  let clients: Promise<HostStorageClients> | undefined;
  const hostClients = (): Promise<HostStorageClients> => (clients ??= hostStorageClients(hostStorage));
  let containerReady: Promise<ContainerClient> | undefined;
  const container = (): Promise<ContainerClient> =>
    (containerReady ??= hostClients().then(async (each) => {
      const client = each.blobs.getContainerClient(RUN_STATUS_CONTAINER);
      await client.createIfNotExists();
      return client;
    }).catch((error: unknown) => {
      containerReady = undefined;
      throw error;
    }));
  let queue: EventQueue | undefined;
  const sendPieces = async (messages: readonly (RunPieceMessage | RunStartMessage)[]): Promise<void> => {
    queue ??= eventQueue(await hostClients(), eventConfig.queueName);
    await queue.send(messages);
  };
  const recordBlob = async (id: string): Promise<BlockBlobClient> => {
    if (!/^[0-9TZ]+-[0-9a-f]+$/.test(id)) throw new RunIdError(id);
    return (await container()).getBlockBlobClient(`runs/${id}.json`);
  };

  /** Reads, changes and writes the record under its ETag; on a lost race, reads again. */
  const update = async (id: string, change: (record: RunRecord) => RunRecord): Promise<RunRecord> => {
    const blob = await recordBlob(id);
    for (let attempt = 1; ; attempt += 1) {
      const current = await readJson<RunRecord>(blob);
      if (current === undefined) throw new Error(`run ${id} has no record in ${RUN_STATUS_CONTAINER}: it was never opened, or its record was removed`);
      const changed = change(current.value);
      if (changed === current.value) return changed;
      try {
        await writeJson(blob, changed, { ifMatch: current.etag });
      } catch (error) {
        if (error instanceof RestError && error.statusCode === 412 && attempt < RECORD_WRITE_ATTEMPTS) continue;
        throw error;
      }
      // The writer that ended the run names it, per target, for `GET /api/status`.
      if (current.value.state === 'running' && changed.state !== 'running') await pointAt(changed);
      return changed;
    }
  };

  const openRun = async (provider: ProviderChoice, trigger: string): Promise<string> => {
    const id = newRunId(now(), randomBytes(4).toString('hex'));
    await writeJson(await recordBlob(id), newRunRecord(id, provider, trigger, now()), { ifNoneMatch: '*' });
    return id;
  };

  const endRun = async (id: string, error: string): Promise<void> => {
    await update(id, (record) => (record.state !== 'running' || record.planning.done ? record : recordPlanning(record, { error, pieces: record.pieces.enqueued, enqueued: new Map() }, now())));
  };

  const pointAt = async (record: RunRecord): Promise<void> => {
    const folder = await container();
    const pointer: RunPointer = { id: record.id, state: record.state, ...(record.finishedAt === undefined ? {} : { finishedAt: record.finishedAt }) };
    await Promise.all(Object.keys(record.targets).flatMap((target) => [
      writeJson(folder.getBlockBlobClient(`last-run/${scope}/${target}.json`), pointer, {}),
      ...(record.state === 'complete' ? [writeJson(folder.getBlockBlobClient(`last-complete-run/${scope}/${target}.json`), pointer, {})] : []),
    ]));
  };

  return {
    config,
    clients: hostClients,
    queueName: eventConfig.queueName,

    open: openRun,

    async enqueueRun(provider, trigger) {
      const id = await openRun(provider, trigger);
      try {
        await sendPieces([{ v: 1, start: id, provider }]);
      } catch (error) {
        await endRun(id, `the run could not be put on the queue ${eventConfig.queueName}: ${describeError(error)}`).catch(() => undefined);
        throw error;
      }
      return id;
    },

    async claimRun(id, delivery) {
      let claim: RunClaim = 'held';
      await update(id, (record) => {
        const claimed = claimRun(record, delivery, now());
        claim = claimed.claim;
        return claimed.record;
      });
      return claim;
    },

    endRun,

    async failAttempt(id, delivery, error) {
      const record = await update(id, (current) => {
        const mine = current.state === 'running' && !current.planning.done && current.delivery?.message === delivery.message && current.delivery.dequeueCount === delivery.dequeueCount;
        if (!mine || current.delivery?.error !== undefined) return current;
        return delivery.lastAttempt ? recordPlanning(current, { error, pieces: current.pieces.enqueued, enqueued: new Map() }, now()) : releaseRun(current, error, now());
      });
      return record.state === 'running' && !record.planning.done;
    },

    fanOut(id, always, targets) {
      const open = async (): Promise<{ id: string } | { refused: string }> => {
        const folder = await container();
        for (const target of targets) {
          const pointer = await readJson<{ id: string }>(folder.getBlockBlobClient(`fanned-out/${encodeURIComponent(target)}.json`));
          const earlier = pointer === undefined ? undefined : (await readJson<RunRecord>(await recordBlob(pointer.value.id)))?.value;
          // An earlier run that made no progress for this long has lost its messages: it no longer holds the keys.
          if (earlier !== undefined && earlier.id !== id && earlier.state === 'running' && now() - Date.parse(earlier.updatedAt) < STALLED_RUN_MS) {
            return { refused: `run ${earlier.id} is still working through ${piecesPending(earlier)} queued piece(s) for ${target}; they are enqueued again once it has ended (or made no progress for ${STALLED_RUN_MS / 60_000} min)` };
          }
        }
        await Promise.all(targets.map((target) => writeJson(folder.getBlockBlobClient(`fanned-out/${encodeURIComponent(target)}.json`), { id }, {})));
        return { id };
      };
      return new FanOut<TargetName>(config.fanOut, { open, send: sendPieces }, { always });
    },

    closePlanning(id, fanOut, ended) {
      return update(id, (record) => {
        // A queued run that failed before it enqueued anything is run again by its message's next delivery.
        if (ended.report === undefined && record.delivery !== undefined && !record.delivery.lastAttempt && (fanOut?.pieces ?? 0) === 0) return releaseRun(record, ended.error ?? 'the attempt failed', now());
        return recordPlanning(record, { ...ended, pieces: fanOut?.pieces ?? 0, enqueued: fanOut?.enqueued ?? new Map() }, now());
      });
    },

    async workPiece(events, piece, lastAttempt, onEvent) {
      const report = await events.reconcile({ provider: piece.target, keys: piece.keys.map((key) => ({ key })), ...(onEvent === undefined ? {} : { onEvent }) });
      const target = report.targets.find((each) => each.target === piece.target);
      // A deletion the event deletion window held is no failure to retry: the next full run decides.
      const failures = retryableFailureList(report).filter((failure) => failure.target === 'source' || failure.target === piece.target);
      if (failures.length > 0 && !lastAttempt) {
        throw new Error(`run ${piece.run} piece ${piece.piece}: ${failures.length} of ${piece.keys.length} key(s) were not reconciled on ${piece.target} (${failures.slice(0, 3).map((failure) => failure.message).join('; ')}); the host retries the message`);
      }
      await update(piece.run, (record) => recordPiece(record, {
        piece: piece.piece,
        target: piece.target,
        poisoned: failures.length > 0,
        counts: {
          copied: target?.copied ?? 0,
          replaced: target?.replaced ?? 0,
          deleted: target?.deleted ?? 0,
          unchanged: target?.unchanged ?? 0,
          failed: failures.length > 0 ? Math.max(1, target?.failed ?? 0) : 0,
          deferred: target?.deferred ?? 0,
          bytes: (target?.bytesStreamed ?? 0) + (target?.bytesCopiedServerSide ?? 0),
        },
        failures,
      }, now()));
      if (failures.length > 0) throw new Error(`run ${piece.run} piece ${piece.piece}: ${failures.length} key(s) still not reconciled on ${piece.target} after the last attempt; recorded in the run, the message goes to the poison queue`);
    },

    async get(id) {
      let blob: BlockBlobClient;
      try {
        blob = await recordBlob(id);
      } catch (error) {
        if (error instanceof RunIdError) return undefined;
        throw error;
      }
      return (await readJson<RunRecord>(blob))?.value;
    },

    async overview() {
      const [folder, each] = await Promise.all([container(), hostClients()]);
      const targets: Record<string, StatusOverview['targets'][TargetName]> = {};
      for (const target of ['azure', 'oci'] as const) {
        const [lastRun, lastComplete] = await Promise.all([readJson<RunPointer>(folder.getBlockBlobClient(`last-run/${scope}/${target}.json`)), readJson<RunPointer>(folder.getBlockBlobClient(`last-complete-run/${scope}/${target}.json`))]);
        targets[target] = {
          lastCompleteRun: lastComplete === undefined ? null : { id: lastComplete.value.id, finishedAt: lastComplete.value.finishedAt ?? '' },
          lastRun: lastRun?.value ?? null,
        };
      }
      const count = async (name: string): Promise<number> => {
        try {
          return (await each.queues.getQueueClient(name).getProperties()).approximateMessagesCount ?? 0;
        } catch (error) {
          if (error instanceof RestError && error.statusCode === 404) return 0;
          throw error;
        }
      };
      const [pending, poisoned] = await Promise.all([count(eventConfig.queueName), count(`${eventConfig.queueName}-poison`)]);
      return { targets, queue: { name: eventConfig.queueName, pending, poisoned } };
    },
  };
}

/** A run id that cannot name a run (the route's `{id}` is user input). */
class RunIdError extends Error {
  constructor(id: string) {
    super(`${JSON.stringify(id.slice(0, 64))} is not a run id: expected something like 20261203T074500Z-3f9c2a1b`);
  }
}

/** A run's state as readers see it: `stalled` when it is still `running` but its record has not changed for STALLED_RUN_MS. */
export function viewedState(record: RunRecord, nowMs: number): RunState | 'stalled' {
  return record.state === 'running' && nowMs - Date.parse(record.updatedAt) >= STALLED_RUN_MS ? 'stalled' : record.state;
}

/** The JSON shape of a run for `GET /api/runs/{id}` and `artifacts-sync status <id>`. */
export function runView(record: RunRecord, nowMs: number = Date.now()): object {
  const state = viewedState(record, nowMs);
  return {
    ...record,
    state,
    ...(state === 'stalled' ? { stalled: `no progress since ${record.updatedAt} (over ${STALLED_RUN_MS / 60_000} min): the invocation running it or its queued messages were lost; the next run mirrors what it left` } : {}),
    pieces: { enqueued: record.pieces.enqueued, finished: record.pieces.finished.length, poisoned: record.pieces.poisoned, pending: piecesPending(record) },
  };
}

async function readJson<T>(blob: BlockBlobClient): Promise<{ value: T; etag: string } | undefined> {
  try {
    const answer = await blob.download(0);
    return { value: JSON.parse(await text(answer.readableStreamBody)) as T, etag: answer.etag ?? '' };
  } catch (error) {
    if (error instanceof RestError && error.statusCode === 404) return undefined;
    throw new Error(`could not read ${blob.name} in ${RUN_STATUS_CONTAINER}: ${describeError(error)}`);
  }
}

async function writeJson(blob: BlockBlobClient, value: unknown, conditions: { ifMatch?: string; ifNoneMatch?: string }): Promise<void> {
  const body = JSON.stringify(value);
  await blob.upload(body, Buffer.byteLength(body), { conditions, blobHTTPHeaders: { blobContentType: 'application/json' } });
}
