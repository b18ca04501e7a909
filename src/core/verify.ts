/**
 * `verify`: the tool's own `rclone check`. Lists the source and each target, and compares every object
 * by what the target can prove: its size (listing), the source ETag it recorded when it was written
 * (Azure: the listing; OCI: a HEAD), its content headers and user metadata (a HEAD of each side), and,
 * with `checksum`, the MD5 of the bytes read from both sides. Changes nothing.
 */
import { createHash } from 'node:crypto';
import { withoutRecordedSource } from '../stores/metadata.ts';
import type { ContentHeaders, ObjectHead, SourceStore, TargetStore } from '../stores/store.ts';
import { CONTENT_HEADER_FIELDS } from '../stores/store.ts';
import { forEachBounded } from './concurrency.ts';
import { describeError } from './errors.ts';
import { formatDuration } from './report.ts';
import { planWhileListing } from './listings.ts';
import { DEFAULT_DELETE_LIMITS } from './plan.ts';
import type { ObjectInfo, Plan, ProviderChoice, ReplaceReason, TargetName } from './types.ts';

/** One way a target differs from the source (or could not be checked), with the key it concerns. */
export type Difference =
  | { readonly kind: 'missing'; readonly key: string }
  | { readonly kind: 'extra'; readonly key: string }
  | { readonly kind: 'refused'; readonly key: string; readonly reason: string }
  | { readonly kind: 'size'; readonly key: string; readonly source: number; readonly target: number }
  | { readonly kind: 'content'; readonly key: string; readonly sourceEtag: string; readonly recordedEtag: string }
  /** The copy recorded no source ETag (an older tool wrote it): its bytes are proven only by `checksum`. */
  | { readonly kind: 'unproven'; readonly key: string; readonly sourceEtag: string }
  | { readonly kind: 'header'; readonly key: string; readonly field: keyof ContentHeaders; readonly source: string | undefined; readonly target: string | undefined }
  | { readonly kind: 'metadata'; readonly key: string; readonly name: string; readonly source: string | undefined; readonly target: string | undefined }
  | { readonly kind: 'checksum'; readonly key: string; readonly sourceMd5: string; readonly targetMd5: string }
  | { readonly kind: 'error'; readonly key?: string; readonly message: string };

export interface TargetVerification {
  readonly target: TargetName;
  readonly store: string;
  /** Objects found on both sides and compared beyond the listing. */
  readonly compared: number;
  /** Objects not compared because the deadline came first. */
  readonly unchecked: number;
  readonly differences: readonly Difference[];
  /** True only when no difference was found and every object was compared. */
  readonly exact: boolean;
  /** Requests this target was sent: listing pages, HEADs, GETs (for `checksum`). */
  readonly requests: { readonly listPages: number; readonly heads: number; readonly reads: number };
}

export interface VerifyReport {
  readonly provider: ProviderChoice;
  readonly checksum: boolean;
  readonly source: { readonly store: string; readonly objects: number; readonly requests: { readonly listPages: number; readonly heads: number; readonly reads: number } };
  readonly startedAt: string;
  readonly durationMs: number;
  readonly exact: boolean;
  /** Why some objects were not compared, when the deadline came first. */
  readonly stoppedEarly?: string;
  readonly targets: readonly TargetVerification[];
}

export interface VerifyTarget {
  readonly name: TargetName;
  readonly store: TargetStore;
}

export interface VerifyOptions {
  readonly provider: ProviderChoice;
  /** Read the bytes of every object on both sides and compare their MD5 (default false). */
  readonly checksum?: boolean;
  /** Objects compared at once (default 16). */
  readonly concurrency?: number;
  /** Epoch ms after which no further object is compared; the rest count as unchecked (not exact). */
  readonly stopAt?: number;
  readonly signal?: AbortSignal;
  readonly now?: () => number;
}

/**
 * What a target's plan (from the listings) already proves different: missing and extra keys, refused
 * keys, sizes, and a recorded source ETag that is not the source's (Azure's listing shows it). Pure.
 */
