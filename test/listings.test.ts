import { describe, expect, inject, it } from 'vitest';
import { KeyOrder, compareUtf8, planWhileListing, type Listing, type TargetListing } from '../src/core/listings.ts';
import { DEFAULT_DELETE_LIMITS, MirrorPlanner, describeAction, planMirror } from '../src/core/plan.ts';
import { runMirror } from '../src/core/run.ts';
import { DEFAULT_TRANSFER_TUNING } from '../src/core/transfer.ts';
import type { ObjectInfo, Plan } from '../src/core/types.ts';
import { s3Store } from '../src/stores/s3.ts';
import { createScenario, putS3Object, putSource, readBucket } from './support/scenario.ts';

const T0 = Date.parse('2026-01-01T00:00:00Z');
const object = (key: string, size = 1, lastModifiedMs = T0): ObjectInfo => ({ key, size, lastModifiedMs, etag: `etag-${key}-${size}` });
const keyOf = (index: number): string => `releases/${String(index).padStart(6, '0')}.zip`;
const LIMITS = { ...DEFAULT_DELETE_LIMITS, maxDeleteCount: 100_000, maxDeletePercent: 100 };
const emulators = inject('emulators');
/** An S3 store on the shared s3rver, for the tests that run whole mirrors. */
const s3rverStore = (label: string, bucket: string): ReturnType<typeof s3Store> =>
  s3Store({ label, bucket, region: emulators.s3.region, endpoint: emulators.s3.endpoint, credentials: { accessKeyId: emulators.s3.accessKeyId, secretAccessKey: emulators.s3.secretAccessKey } });
const RUN_OPTIONS = { provider: 'oci', tuning: DEFAULT_TRANSFER_TUNING, memoryBudget: 64 * 1024 * 1024, deleteLimits: LIMITS } as const;

/** A listing served from memory in pages, recording whether it was stopped before its end. */
function listing(label: string, objects: readonly ObjectInfo[], pageSize: number, options: { failAfterPages?: number } = {}): Listing & { stoppedEarly: boolean; pagesServed: number } {
  const state = {
    label,
    stoppedEarly: false,
    pagesServed: 0,
    pages: async function* (signal: AbortSignal): AsyncIterable<readonly ObjectInfo[]> {
      let finished = false;
      try {
        for (let start = 0; start < objects.length; start += pageSize) {
          if (state.pagesServed === options.failAfterPages) throw new Error(`${label}: page ${state.pagesServed + 1} failed`);
          await new Promise((resolve) => setTimeout(resolve, 0));
          signal.throwIfAborted();
          state.pagesServed += 1;
          yield objects.slice(start, start + pageSize);
        }
        finished = true;
      } finally {
        if (!finished) state.stoppedEarly = true;
      }
    },
  };
  return state;
}

const target = <Name extends string>(name: Name, base: Listing): TargetListing<Name> => ({ name, label: base.label, pages: base.pages });

/** What a plan says, independent of the order actions were found in. */
function summary(plan: Plan): { actions: string[]; unchanged: number; allowed: boolean } {
  return {
    actions: [...plan.transfers, ...plan.deletions].map((action) => `${action.key}: ${describeAction(action)}`).sort(),
    unchanged: plan.unchanged,
    allowed: plan.deleteVerdict.allowed,
  };
}

/** A source of 3,000 objects and a target that differs on every 50th: size, timestamp, missing, plus extras. */
function fixture(): { source: ObjectInfo[]; target: ObjectInfo[] } {
  const source: ObjectInfo[] = [];
  const target: ObjectInfo[] = [];
  for (let index = 0; index < 3000; index += 1) {
    source.push(object(keyOf(index), 10, T0 + 5000));
    if (index % 50 === 1) target.push(object(keyOf(index), 11, T0));
    else if (index % 50 === 2) target.push(object(keyOf(index), 10, T0));
    else if (index % 50 !== 3) target.push(object(keyOf(index), 10, T0 + 9000));
    if (index % 50 === 4) target.push(object(`${keyOf(index)}.old`, 10, T0));
  }
  return { source, target };
}

