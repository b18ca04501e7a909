/**
 * The small pieces of issue 11, as pure functions and one in-memory class: redaction that never changes
 * an object key, the memory budget's abort listeners, presigned URL lifetimes, Retry-After parsing and
 * the throttling loop, the progress ledger's document.
 */
import { describe, expect, it } from 'vitest';
import { ByteBudget } from '../src/core/concurrency.ts';
import { StoreError, describeError, redactSecrets } from '../src/core/errors.ts';
import { parseLedger, serializeLedger } from '../src/core/ledger.ts';
import { retryAfterMs, rideOutThrottling } from '../src/core/retry.ts';
import { presignLifetimeSeconds } from '../src/core/transfer-one.ts';
import { redactedJson } from '../src/functions/run-sync.ts';

const SIGNATURE = 'a'.repeat(64);

describe('redaction', () => {
  const keys = ['docs/Signature=draft.txt', 'x?sig=short', 'reports/Credential=me.pdf', 'AccountKey=notes.txt', `odd/X-Amz-Signature=${SIGNATURE}.bin`];

  it.each(keys)('never changes the object key %s in a store error, its description, or a log line', (key) => {
    const error = new StoreError({ store: 's3://bucket', operation: 'read', key, scope: 'object', status: 403, detail: `GET /bucket?X-Amz-Signature=${SIGNATURE}&X-Amz-Credential=AKIAEXAMPLE%2F20260101%2Fus-east-1 refused` });
    expect(error.message).toContain(JSON.stringify(key));
    expect(describeError(error)).toContain(JSON.stringify(key));
    expect(JSON.parse(redactedJson({ key, message: describeError(error) })).key).toBe(key);
    // The secrets beside it are still masked.
    expect(error.message).toContain('X-Amz-Signature=[redacted]');
    expect(error.message).toContain('X-Amz-Credential=[redacted]');
    expect(error.message).not.toContain(SIGNATURE.repeat(1) + '&');
  });

  it('still masks a SigV4 Authorization header, a SAS signature and a connection string key', () => {
    const text = `Authorization: AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=${SIGNATURE}; ` +
      'https://a.blob.core.windows.net/c/b?sv=2021&sig=AbCdEfGhIjKlMnOpQrStUvWxYz0123%3D; AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;';
    const masked = redactSecrets(text);
    expect(masked).toContain('Credential=[redacted]');
    expect(masked).toContain('Signature=[redacted]');
    expect(masked).toContain('sig=[redacted]');
    expect(masked).toContain('AccountKey=[redacted]');
    expect(masked).not.toContain(SIGNATURE);
  });
});

describe('the memory budget', () => {
  it('leaves no abort listener behind after 2,000 borrows that waited', async () => {
    const budget = new ByteBudget(1024);
    const controller = new AbortController();
    let listeners = 0;
    const add = controller.signal.addEventListener.bind(controller.signal);
    const remove = controller.signal.removeEventListener.bind(controller.signal);
    controller.signal.addEventListener = ((...args: Parameters<AbortSignal['addEventListener']>) => {
      listeners += 1;
      add(...args);
    }) as AbortSignal['addEventListener'];
    controller.signal.removeEventListener = ((...args: Parameters<AbortSignal['removeEventListener']>) => {
      listeners -= 1;
      remove(...args);
    }) as AbortSignal['removeEventListener'];
    let held = await budget.borrow(1024, controller.signal);
    for (let index = 0; index < 2000; index += 1) {
      // Each borrow waits for the one before it to be released.
      const next = budget.borrow(1000 + (index % 2) * 24, controller.signal);
      held.release();
      held = await next;
    }
    held.release();
    expect(listeners).toBe(0);
  });

  it('a waiting borrow still ends when its signal aborts', async () => {
    const budget = new ByteBudget(1024);
    const held = await budget.borrow(1024);
    const controller = new AbortController();
    const waiting = budget.borrow(1000, controller.signal);
    controller.abort(new Error('stop'));
    await expect(waiting).rejects.toThrow('stop');
    held.release();
  });
});

describe('presigned URL lifetime', () => {
  const now = 1_000_000_000_000;
  it('lasts until the run cancels transfers, plus a minute, when the run has a deadline', () => {
    expect(presignLifetimeSeconds(10 * 1024 ** 3, now, now + 200_000, 3600)).toBe(260);
  });
  it('without a deadline, 15 minutes plus a second per MiB', () => {
    expect(presignLifetimeSeconds(1024 ** 2 * 100, now, undefined, 3600)).toBe(15 * 60 + 100);
  });
  it('never more than SYNC_PRESIGN_TTL_SECONDS, never less than 60 s', () => {
    expect(presignLifetimeSeconds(1024 ** 4, now, undefined, 3600)).toBe(3600);
    expect(presignLifetimeSeconds(1, now, now + 1000, 3600)).toBe(61);
    expect(presignLifetimeSeconds(1, now, now - 5000, 3600)).toBe(60);
  });
});

describe('throttling', () => {
  it('reads Retry-After in seconds or as a date, and x-ms-retry-after(-ms)', () => {
    const headers = (values: Record<string, string>) => (name: string) => values[name];
    expect(retryAfterMs(headers({ 'retry-after': '20' }))).toBe(20_000);
    expect(retryAfterMs(headers({ 'retry-after': new Date(1_000_030_000).toUTCString() }), 1_000_000_000)).toBe(30_000);
    expect(retryAfterMs(headers({ 'x-ms-retry-after-ms': '1500', 'retry-after': '9' }))).toBe(1500);
    expect(retryAfterMs(headers({ 'x-ms-retry-after': '3' }))).toBe(3000);
    expect(retryAfterMs(headers({}))).toBeUndefined();
  });

  it('waits what the service asks, within the budget, and gives up beyond it', async () => {
    const throttled = new Error('503');
    let calls = 0;
    const policy = { budgetMs: 2500, throttled: (error: unknown) => (error === throttled ? { retryAfterMs: 1000 } : undefined) };
    await expect(rideOutThrottling(async () => {
      calls += 1;
      if (calls < 3) throw throttled;
      return 'done';
    }, policy)).resolves.toBe('done');
    calls = 0;
    await expect(rideOutThrottling(async () => {
      calls += 1;
      throw throttled;
    }, policy)).rejects.toBe(throttled);
    expect(calls).toBe(3);
    const other = new Error('400');
    await expect(rideOutThrottling(async () => Promise.reject(other), policy)).rejects.toBe(other);
  }, 20_000);
});

describe('the progress ledger', () => {
  it('reads back what it wrote, and drops malformed entries rather than failing', () => {
    const entries = new Map([['a/b.img', { etag: 'e1', deferredRuns: 3, reason: 'deadline' as const, upload: { partSize: 5, token: 'upload-1' } }], ['c', { etag: 'e2', deferredRuns: 1, reason: 'target-down' as const }]]);
    expect(parseLedger(serializeLedger(entries))).toEqual(entries);
    expect(parseLedger('not json')).toEqual(new Map());
    expect(parseLedger('{"objects":{"x":{"etag":1}}}')).toEqual(new Map());
  });
});