export function listingDifferences(plan: Plan): Difference[] {
  const differences: Difference[] = plan.refused.map((refusal) => ({ kind: 'refused', key: refusal.key, reason: refusal.reason }));
  for (const action of plan.transfers) {
    if (action.kind === 'copy') differences.push({ kind: 'missing', key: action.key });
    else if (action.reason.why === 'size') differences.push({ kind: 'size', key: action.key, source: action.reason.sourceSize, target: action.reason.targetSize });
    else if (action.reason.why === 'source-etag') differences.push({ kind: 'content', key: action.key, sourceEtag: action.reason.sourceEtag, recordedEtag: action.reason.recordedEtag });
  }
  for (const action of plan.deletions) differences.push({ kind: 'extra', key: action.key });
  return differences;
}

/** Decisions the listings alone prove (`listingDifferences`); every other listed pair is compared by HEAD. */
const PROVEN_BY_LISTING: ReadonlySet<ReplaceReason['why']> = new Set(['size', 'source-etag']);

/** The metadata a target should hold for a source object (`TargetStore.metadataFor`), or why there is none. */
export type ExpectedMetadata = { readonly ok: true; readonly metadata: Readonly<Record<string, string>> } | { readonly ok: false; readonly problem: string };

/**
 * Object-level comparison of one pair from their HEADs: the recorded source ETag (without `checksum`
 * the only proof of the bytes), every content header, and the user metadata as the target names it
 * (`expectedMetadata`, or the reason the source's cannot be mapped). Pure.
 */
export function compareHeads(
  key: string,
  source: { readonly etag: string; readonly headers: ContentHeaders },
  target: Pick<ObjectHead, 'headers' | 'userMetadata' | 'recordedSource'>,
  expectedMetadata: ExpectedMetadata,
  bytesCompared: boolean,
): Difference[] {
  const differences: Difference[] = [];
  // With the bytes compared by MD5, a missing record proves nothing wrong; without, it leaves the bytes unproven.
  if (target.recordedSource === undefined) {
    if (!bytesCompared) differences.push({ kind: 'unproven', key, sourceEtag: source.etag });
  } else if (target.recordedSource.etag !== source.etag) {
    differences.push({ kind: 'content', key, sourceEtag: source.etag, recordedEtag: target.recordedSource.etag });
  }
  for (const field of CONTENT_HEADER_FIELDS) {
    const expected = source.headers[field];
    const actual = target.headers[field];
    // A source without a Content-Type leaves the target's default (application/octet-stream on Azure).
    if (field === 'contentType' && expected === undefined) continue;
    if ((expected ?? '') !== (actual ?? '')) differences.push({ kind: 'header', key, field, source: expected, target: actual });
  }
  if (!expectedMetadata.ok) {
    differences.push({ kind: 'error', key, message: expectedMetadata.problem });
    return differences;
  }
  const expected = new Map(Object.entries(expectedMetadata.metadata).map(([name, value]) => [name.toLowerCase(), { name, value }]));
  const actual = new Map(Object.entries(withoutRecordedSource(target.userMetadata)).map(([name, value]) => [name.toLowerCase(), { name, value }]));
  for (const [lower, entry] of expected) {
    const stored = actual.get(lower);
    if (stored?.value !== entry.value) differences.push({ kind: 'metadata', key, name: entry.name, source: entry.value, target: stored?.value });
  }
  for (const [lower, entry] of actual) if (!expected.has(lower)) differences.push({ kind: 'metadata', key, name: entry.name, source: undefined, target: entry.value });
  return differences;
}

