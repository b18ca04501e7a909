/**
 * Riding out a throttled or briefly unavailable service. The SDKs retry a few times within seconds
 * (and the Azure SDK ignores Retry-After), so a 30-second `ServerBusy` or `SlowDown` burst would end
 * a target. Every store call goes through `rideOutThrottling`: a call answered 429 or 503 waits what
 * the service asked for (Retry-After, x-ms-retry-after-ms, x-ms-retry-after) or a growing backoff, and
 * is tried again, as long as the call, its waits and the SDK's own retries take at most `budgetMs` in all.
 */

/** What a store learns from a failed call: whether the service throttled it, and what it asked to wait. */
export interface ThrottleAnswer {
  /** Milliseconds the service asked to wait, when it said. */
  readonly retryAfterMs: number | undefined;
}

export interface ThrottlePolicy {
  /** Milliseconds one call may take from its first attempt, waits included, before a throttled answer is final (0: never wait). */
  readonly budgetMs: number;
  /** `undefined` when the error is not a throttled answer (429/503). */
  readonly throttled: (error: unknown) => ThrottleAnswer | undefined;
}

/** First backoff when the service names no wait; doubled each time, up to `MAX_BACKOFF_MS`. */
const FIRST_BACKOFF_MS = 1000;
const MAX_BACKOFF_MS = 16_000;
/** A `Retry-After: 0` still waits this long. */
const MIN_WAIT_MS = 100;

export async function rideOutThrottling<T>(call: () => Promise<T>, policy: ThrottlePolicy, signal?: AbortSignal): Promise<T> {
  // The budget counts from the first attempt: the SDK's own retries inside `call` spend it too.
  const startedMs = Date.now();
  let backoff = FIRST_BACKOFF_MS;
  for (;;) {
    try {
      return await call();
    } catch (error) {
      const answer = signal?.aborted === true ? undefined : policy.throttled(error);
      if (answer === undefined) throw error;
      // What the service asks for, when it says; a growing backoff when it does not.
      const wait = answer.retryAfterMs !== undefined ? Math.max(answer.retryAfterMs, MIN_WAIT_MS) : backoff;
      if (Date.now() - startedMs + wait > policy.budgetMs) throw error;
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
      await sleep(wait, signal);
    }
  }
}

/** Milliseconds asked for by `Retry-After` (seconds or an HTTP date), `x-ms-retry-after-ms` or `x-ms-retry-after` (seconds). */
export function retryAfterMs(header: (name: string) => string | undefined, nowMs = Date.now()): number | undefined {
  const ms = header('x-ms-retry-after-ms');
  if (ms !== undefined && /^\d+$/.test(ms.trim())) return Number(ms.trim());
  for (const name of ['x-ms-retry-after', 'retry-after']) {
    const value = header(name)?.trim();
    if (value === undefined || value === '') continue;
    if (/^\d+(\.\d+)?$/.test(value)) return Math.round(Number(value) * 1000);
    const date = Date.parse(value);
    if (!Number.isNaN(date)) return Math.max(0, date - nowMs);
  }
  return undefined;
}

/** Statuses that mean "slow down" or "not now": worth waiting for. */
export function isThrottleStatus(status: number | undefined): boolean {
  return status === 429 || status === 503;
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted === true) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
