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

/**
 * A budget of bytes held in memory at once, shared by every transfer of a run: a part waits for
 * room before it is read, so memory stays bounded whatever the object sizes and concurrency.
 */
export class ByteBudget {
  readonly capacity: number;
  #available: number;
  readonly #waiting: { bytes: number; resolve: () => void }[] = [];

  constructor(capacity: number) {
    this.capacity = capacity;
    this.#available = capacity;
  }

  /** Waits until `bytes` (capped at the capacity) are free and takes them; returns the function that gives them back. */
  async acquire(bytes: number, signal?: AbortSignal): Promise<() => void> {
    const wanted = Math.min(bytes, this.capacity);
    if (this.#waiting.length === 0 && this.#available >= wanted) {
      this.#available -= wanted;
    } else {
      await new Promise<void>((resolve, reject) => {
        const entry = { bytes: wanted, resolve };
        this.#waiting.push(entry);
        signal?.addEventListener('abort', () => {
          const position = this.#waiting.indexOf(entry);
          if (position >= 0) {
            this.#waiting.splice(position, 1);
            reject(signal.reason);
          }
        }, { once: true });
      });
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#available += wanted;
      this.#wake();
    };
  }

  #wake(): void {
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