/** Lists, HEADs (and with `checksum` reads) both sides; changes nothing. Throws when the source cannot be listed. */
export async function verifyMirror(source: SourceStore, targets: readonly VerifyTarget[], options: VerifyOptions): Promise<VerifyReport> {
  const now = options.now ?? Date.now;
  const startedMs = now();
  const checksum = options.checksum ?? false;
  const signal = options.signal;
  const sourceRequests = { listPages: 0, heads: 0, reads: 0 };

  interface TargetState {
    readonly target: VerifyTarget;
    readonly requests: { listPages: number; heads: number; reads: number };
    readonly differences: Difference[];
    compared: number;
    unchecked: number;
  }
  const states: TargetState[] = targets.map((target) => ({ target, requests: { listPages: 0, heads: 0, reads: 0 }, differences: [], compared: 0, unchecked: 0 }));
  // Keys listed on both sides that the listings do not prove different, with the targets to compare them on:
  // the planner matches the listings as they arrive, so only these keys are held, not the listings.
  const toCompare = new Map<string, TargetState[]>();
  const listed = await planWhileListing(
    { label: source.label, pages: (listSignal) => countedPages(source.listPages(listSignal), sourceRequests) },
    states.map((state) => ({
      name: state.target.name,
      label: state.target.store.label,
      pages: (listSignal: AbortSignal) => countedPages(state.target.store.listPages(listSignal), state.requests),
      keyProblem: (key: string) => state.target.store.keyProblem(key),
      onMatch: (object: ObjectInfo, _copy: ObjectInfo, reason: ReplaceReason | undefined) => {
        if (reason !== undefined && PROVEN_BY_LISTING.has(reason.why)) return;
        const waiting = toCompare.get(object.key);
        if (waiting === undefined) toCompare.set(object.key, [state]);
        else waiting.push(state);
      },
    })),
    DEFAULT_DELETE_LIMITS,
    signal === undefined ? {} : { signal },
  );
  for (const state of states) {
    const plan = listed.plans.get(state.target.name);
    if (plan === undefined) state.differences.push({ kind: 'error', message: `listing failed: ${describeError(listed.failedTargets.get(state.target.name))}` });
    else state.differences.push(...listingDifferences(plan));
  }

  let stoppedEarly: string | undefined;
  await forEachBounded(toCompare, options.concurrency ?? 16, async ([key, waiting]) => {
    if (signal?.aborted === true || (options.stopAt !== undefined && now() >= options.stopAt)) {
      stoppedEarly = 'the deadline came before every object was compared';
      for (const state of waiting) state.unchecked += 1;
      return;
    }
    // Both sides are asked at once: the source's answers are awaited only where they are compared.
    const sourceSide = (async () => {
      sourceRequests.heads += 1;
      const head = await source.head(key, signal);
      if (!checksum) return { head, md5: undefined };
      sourceRequests.reads += 1;
      return { head, md5: await md5Hex((await source.read(key, { signal })).body) };
    })();
    sourceSide.catch(() => undefined);
    await Promise.all(waiting.map(async (state) => {
      const store = state.target.store;
      state.requests.heads += 1;
      const targetSide = (async () => {
        const head = await store.head(key, signal);
        if (!checksum) return { head, md5: undefined };
        state.requests.reads += 1;
        return { head, md5: await md5Hex(await store.readBody(key, signal)) };
      })();
      targetSide.catch(() => undefined);
      let sourceFacts: Awaited<typeof sourceSide>;
      try {
        sourceFacts = await sourceSide;
      } catch (error) {
        state.differences.push({ kind: 'error', key, message: `the source could not be read: ${describeError(error)}` });
        return;
      }
      try {
        const target = await targetSide;
        let expectedMetadata: ExpectedMetadata;
        try {
          expectedMetadata = { ok: true, metadata: store.metadataFor(key, sourceFacts.head.userMetadata) };
        } catch (error) {
          expectedMetadata = { ok: false, problem: describeError(error) };
        }
        state.differences.push(...compareHeads(key, sourceFacts.head, target.head, expectedMetadata, checksum));
        if (sourceFacts.md5 !== undefined && target.md5 !== undefined && target.md5 !== sourceFacts.md5) {
          state.differences.push({ kind: 'checksum', key, sourceMd5: sourceFacts.md5, targetMd5: target.md5 });
        }
        state.compared += 1;
      } catch (error) {
        state.differences.push({ kind: 'error', key, message: describeError(error) });
      }
    }));
  });

  const reports: TargetVerification[] = states.map((state) => ({
    target: state.target.name,
    store: state.target.store.label,
    compared: state.compared,
    unchecked: state.unchecked,
    differences: [...state.differences].sort((a, b) => compareKeys(a.key, b.key)),
    exact: state.differences.length === 0 && state.unchecked === 0,
    requests: state.requests,
  }));
  return {
    provider: options.provider,
    checksum,
    source: { store: source.label, objects: listed.sourceObjects, requests: sourceRequests },
    startedAt: new Date(startedMs).toISOString(),
    durationMs: now() - startedMs,
    exact: reports.every((report) => report.exact),
    ...(stoppedEarly === undefined ? {} : { stoppedEarly }),
    targets: reports,
  };
}

