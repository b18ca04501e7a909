import { MirrorPlanner, type DeleteLimits } from './plan.ts';
import type { ObjectInfo, Plan, ReplaceReason } from './types.ts';

/** A store's listing as it arrives: pages of objects, in the store's key order. */
export interface Listing {
  /** Where the listing comes from, for events and messages (`s3://bucket`). */
  readonly label: string;
  /** Starts the listing; `signal` stops it. */
  readonly pages: (signal: AbortSignal) => AsyncIterable<readonly ObjectInfo[]>;
}

export interface TargetListing<Name extends string> extends Listing {
  readonly name: Name;
  /** Why the target cannot hold a source key verbatim (`TargetStore.keyProblem`); such keys are refused, not planned. */
  readonly keyProblem?: (key: string) => string | undefined;
  /** Sees every key listed on both sides, with the planner's decision (`MirrorPlanner`). */
  readonly onMatch?: (source: ObjectInfo, target: ObjectInfo, reason: ReplaceReason | undefined) => void;
}

/** What `planWhileListing` found. */
export interface ListedPlans<Name extends string> {
  readonly sourceObjects: number;
  readonly sourceBytes: number;
  /** One plan per target whose listing completed. */
  readonly plans: Map<Name, Plan>;
  /** Targets whose listing failed, with the error; they get no plan. */
  readonly failedTargets: Map<Name, unknown>;
  /** The most objects the planners held unmatched at once: about a page per listing when stores list in key order. */
  readonly peakUnmatched: number;
}

/**
 * Lists the source and every target at once and plans each target while the pages arrive, so a run
 * holds a few pages per listing instead of every listing in full. The next pages of every listing are
 * fetched while the current one is planned; the listing furthest behind in key order is read first,
 * so objects meet their counterparts soon after they arrive.
 *
 * Throws the source listing's error (and stops the other listings): without the whole source, no
 * plan is safe. A target whose listing fails gets no plan; the others go on.
 * A listing whose keys do not come strictly ascending (a key listed twice looks exactly like one
 * that is not in the source): a target's gets each deletion confirmed at the source first
 * (`Plan.confirmDeletions`); the source's holds back every target's deletions.
 */
export async function planWhileListing<Name extends string>(
  source: Listing,
  targets: readonly TargetListing<Name>[],
  limits: DeleteLimits,
  options: {
    readonly signal?: AbortSignal;
    readonly onListed?: (label: string, objects: number, durationMs: number) => void;
    /** Called once, when the first page of any listing is in: every listing is then under way. */
    readonly onFirstPage?: () => void;
    readonly now?: () => number;
  } = {},
): Promise<ListedPlans<Name>> {
  const now = options.now ?? Date.now;
  const startedMs = now();
  const stop = new AbortController();
  const planners = new Map(targets.map((target) => [target.name, new MirrorPlanner(limits, target.keyProblem, target.onMatch)]));
  const failedTargets = new Map<Name, unknown>();
  const stopListing = (): void => stop.abort(options.signal?.reason);
  options.signal?.addEventListener('abort', stopListing, { once: true });
  if (options.signal?.aborted === true) stopListing();
  const sourceReader = new PageReader<Name>(source, undefined, stop.signal);
  const readers = [sourceReader, ...targets.map((target) => new PageReader(target, target.name, stop.signal))];
  let sourceBytes = 0;
  let peakUnmatched = 0;
  let anyPageIn = false;

  try {
    for (let reader = nextToRead(readers); reader !== undefined; reader = nextToRead(readers)) {
      let page: readonly ObjectInfo[] | undefined;
      try {
        page = await reader.next();
      } catch (error) {
        if (reader.target === undefined) throw error;
        failedTargets.set(reader.target, error);
        planners.delete(reader.target);
        continue;
      }
      if (page === undefined) {
        options.onListed?.(reader.label, reader.objects, now() - startedMs);
        continue;
      }
      if (!anyPageIn) {
        anyPageIn = true;
        options.onFirstPage?.();
      }
      if (reader.target === undefined) {
        for (const object of page) {
          sourceBytes += object.size;
          for (const planner of planners.values()) planner.addSource(object);
        }
      } else {
        const planner = planners.get(reader.target);
        for (const object of page) planner?.addTarget(object);
      }
      let unmatched = 0;
      for (const planner of planners.values()) unmatched += planner.unmatched;
      peakUnmatched = Math.max(peakUnmatched, unmatched);
    }
  } finally {
    options.signal?.removeEventListener('abort', stopListing);
    stop.abort();
    await Promise.all(readers.map((reader) => reader.close()));
  }

  const plans = new Map<Name, Plan>();
  for (const [name, planner] of planners) {
    const plan = planner.finish();
    const targetReader = readers.find((reader) => reader.target === name)!;
    if (plan.deletions.length === 0) plans.set(name, plan);
    // A source out of order is no listing to delete by at all.
    else if (sourceReader.order.violation !== undefined) plans.set(name, { ...plan, deleteVerdict: { allowed: false, reason: `${outOfOrderReason(sourceReader)}, so deletions wait for a listing in order` } });
    else if (targetReader.order.violation !== undefined) plans.set(name, { ...plan, confirmDeletions: `${outOfOrderReason(targetReader)}, so each deletion is confirmed at the source first` });
    else plans.set(name, plan);
  }
  return { sourceObjects: sourceReader.objects, sourceBytes, plans, failedTargets, peakUnmatched };
}