describe('MirrorPlanner', () => {
  it('gives the same plan whatever order and interleaving the two listings arrive in', () => {
    const { source, target } = fixture();
    const expected = summary(planMirror(source, target, LIMITS));
    expect(expected.actions.filter((action) => action.endsWith('copy missing'))).toHaveLength(60);
    expect(expected.actions.filter((action) => action.includes('replace size'))).toHaveLength(60);
    expect(expected.actions.filter((action) => action.endsWith('source newer'))).toHaveLength(60);
    expect(expected.actions.filter((action) => action.endsWith('delete not in source'))).toHaveLength(60);

    let seed = 7;
    const random = (): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const shuffled = <T>(items: readonly T[]): T[] => {
      const copy = [...items];
      for (let index = copy.length - 1; index > 0; index -= 1) {
        const other = Math.floor(random() * (index + 1));
        [copy[index], copy[other]] = [copy[other]!, copy[index]!];
      }
      return copy;
    };
    for (let round = 0; round < 5; round += 1) {
      const planner = new MirrorPlanner(LIMITS);
      const sources = shuffled(source);
      const targets = shuffled(target);
      while (sources.length > 0 || targets.length > 0) {
        if (targets.length === 0 || (sources.length > 0 && random() < 0.5)) planner.addSource(sources.pop()!);
        else planner.addTarget(targets.pop()!);
      }
      expect(summary(planner.finish())).toEqual(expected);
    }
  });
});

describe('planWhileListing', () => {
  it('plans every target like planMirror while holding about a page per listing', async () => {
    const { source, target: azureObjects } = fixture();
    const ociObjects = azureObjects.filter((_, index) => index % 7 !== 0);
    const listed: string[] = [];
    const result = await planWhileListing(
      listing('s3://source', source, 100),
      [target('azure', listing('azure://target', azureObjects, 500)), target('oci', listing('oci://target', ociObjects, 100))],
      LIMITS,
      { onListed: (label, objects) => listed.push(`${label} ${objects}`) },
    );
    expect(summary(result.plans.get('azure')!)).toEqual(summary(planMirror(source, azureObjects, LIMITS)));
    expect(summary(result.plans.get('oci')!)).toEqual(summary(planMirror(source, ociObjects, LIMITS)));
    expect(result.sourceObjects).toBe(3000);
    expect(result.sourceBytes).toBe(30_000);
    expect(listed.sort()).toEqual(['azure://target 3000', `oci://target ${ociObjects.length}`, 's3://source 3000']);
    // Holding the listings whole would mean 3,000 source objects plus each target's (8,572); read in key
    // order, the two planners hold about two pages (500 + 100 per target) plus the copies and deletions found.
    expect(result.peakUnmatched).toBeLessThan(1200);
    expect(result.peakUnmatched).toBeGreaterThan(0);
  });

  it('stops every listing and throws when the source listing fails: no plan without the whole source', async () => {
    const { source, target: targetObjects } = fixture();
    const azure = listing('azure://target', targetObjects, 100);
    await expect(planWhileListing(listing('s3://source', source, 100, { failAfterPages: 3 }), [target('azure', azure)], LIMITS)).rejects.toThrow(
      's3://source: page 4 failed',
    );
    expect(azure.stoppedEarly).toBe(true);
    expect(azure.pagesServed).toBeLessThan(30);
  });

  it('plans the other targets when one target listing fails', async () => {
    const { source, target: targetObjects } = fixture();
    const result = await planWhileListing(
      listing('s3://source', source, 100),
      [target('azure', listing('azure://target', targetObjects, 100, { failAfterPages: 2 })), target('oci', listing('oci://target', targetObjects, 100))],
      LIMITS,
    );
    expect(String(result.failedTargets.get('azure'))).toContain('azure://target: page 3 failed');
    expect(result.plans.has('azure')).toBe(false);
    expect(summary(result.plans.get('oci')!)).toEqual(summary(planMirror(source, targetObjects, LIMITS)));
  });

  it('asks for each deletion to be confirmed at the source when a target lists out of key order (a key listed twice looks deleted)', async () => {
    const source = [object('a'), object('b'), object('c')];
    // The target lists `b` again after the source matched it: out of key order.
    const targetObjects = [object('a'), object('b'), object('c'), object('b'), object('d')];
    const result = await planWhileListing(listing('s3://source', source, 1), [target('oci', listing('oci://target', targetObjects, 1))], LIMITS);
    const plan = result.plans.get('oci')!;
    expect(plan.deletions.map((action) => action.key).sort()).toEqual(['b', 'd']);
    expect(plan.deleteVerdict).toEqual({ allowed: true });
    expect(plan.confirmDeletions).toBe('oci://target listed "b" after "c", out of key order; a key listed twice cannot be told from one missing from the source, so each deletion is confirmed at the source first');
    expect(plan.transfers).toEqual([]);
    const inOrder = await planWhileListing(listing('s3://source', source, 1), [target('oci', listing('oci://target', [...source, object('d')], 1))], LIMITS);
    expect(inOrder.plans.get('oci')!.confirmDeletions).toBeUndefined();
  });

  it('holds every target\'s deletions back when the source lists out of key order, and still plans its copies', async () => {
    const source = [object('b'), object('a'), object('new')];
    const result = await planWhileListing(
      listing('s3://source', source, 2),
      [target('azure', listing('azure://target', [object('a'), object('b'), object('old')], 2))],
      LIMITS,
    );
    const plan = result.plans.get('azure')!;
    expect(plan.deleteVerdict).toEqual({ allowed: false, reason: expect.stringContaining('s3://source listed "a" after "b", out of key order') });
    expect(plan.deletions.map((action) => action.key)).toEqual(['old']);
    expect(plan.transfers.map((action) => action.key)).toEqual(['new']);
  });

  it('keeps a fast listing going a few pages ahead while the planner waits on a slow one', async () => {
    const { source, target: targetObjects } = fixture();
    const sourceListing = listing('s3://source', source, 100);
    const slow = listing('azure://target', targetObjects, 500);
    let sourcePagesWhenTargetAnswered: number | undefined;
    const slowTarget: Listing = {
      label: slow.label,
      pages: async function* (signal: AbortSignal) {
        // The slow store's first page comes once the source has served 4 pages, or after a second.
        const started = Date.now();
        while (sourceListing.pagesServed < 4 && Date.now() - started < 1000) await new Promise((resolve) => setTimeout(resolve, 1));
        sourcePagesWhenTargetAnswered = sourceListing.pagesServed;
        yield* slow.pages(signal);
      },
    };
    const result = await planWhileListing(sourceListing, [target('azure', slowTarget)], LIMITS);
    expect(sourcePagesWhenTargetAnswered).toBeGreaterThanOrEqual(4);
    expect(summary(result.plans.get('azure')!)).toEqual(summary(planMirror(source, targetObjects, LIMITS)));
  });

  it('stops the listings when the caller aborts', async () => {
    const { source, target: targetObjects } = fixture();
    const abort = new AbortController();
    const sourceListing = listing('s3://source', source, 10);
    const planned = planWhileListing(sourceListing, [target('oci', listing('oci://target', targetObjects, 10))], LIMITS, { signal: abort.signal });
    setTimeout(() => abort.abort(new Error('deadline')), 5);
    await expect(planned).rejects.toThrow();
    expect(sourceListing.stoppedEarly).toBe(true);
  });

  it('stops a listing whose next page had already arrived when the caller aborted', async () => {
    const abort = new AbortController();
    let stoppedEarly = false;
    const source: Listing = {
      label: 's3://source',
      pages: async function* () {
        let finished = false;
        try {
          yield [object('a')];
          // The abort lands while this page waits, delivered, for the planner to take it.
          abort.abort(new Error('deadline'));
          yield [object('b')];
          yield [object('c')];
          finished = true;
        } finally {
          if (!finished) stoppedEarly = true;
        }
      },
    };
    const planned = planWhileListing(source, [target('oci', listing('oci://target', [object('a')], 1))], LIMITS, { signal: abort.signal });
    await expect(planned).rejects.toThrow('deadline');
    expect(stoppedEarly).toBe(true);
  });
});

