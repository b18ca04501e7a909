/**
 * Fan-out of a full run's transfers onto the object queue. The planning run hands every transfer to a
 * `FanOut` as soon as the listings make it certain (`TransferSink`); while the run's transfer work
 * stays under the thresholds the transfers are only held (a bounded number) and run inline as before;
 * once it crosses them, the run gets a status record and every transfer goes on the queue, packed into
 * messages of many keys of one target (a "piece"), which the queue workers reconcile like event keys.
 * Deletions never go on the queue: they stay in the planning run, behind its delete guard.
 */
import type { TransferSink } from './listings.ts';
import type { ProviderChoice, TargetName, TransferAction } from './types.ts';

/** Settings of the fan-out (SYNC_FAN_OUT_*); see config.ts for the defaults and docs/fan-out.md for their meaning. */
export interface FanOutSettings {
  /** Transfers (all targets) from which a run fans out instead of transferring inline. */
  readonly minTransfers: number;
  /** Bytes to transfer (all targets) from which a run fans out. */
  readonly minBytes: number;
  /** Most keys in one message. */
  readonly keysPerMessage: number;
  /** Most object bytes in one message (a single larger object still gets a message of its own). */
  readonly bytesPerMessage: number;
}

/** One message of a fanned-out run: keys of one target, reconciled by one queue worker invocation. */
export interface RunPieceMessage {
  readonly v: 1;
  /** The run's id. */
  readonly run: string;
  /** The piece's number within the run, from 0: the run's record counts finished pieces by it. */
  readonly piece: number;
  readonly target: TargetName;
  readonly keys: readonly string[];
}

/** What the fan-out needs from the host: a run record to open, and the queue. */
export interface FanOutPort {
  /**
   * Called when the run turns out to be large: resolves with the run's id, or with why its transfers
   * must not go on the queue now (an earlier fanned-out run is still working through the same keys).
   */
  open(): Promise<{ readonly id: string } | { readonly refused: string }>;
  /** Puts the messages on the queue; resolves once every one is stored. */
  send(messages: readonly RunPieceMessage[]): Promise<void>;
}

/** What a fanned-out run put on the queue, per target. */
export interface EnqueuedCounts {
  readonly keys: number;
  readonly bytes: number;
  readonly messages: number;
}

/**
 * The queue limits a message to 64 KiB; it travels base64-encoded (4 characters per 3 bytes), so its
 * JSON gets 48 KiB, less room for the envelope.
 */
export const MAX_MESSAGE_JSON_BYTES = 48 * 1024 - 512;
/** Messages sent to the queue at once. */
const SEND_BATCH = 32;

const encoder = new TextEncoder();
const jsonBytes = (value: unknown): number => encoder.encode(JSON.stringify(value)).length;

/** Keys of one target being packed into the next message. */
interface OpenPiece {
  keys: string[];
  jsonBytes: number;
  bytes: number;
}

export class FanOut<Name extends TargetName> implements TransferSink<Name> {
  readonly #settings: FanOutSettings;
  readonly #port: FanOutPort;
  readonly #always: boolean;
  /** Transfers held while the run is still small enough to run inline. */
  readonly #held = new Map<Name, TransferAction[]>();
  #heldCount = 0;
  #heldBytes = 0;
  #runId: string | undefined;
  /** Why the run's transfers were neither enqueued nor run inline; set instead of `#runId`. */
  #refused: string | undefined;
  readonly #withheld = new Map<Name, number>();
  #nextPiece = 0;
  #sentPieces = 0;
  readonly #open = new Map<Name, OpenPiece>();
  #unsent: RunPieceMessage[] = [];
  readonly #enqueued = new Map<Name, { keys: number; bytes: number; messages: number }>();

  /** `always`: fan out whatever the plan's size (the CLI's `--enqueue`). */
  constructor(settings: FanOutSettings, port: FanOutPort, options: { readonly always?: boolean } = {}) {
    this.#settings = settings;
    this.#port = port;
    this.#always = options.always ?? false;
  }

  /** The run's id once it fanned out. */
  get runId(): string | undefined {
    return this.#runId;
  }

  /** What went on the queue per target (empty when the run stayed inline). */
  get enqueued(): ReadonlyMap<Name, EnqueuedCounts> {
    return this.#enqueued;
  }

