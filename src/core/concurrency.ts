/** Small primitives for bounded concurrency; used by the runner, the transfers and the stores. */

/** Runs `work` for every item with at most `limit` running at once; resolves when all have settled. */
export async function forEachBounded<T>(items: Iterable<T>, limit: number, work: (item: T) => Promise<void>): Promise<void> {
  const iterator = items[Symbol.iterator]();
  const lanes: Promise<void>[] = [];
  let failure: { error: unknown } | undefined;
  const lane = async (): Promise<void> => {
    for (let next = iterator.next(); !next.done && failure === undefined; next = iterator.next()) {
      try {
        await work(next.value);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  for (let index = 0; index < Math.max(1, limit); index += 1) lanes.push(lane());
  await Promise.all(lanes);
  if (failure !== undefined) throw failure.error;
}

/** Memory for one part; `release` gives it back. */
export interface PartBuffer {
  readonly bytes: Uint8Array;
  release(): void;
}

/**
 * A budget of bytes held in memory at once, shared by every transfer of a run: a part waits for
 * room before it is read, so memory stays bounded whatever the object sizes and concurrency.
 * Released part buffers are kept for the next part of the same size (they still count against the
 * budget), so a long run does not ask the system for fresh memory at every part.
 */
export class ByteBudget {
  readonly capacity: number;
  #available: number;
  readonly #waiting: { bytes: number; resolve: () => void }[] = [];
  /** Released buffers by size, ready to lend again. */
  readonly #pool = new Map<number, Uint8Array[]>();

  constructor(capacity: number) {
    this.capacity = capacity;
    this.#available = capacity;
  }

  /** Lends a buffer of exactly `size` bytes (contents undefined), waiting for room when the budget is spent. */
  async borrow(size: number, signal?: AbortSignal): Promise<PartBuffer> {
    let bytes = this.#pool.get(size)?.pop();
    if (bytes === undefined) {
      this.#dropPooled(size);
      await this.#take(size, signal);
      bytes = new Uint8Array(size);
    }
    const lent = bytes;
    let returned = false;
    return {
      bytes: lent,
      release: () => {
        if (returned) return;
        returned = true;
        if (this.#waiting.length > 0) {
          this.#give(Math.min(lent.byteLength, this.capacity));
          return;
        }
        const free = this.#pool.get(lent.byteLength) ?? [];
        free.push(lent);
        this.#pool.set(lent.byteLength, free);
      },
    };
  }

  /** Frees kept buffers of other sizes until `size` more bytes would fit. */
  #dropPooled(size: number): void {
    for (const [poolSize, free] of this.#pool) {
      while (free.length > 0 && this.#available < Math.min(size, this.capacity)) {
        free.pop();
        this.#give(Math.min(poolSize, this.capacity));
      }
    }
  }

  async #take(bytes: number, signal?: AbortSignal): Promise<void> {
    const wanted = Math.min(bytes, this.capacity);
    if (this.#waiting.length === 0 && this.#available >= wanted) {
      this.#available -= wanted;
      return;
    }
    signal?.throwIfAborted();
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        const position = this.#waiting.indexOf(entry);
        if (position >= 0) {
          this.#waiting.splice(position, 1);
          reject(signal!.reason);
        }
      };
      // The listener goes when the borrow is served: a long run makes thousands of borrows on one signal.
      const entry = {
        bytes: wanted,
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      this.#waiting.push(entry);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  #give(bytes: number): void {
    this.#available += bytes;
    while (this.#waiting.length > 0) {
      const first = this.#waiting[0]!;
      if (first.bytes > this.#available) return;
      this.#waiting.shift();
      this.#available -= first.bytes;
      first.resolve();
    }
  }
}

/** A counting semaphore: `run` waits for one of `limit` slots. */
export class Slots {
  #free: number;
  readonly #waiting: (() => void)[] = [];
  constructor(limit: number) {
    this.#free = Math.max(1, limit);
  }
  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.#free > 0) this.#free -= 1;
    else await new Promise<void>((resolve) => this.#waiting.push(resolve));
    try {
      return await work();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#free += 1;
    }
  }
}