function outOfOrderReason(reader: PageReader<string>): string {
  const { previous, key } = reader.order.violation!;
  return `${reader.label} listed ${JSON.stringify(key)} after ${JSON.stringify(previous)}, out of key order; a key listed twice cannot be told from one missing from the source`;
}

/** The unfinished listing furthest behind in key order (a listing not yet started first; the source first on ties). */
function nextToRead<Name extends string>(readers: readonly PageReader<Name>[]): PageReader<Name> | undefined {
  let behind: PageReader<Name> | undefined;
  for (const reader of readers) {
    if (reader.finished) continue;
    if (reader.lastKey === undefined) return reader;
    if (behind === undefined || reader.lastKey < behind.lastKey!) behind = reader;
  }
  return behind;
}

/**
 * Pages a listing fetches ahead of the planner. One would do if every listing answered as fast as the
 * others; more keep a fast listing going while the planner waits on a slow one (the first Azure page,
 * 5,000 keys, takes as long as several S3 pages of 1,000). Memory: up to this many pages per listing.
 */
const PAGES_AHEAD = 4;

/** One listing, read ahead: the next pages are on their way while the current one is planned. */
class PageReader<Name extends string> {
  readonly label: string;
  readonly target: Name | undefined;
  readonly order = new KeyOrder();
  objects = 0;
  lastKey: string | undefined;
  finished = false;
  readonly #iterator: AsyncIterator<readonly ObjectInfo[]>;
  /** Pages fetched or on their way, in listing order; each is asked for once the one before it is in. */
  readonly #ahead: Promise<IteratorResult<readonly ObjectInfo[]>>[] = [];
  #last: Promise<IteratorResult<readonly ObjectInfo[]> | undefined> = Promise.resolve(undefined);
  readonly #signal: AbortSignal;

  constructor(listing: Listing, target: Name | undefined, signal: AbortSignal) {
    this.label = listing.label;
    this.target = target;
    this.#signal = signal;
    this.#iterator = listing.pages(signal)[Symbol.asyncIterator]();
    this.#readAhead();
  }