  async take(target: Name, actions: readonly TransferAction[]): Promise<void> {
    if (this.#refused !== undefined) {
      this.#withheld.set(target, (this.#withheld.get(target) ?? 0) + actions.length);
      return;
    }
    if (this.#runId === undefined) {
      let held = this.#held.get(target);
      if (held === undefined) this.#held.set(target, (held = []));
      for (const action of actions) {
        held.push(action);
        this.#heldCount += 1;
        this.#heldBytes += action.source.size;
      }
      if (!this.#always && this.#heldCount < this.#settings.minTransfers && this.#heldBytes < this.#settings.minBytes) return;
      await this.#start();
      return;
    }
    for (const action of actions) this.#pack(target, action);
    if (this.#unsent.length >= SEND_BATCH) await this.#sendUnsent();
  }

  /**
   * After the listings: sends what is still packed, and opens the run when it must fan out even with
   * nothing to transfer (`always`). Returns the run's id when it fanned out.
   */
  async finish(): Promise<string | undefined> {
    if (this.#runId === undefined && this.#refused === undefined && this.#always) await this.#start();
    if (this.#runId === undefined) return undefined;
    for (const target of [...this.#open.keys()]) this.#close(target);
    await this.#sendUnsent();
    return this.#runId;
  }

  /**
   * The transfers of `target` this run does not do itself, and why: enqueued for the workers, or
   * withheld because an earlier fanned-out run still works on them. `undefined`: none.
   */
  handedOff(target: Name): { readonly keys: number; readonly note: string } | undefined {
    const withheld = this.#withheld.get(target);
    if (withheld !== undefined) return { keys: withheld, note: `${withheld} transfer(s) not enqueued: ${this.#refused}` };
    const enqueued = this.#enqueued.get(target);
    if (enqueued === undefined) return undefined;
    return { keys: enqueued.keys, note: `fanned out: ${enqueued.keys} transfer(s) enqueued in ${enqueued.messages} message(s) as run ${this.#runId}; the queue workers do them` };
  }

  /** Transfers neither enqueued nor run inline: an earlier fanned-out run still works on these targets. */
  get withheld(): number {
    let keys = 0;
    for (const count of this.#withheld.values()) keys += count;
    return keys;
  }

  /** The transfers a run that stayed inline runs itself (none once it fanned out). */
  inline(target: Name): readonly TransferAction[] {
    return this.#held.get(target) ?? [];
  }

  /**
   * The pieces on the queue so far (every piece, once `finish` resolved). Pieces packed but not sent
   * (the listing failed first) are not counted: the run's record then waits for no piece that never came.
   */
  get pieces(): number {
    return this.#sentPieces;
  }

  async #start(): Promise<void> {
    const opened = await this.#port.open();
    const held = [...this.#held];
    this.#held.clear();
    if ('refused' in opened) {
      this.#refused = opened.refused;
      for (const [target, actions] of held) this.#withheld.set(target, actions.length);
      return;
    }
    this.#runId = opened.id;
    for (const [target, actions] of held) {
      for (const action of actions) this.#pack(target, action);
      if (this.#unsent.length >= SEND_BATCH) await this.#sendUnsent();
    }
    await this.#sendUnsent();
  }

  #pack(target: Name, action: TransferAction): void {
    const keyBytes = jsonBytes(action.key) + 1;
    let piece = this.#open.get(target);
    if (piece !== undefined && (piece.keys.length >= this.#settings.keysPerMessage || piece.bytes + action.source.size > this.#settings.bytesPerMessage || piece.jsonBytes + keyBytes > MAX_MESSAGE_JSON_BYTES)) {
      this.#close(target);
      piece = undefined;
    }
    if (piece === undefined) {
      const envelope = jsonBytes({ v: 1, run: this.#runId, piece: Number.MAX_SAFE_INTEGER, target, keys: [] });
      this.#open.set(target, (piece = { keys: [], jsonBytes: envelope, bytes: 0 }));
    }
    piece.keys.push(action.key);
    piece.jsonBytes += keyBytes;
    piece.bytes += action.source.size;
  }

  #close(target: Name): void {
    const piece = this.#open.get(target);
    this.#open.delete(target);
    if (piece === undefined || piece.keys.length === 0) return;
    this.#unsent.push({ v: 1, run: this.#runId!, piece: this.#nextPiece, target, keys: piece.keys });
    this.#nextPiece += 1;
    const counts = this.#enqueued.get(target) ?? { keys: 0, bytes: 0, messages: 0 };
    this.#enqueued.set(target, { keys: counts.keys + piece.keys.length, bytes: counts.bytes + piece.bytes, messages: counts.messages + 1 });
  }

  async #sendUnsent(): Promise<void> {
    if (this.#unsent.length === 0) return;
    const messages = this.#unsent;
    this.#unsent = [];
    await this.#port.send(messages);
    this.#sentPieces += messages.length;
  }
}

/**
 * A queued full run (`POST /api/sync` with the host storage): a queue worker runs the mirror of
 * `provider` as run `start`, whose record the HTTP trigger opened. A third kind of message on the
 * object queue, beside S3 event keys and run pieces.
 */
export interface RunStartMessage {
  readonly v: 1;
  /** The run's id; its record is open and waits for a worker. */
  readonly start: string;
  readonly provider: ProviderChoice;
}

/** The run piece a queue entry holds, or `undefined` when it is another kind of message (an S3 event, a queued run). */
export function readRunPiece(entry: unknown): RunPieceMessage | undefined {
  const value = queueObject(entry);
  if (value === undefined || !('run' in value)) return undefined;
  const keys = value['keys'];
  const target = value['target'];
  if (value['v'] !== 1 || typeof value['run'] !== 'string' || !Number.isSafeInteger(value['piece']) || (target !== 'azure' && target !== 'oci') || !Array.isArray(keys) || keys.length === 0 || !keys.every((key) => typeof key === 'string' && key !== '')) {
    throw new Error(`the queue message is not a run piece: expected {"v":1,"run":"<id>","piece":<n>,"target":"azure"|"oci","keys":["..."]}, got ${JSON.stringify(value).slice(0, 200)}`);
  }
  return { v: 1, run: value['run'], piece: value['piece'] as number, target, keys: keys as string[] };
}

/** The queued run a queue entry holds, or `undefined` when it is another kind of message. */
export function readRunStart(entry: unknown): RunStartMessage | undefined {
  const value = queueObject(entry);
  if (value === undefined || !('start' in value)) return undefined;
  const provider = value['provider'];
  if (value['v'] !== 1 || typeof value['start'] !== 'string' || (provider !== 'all' && provider !== 'azure' && provider !== 'oci')) {
    throw new Error(`the queue message is not a queued run: expected {"v":1,"start":"<run id>","provider":"all"|"azure"|"oci"}, got ${JSON.stringify(value).slice(0, 200)}`);
  }
  return { v: 1, start: value['start'], provider };
}

/** A queue entry as a JSON object (the host hands JSON parsed, other text as a string), or `undefined`. */
function queueObject(entry: unknown): Record<string, unknown> | undefined {
  let value = entry;
  if (typeof entry === 'string') {
    try {
      value = JSON.parse(entry);
    } catch {
      return undefined;
    }
  }
  return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : undefined;
}