describe('key order', () => {
  const astral = 'a\u{1F600}'; // a surrogate pair: four UTF-8 bytes, F0...
  const highBmp = 'a\uFF21'; // U+FF21: three UTF-8 bytes, EF...

  it('compares by UTF-8 bytes, which differs from UTF-16 only for characters above U+FFFF against U+E000 and up', () => {
    expect(astral < highBmp).toBe(true);
    expect(compareUtf8(astral, highBmp)).toBeGreaterThan(0);
    expect(Math.sign(compareUtf8('a/b', 'a-b'))).toBe(1);
    expect(Math.sign(compareUtf8('abc', 'abcd'))).toBe(-1);
    expect(compareUtf8('same', 'same')).toBe(0);
  });

  it('accepts a listing ascending in either order and reports the first pair out of both', () => {
    const utf8 = new KeyOrder();
    for (const key of ['a', highBmp, astral, 'b']) utf8.see(key);
    expect(utf8.violation).toBeUndefined();
    const utf16 = new KeyOrder();
    for (const key of ['a', astral, highBmp, 'b']) utf16.see(key);
    expect(utf16.violation).toBeUndefined();
    const repeated = new KeyOrder();
    for (const key of ['a', 'b', 'b', 'c']) repeated.see(key);
    expect(repeated.violation).toEqual({ previous: 'b', key: 'b' });
  });
});