  /** The next page, or `undefined` at the end. */
  async next(): Promise<readonly ObjectInfo[] | undefined> {
    let result: IteratorResult<readonly ObjectInfo[]>;
    try {
      this.#signal.throwIfAborted();
      result = await this.#ahead.shift()!;
    } catch (error) {
      this.finished = true;
      throw error;
    }
    if (result.done === true) {
      this.finished = true;
      return undefined;
    }
    const page = result.value;
    this.#readAhead();
    for (const object of page) this.order.see(object.key);
    this.objects += page.length;
    if (page.length > 0) this.lastKey = page[page.length - 1]!.key;
    return page;
  }

  /**
   * Ends the listing early (its generator's `finally` runs); pages still on their way are dropped. Also
   * after `next` threw on an abort: the generator may then sit at a `yield` with its page delivered.
   */
  async close(): Promise<void> {
    this.finished = true;
    await Promise.all(this.#ahead.map((ahead) => ahead.catch(() => undefined)));
    await this.#iterator.return?.().catch(() => undefined);
  }

  #readAhead(): void {
    while (this.#ahead.length < PAGES_AHEAD) {
      // One request at a time, in order: a page is asked for once the one before it is in, and not
      // after the end, a failure, or `close`.
      const ahead = this.#last.then((previous) => (previous?.done === true || this.finished ? { done: true as const, value: undefined } : this.#iterator.next()));
      // Observed when read; until then a failure must not count as unhandled.
      ahead.catch(() => undefined);
      this.#ahead.push(ahead);
      this.#last = ahead;
    }
  }
}

/**
 * Whether keys arrive strictly ascending: in UTF-16 code-unit order (JavaScript's) or in UTF-8 byte
 * order (S3's); stores list in one of them. Strictly ascending means no key is listed twice.
 */
export class KeyOrder {
  #previous: string | undefined;
  #previousHasSurrogate = false;
  #utf16 = true;
  #utf8 = true;
  #violation: { readonly previous: string; readonly key: string } | undefined;

  see(key: string): void {
    const previous = this.#previous;
    const hasSurrogate = SURROGATE.test(key);
    const previousHasSurrogate = this.#previousHasSurrogate;
    this.#previous = key;
    this.#previousHasSurrogate = hasSurrogate;
    if (previous === undefined || this.#violation !== undefined) return;
    const ascendingUtf16 = previous < key;
    if (!ascendingUtf16) this.#utf16 = false;
    // The two orders can only disagree where a key holds a surrogate; elsewhere one comparison serves both.
    if (this.#utf8 && !(hasSurrogate || previousHasSurrogate ? compareUtf8(previous, key) < 0 : ascendingUtf16)) this.#utf8 = false;
    if (!this.#utf16 && !this.#utf8) this.#violation = { previous, key };
  }

  /** The first pair of keys out of order, if any. */
  get violation(): { readonly previous: string; readonly key: string } | undefined {
    return this.#violation;
  }
}

const SURROGATE = /[\uD800-\uDFFF]/;
const FIRST_SURROGATE = 0xd800;
const AFTER_SURROGATES = 0xe000;

/**
 * Compares strings by their UTF-8 bytes. It agrees with UTF-16 code-unit order except where the
 * first difference sets a surrogate (a character above U+FFFF, four UTF-8 bytes) against a unit from
 * U+E000 up (three bytes): UTF-8 sorts the surrogate last.
 */
export function compareUtf8(a: string, b: string): number {
  if (a === b) return 0;
  const length = Math.min(a.length, b.length);
  let index = 0;
  while (index < length && a.charCodeAt(index) === b.charCodeAt(index)) index += 1;
  if (index === length) return a.length - b.length;
  const unitA = a.charCodeAt(index);
  const unitB = b.charCodeAt(index);
  const surrogateA = unitA >= FIRST_SURROGATE && unitA < AFTER_SURROGATES;
  const surrogateB = unitB >= FIRST_SURROGATE && unitB < AFTER_SURROGATES;
  if (surrogateA && !surrogateB && unitB >= AFTER_SURROGATES) return 1;
  if (surrogateB && !surrogateA && unitA >= AFTER_SURROGATES) return -1;
  return unitA - unitB;
}