function compareKeys(a: string | undefined, b: string | undefined): number {
  if (a === b) return 0;
  if (a === undefined) return -1;
  if (b === undefined) return 1;
  return a < b ? -1 : 1;
}

/** The pages of a listing as they come, counted in `requests.listPages` (one request each). */
async function* countedPages(pages: AsyncIterable<readonly ObjectInfo[]>, requests: { listPages: number }): AsyncIterable<readonly ObjectInfo[]> {
  for await (const page of pages) {
    requests.listPages += 1;
    yield page;
  }
}

async function md5Hex(body: AsyncIterable<Uint8Array>): Promise<string> {
  const hash = createHash('md5');
  for await (const chunk of body) hash.update(chunk);
  return hash.digest('hex');
}

/** One difference as a line of text: what differs, and for which key. */
export function describeDifference(difference: Difference): string {
  const key = difference.key === undefined ? '' : ` ${JSON.stringify(difference.key)}`;
  const value = (text: string | undefined): string => (text === undefined ? 'absent' : JSON.stringify(text));
  switch (difference.kind) {
    case 'missing':
      return `missing${key}: in the source, not in the target`;
    case 'extra':
      return `extra${key}: in the target, not in the source`;
    case 'refused':
      return `refused${key}: ${difference.reason}`;
    case 'size':
      return `size${key}: source ${difference.source} bytes, target ${difference.target}`;
    case 'content':
      return `content${key}: the target is a copy of source ETag ${difference.recordedEtag}, the source has ${difference.sourceEtag}`;
    case 'unproven':
      return `unproven${key}: the target recorded no source ETag (run with --checksum to compare the bytes)`;
    case 'header':
      return `header${key}: ${difference.field} source ${value(difference.source)}, target ${value(difference.target)}`;
    case 'metadata':
      return `metadata${key}: ${difference.name} source ${value(difference.source)}, target ${value(difference.target)}`;
    case 'checksum':
      return `checksum${key}: source MD5 ${difference.sourceMd5}, target MD5 ${difference.targetMd5}`;
    case 'error':
      return `not verified${key}: ${difference.message}`;
  }
}

/** The verify report as a person reads it. */
export function renderVerifyText(report: VerifyReport): string {
  const lines = [`Verify${report.checksum ? ' (bytes compared by MD5)' : ''}: ${report.source.store} (${report.source.objects} objects) → ${report.provider}`];
  for (const target of report.targets) {
    lines.push('', `${target.target}: ${target.store}`);
    for (const difference of target.differences) lines.push(`  ${describeDifference(difference)}`);
    if (target.unchecked > 0) lines.push(`  ${target.unchecked} objects not compared: the deadline came first`);
    lines.push(`  compared ${target.compared}, differences ${target.differences.length}; ${target.exact ? 'exact' : 'NOT exact'}`);
  }
  if (report.stoppedEarly !== undefined) lines.push('', `Stopped early: ${report.stoppedEarly}`);
  lines.push('', `${report.exact ? 'Exact' : 'Not exact'} in ${formatDuration(report.durationMs)}`);
  return lines.join('\n');
}