describe('a run against a target listing out of key order', () => {

  it('deletes only what the source confirms it no longer has, keeps a key listed twice, and says so', async () => {
    const s = await createScenario(emulators, 'order');
    for (const key of ['a.zip', 'b.zip', 'c.zip']) await putSource(s, key, key);
    await new Promise((resolve) => setTimeout(resolve, 1100));
    for (const key of ['a.zip', 'b.zip', 'c.zip', 'gone.zip']) await putS3Object(s, s.ociBucket, key, key);
    const oci = s3rverStore('oci://order', s.ociBucket);
    // The real listing, then `b.zip` once more: a store listing a key twice.
    const repeating: typeof oci = {
      ...oci,
      async *listPages(signal?: AbortSignal): AsyncIterable<readonly ObjectInfo[]> {
        const seen: ObjectInfo[] = [];
        for await (const page of oci.listPages(signal)) {
          seen.push(...page);
          yield page;
        }
        yield seen.filter((item) => item.key === 'b.zip');
      },
    };

    const report = await runMirror(s3rverStore('s3://order', s.sourceBucket), [{ name: 'oci', store: repeating }], RUN_OPTIONS);

    const result = report.targets[0]!;
    expect(result).toMatchObject({ planned: { delete: 2 }, deleted: 1, failed: 0, complete: true });
    expect(result.notes).toEqual([
      'oci://order listed "b.zip" after "gone.zip", out of key order; a key listed twice cannot be told from one missing from the source, so each deletion is confirmed at the source first: 1 deletion(s) confirmed at the source, 1 kept because the source has them',
    ]);
    expect([...(await readBucket(s, s.ociBucket)).keys()].sort()).toEqual(['a.zip', 'b.zip', 'c.zip']);
  });
});

describe("a run's first change waits for `beforeFirstChange` (the adapters' lock)", () => {

  it('starts it once a first listing page is in, and changes nothing until it settles', async () => {
    const s = await createScenario(emulators, 'gate');
    for (const key of ['a.zip', 'b.zip']) await putSource(s, key, key);
    await putS3Object(s, s.ociBucket, 'gone.zip', 'gone');
    const source = s3rverStore('s3://gate', s.sourceBucket);
    let pagesIn = 0;
    const counted: typeof source = {
      ...source,
      async *listPages(signal?: AbortSignal): AsyncIterable<readonly ObjectInfo[]> {
        for await (const page of source.listPages(signal)) {
          pagesIn += 1;
          yield page;
        }
      },
    };
    let pagesInWhenStarted: number | undefined;
    let open = (): void => undefined;
    let finished: Awaited<ReturnType<typeof runMirror>> | undefined;
    const planned = new Promise<void>((resolve) => {
      void runMirror(counted, [{ name: 'oci', store: s3rverStore('oci://gate', s.ociBucket) }], {
        ...RUN_OPTIONS,
        beforeFirstChange: () => {
          pagesInWhenStarted = pagesIn;
          return new Promise<void>((resolve) => (open = resolve));
        },
        onEvent: (event) => {
          if (event.event === 'plan') resolve();
        },
      }).then((report) => (finished = report));
    });
    await planned;
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect([...(await readBucket(s, s.ociBucket)).keys()]).toEqual(['gone.zip']);
    expect(finished).toBeUndefined();
    expect(pagesInWhenStarted).toBeGreaterThanOrEqual(1);

    open();
    await expect.poll(() => finished?.complete, { timeout: 10_000 }).toBe(true);
    expect([...(await readBucket(s, s.ociBucket)).keys()].sort()).toEqual(['a.zip', 'b.zip']);
  });

  it('ends the run with its error when it fails: the listings stop at once and nothing changes', async () => {
    const s = await createScenario(emulators, 'gate-held');
    await putSource(s, 'a.zip', 'a');
    await putS3Object(s, s.ociBucket, 'gone.zip', 'gone');
    const source = s3rverStore('s3://gate-held', s.sourceBucket);
    // A listing that never ends on its own: only the run stopping it lets the test finish.
    const endless: typeof source = {
      ...source,
      async *listPages(signal?: AbortSignal): AsyncIterable<readonly ObjectInfo[]> {
        yield* source.listPages(signal);
        for (let index = 0; ; index += 1) {
          await new Promise((resolve) => setTimeout(resolve, 5));
          signal?.throwIfAborted();
          yield [object(`zz/${String(index).padStart(9, '0')}`)];
        }
      },
    };
    const held = new Error('another run is mirroring oci right now');
    const run = runMirror(endless, [{ name: 'oci', store: s3rverStore('oci://gate-held', s.ociBucket) }], { ...RUN_OPTIONS, beforeFirstChange: () => Promise.reject(held) });
    await expect(run).rejects.toBe(held);
    expect([...(await readBucket(s, s.ociBucket)).keys()]).toEqual(['gone.zip']);
  });
});
