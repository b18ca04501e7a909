/**
 * Scenarios 2 and 3 over one source of many small objects:
 *  2. a no-op re-run (nothing changed): wall time and requests per store;
 *  3. 1% of the objects changed, a third of them same-size overwrites: wall time, requests, and
 *     whether every change reached the target (read back byte for byte).
 *
 * Each contender first mirrors the source into targets of its own (fresh, empty), so each re-run
 * starts from the state that contender itself leaves behind, as in production.
 */
import { TARGET_NAMES, type ProviderChoice, type TargetName } from '../src/core/types.ts';
import { createScenario, nextSecond, pseudoRandomBytes } from '../test/support/scenario.ts';
import { CONTENDERS, mirrorCommand, type Contender, type Endpoints, type RunSetup } from './contenders.ts';
import { checkTarget, checkTargets, runContender, verdict, type BenchContext, type MirrorRun, type ScenarioOutcome, type TargetChecks, type Verdict } from './context.ts';
import { cloneTarget, describeCheck, freshTargets, listBucket, seedBucket, type TargetPair } from './fixtures.ts';
import { STORES, startCountingProxies, type CountingProxies, type RequestCounts, type StoreName } from './request-counts.ts';
import { count, megabytes, ratio, renderTable, seconds } from './table.ts';

const OBJECT_BYTES = 1024;
/** Objects per listing page: S3 and OCI ListObjectsV2 give 1000, Azure List Blobs 5000. */
const PAGE_SIZE: Readonly<Record<StoreName, number>> = { s3: 1000, azure: 5000, oci: 1000 };
/** "A constant few" requests per store above the listing pages: container checks, a lock, an interrupted-upload check. */
const CONSTANT_FEW = 5;

export interface SteadyStateSize {
  readonly objects: number;
  /** No-op runs per contender and target (rclone's default mode: one); the median wall time is reported. */
  readonly noopRepeats: number;
}

export interface SteadyStateData {
  readonly objects: number;
  readonly objectBytes: number;
  /** Our and rclone's first copies into their own empty targets (the state the re-runs start from); all ran at once, so their times are not comparable. */
  readonly firstCopies: readonly SetupCopy[];
  /** Wall time of the setup: the first copies, and the clone of rclone's targets for `--size-only`. */
  readonly setupMs: number;
  /** Every no-op run goes through the counting proxies; `wallMs` and `requests` are the median run's, `wallTimesMs` all runs'. */
  readonly noop?: { readonly runs: readonly (MirrorRun & { readonly wallTimesMs: readonly number[] })[] };
  readonly change?: {
    readonly changedKeys: number;
    readonly sameSize: number;
    readonly differentSize: number;
    /** Through the counting proxies: wall time includes the proxy hop for every contender alike. */
    readonly runs: readonly (MirrorRun & { readonly caught: number; readonly caughtSameSize: number; readonly caughtDifferentSize: number })[];
  };
}

/** One first copy of the setup; ours writes both targets in one run (`all`), rclone one per run. */
export interface SetupCopy {
  readonly contender: Contender;
  readonly provider: ProviderChoice;
  readonly wallMs: number;
  readonly cpuMs: number | undefined;
  readonly exitCode: number;
  /** Each target written, checked by keys and sizes. */
  readonly checks: Readonly<TargetChecks>;
  readonly errorOutput?: string;
}

export interface SteadyStateOutcome {
  readonly noop?: ScenarioOutcome<SteadyStateData>;
  readonly change?: ScenarioOutcome<SteadyStateData>;
  readonly data: SteadyStateData;
}

export async function steadyState(context: BenchContext, size: SteadyStateSize, parts: { noop: boolean; change: boolean }): Promise<SteadyStateOutcome> {
  const scenario = await createScenario(context.emulators, 'bench-steady');
  const setup: RunSetup = { s3: context.emulators.s3, azurite: context.emulators.azurite, baseSettings: scenario.settings, sourceBucket: scenario.sourceBucket };
  const keyOf = (index: number): string => `steady/part-${String(index % 20).padStart(2, '0')}/object-${String(index).padStart(6, '0')}.bin`;
  context.progress(`steady state: seeding ${count(size.objects)} x 1 KiB into s3://${scenario.sourceBucket}`);
  const seedStarted = performance.now();
  await seedBucket(scenario.s3, scenario.sourceBucket, Array.from({ length: size.objects }, (_, index) => ({ key: keyOf(index), body: () => pseudoRandomBytes(OBJECT_BYTES, index + 1) })), 32);
  context.progress(`steady state: seeded in ${seconds(performance.now() - seedStarted)}`);

  const contenders: Contender[] = context.rclone ? [...CONTENDERS] : ['ours'];
  const writers = contenders.filter((contender) => contender !== 'rclone --size-only');
  const targets = new Map<Contender, TargetPair>();
  for (const contender of writers) targets.set(contender, await freshTargets(context.emulators, 'bench-steady'));
  // Setup, not a figure: the first copies run at once to keep the benchmark short; each is then checked.
  context.progress(`steady state: first copies into our and rclone's own empty targets, at once`);
  const setupStarted = performance.now();
  // Ours writes both targets in one run (the source is read once); rclone needs a run per destination.
  const copies = writers.flatMap((contender): { contender: Contender; provider: ProviderChoice }[] =>
    contender === 'ours' ? [{ contender, provider: 'all' }] : TARGET_NAMES.map((target) => ({ contender, provider: target })),
  );
  // --size-only decides by size alone, so it needs rclone's state, not rclone's time: a server-side
  // clone of rclone's mirror (same keys, bytes and metadata) is that state, at a fraction of the cost.
  // Scenario 2 alone changes nothing, so there it re-syncs rclone's own targets.
  const sizeOnlyTargets = context.rclone ? (parts.change ? await freshTargets(context.emulators, 'bench-steady') : targets.get('rclone')) : undefined;
  if (sizeOnlyTargets !== undefined) targets.set('rclone --size-only', sizeOnlyTargets);
  const firstCopies = await Promise.all(
    copies.map(async ({ contender, provider }): Promise<SetupCopy> => {
      const pair = targets.get(contender)!;
      const run = await runContender(mirrorCommand(contender, provider, setup, pair, context.direct), contender, provider);
      const checks = await checkTargets(context, setup, provider, pair, []);
      if (contender === 'rclone' && provider !== 'all' && sizeOnlyTargets !== undefined && sizeOnlyTargets !== pair) {
        context.progress(`steady state: cloning rclone's ${provider} target inside the emulators for rclone --size-only`);
        await cloneTarget(context.s3, context.blobs, provider, pair, sizeOnlyTargets);
      }
      return { contender, provider, wallMs: run.wallMs, cpuMs: run.cpuMs, exitCode: run.exitCode, checks, ...(run.errorOutput === undefined ? {} : { errorOutput: run.errorOutput }) };
    }),
  );
  const setupMs = performance.now() - setupStarted;

  const proxies = await startCountingProxies(context.emulators);
  try {
    let noop: SteadyStateData['noop'];
    if (parts.noop) {
      const runs: (MirrorRun & { wallTimesMs: number[] })[] = [];
      for (const target of TARGET_NAMES) {
        // Rounds alternate the contenders, so a load spike on this shared machine hits all of them alike.
        const timed = new Map<Contender, MirrorRun[]>(contenders.map((contender) => [contender, []]));
        for (let round = 0; round < size.noopRepeats; round += 1) {
          context.progress(`no-op -> ${target}: round ${round + 1}/${size.noopRepeats}`);
          for (const contender of contenders) {
            // rclone's default mode makes a request per object, and no goal compares with its wall time: one run.
            if (contender === 'rclone' && round > 0) continue;
            timed.get(contender)!.push(await mirrorOnce(context, setup, contender, target, targets.get(contender)!, proxies.endpoints, proxies, []));
          }
        }
        for (const contender of contenders) {
          const all = timed.get(contender)!;
          const median = [...all].sort((a, b) => a.wallMs - b.wallMs)[Math.floor(all.length / 2)]!;
          runs.push({ ...median, wallTimesMs: all.map((run) => run.wallMs) });
        }
      }
      noop = { runs };
    }

    let change: SteadyStateData['change'];
    if (parts.change) {
      const changes = Math.max(3, Math.round(size.objects / 100));
      const sameSize = Math.floor(changes / 3);
      const stride = Math.floor(size.objects / changes);
      const changedKeys = Array.from({ length: changes }, (_, index) => keyOf(index * stride + 7));
      // Every target was written before this second ends: the overwrites come in a later second.
      await nextSecond();
      context.progress(`1% change: overwriting ${changes} objects (${sameSize} same size, ${changes - sameSize} different size)`);
      await seedBucket(
        scenario.s3,
        scenario.sourceBucket,
        changedKeys.map((key, index) => ({ key, body: () => pseudoRandomBytes(index < sameSize ? OBJECT_BYTES : OBJECT_BYTES + 1 + index, 900_000 + index) })),
        16,
      );
      const source = await listBucket(context.s3, scenario.sourceBucket);
      const sameSizeKeys = new Set(changedKeys.slice(0, sameSize));
      const runs: NonNullable<SteadyStateData['change']>['runs'][number][] = [];
      for (const target of TARGET_NAMES) {
        for (const contender of contenders) {
          context.progress(`1% change: ${contender} -> ${target}`);
          const run = await mirrorOnce(context, setup, contender, target, targets.get(contender)!, proxies.endpoints, proxies, changedKeys, source);
          // Caught: read back from the target, byte for byte the new source bytes.
          const wrong = new Set([...(run.check?.wrongBytes ?? []), ...(run.check?.unreadable ?? [])]);
          const caughtOf = (keys: readonly string[]): number => keys.filter((key) => !wrong.has(key)).length;
          const differentSizeKeys = changedKeys.filter((key) => !sameSizeKeys.has(key));
          runs.push({
            ...run,
            caught: run.check === undefined ? 0 : caughtOf(changedKeys),
            caughtSameSize: caughtOf([...sameSizeKeys]),
            caughtDifferentSize: caughtOf(differentSizeKeys),
          });
        }
      }
      change = { changedKeys: changes, sameSize, differentSize: changes - sameSize, runs };
    }

    scenario.s3.destroy();
    const data: SteadyStateData = { objects: size.objects, objectBytes: OBJECT_BYTES, firstCopies, setupMs, ...(noop === undefined ? {} : { noop }), ...(change === undefined ? {} : { change }) };
    return {
      data,
      ...(noop === undefined ? {} : { noop: { text: renderNoop(data, contenders), verdicts: noopVerdicts(data, context.rclone), data } }),
      ...(change === undefined ? {} : { change: { text: renderChange(data, contenders), verdicts: changeVerdicts(data, context.rclone), data } }),
    };
  } finally {
    await proxies.stop();
  }
}

/** One run of `contender` into its targets; counted when `proxies` is given, checked when `keysToRead` is non-empty. */
async function mirrorOnce(
  context: BenchContext,
  setup: RunSetup,
  contender: Contender,
  target: TargetName,
  pair: TargetPair,
  endpoints: Endpoints,
  proxies: CountingProxies | undefined,
  keysToRead: readonly string[],
  source?: Awaited<ReturnType<typeof listBucket>>,
): Promise<MirrorRun> {
  proxies?.reset();
  const run = await runContender(mirrorCommand(contender, target, setup, pair, endpoints), contender, target);
  const requests = proxies?.counts();
  const check = keysToRead.length > 0 ? await checkTarget(context, setup, target, pair, keysToRead, source) : undefined;
  return { ...run, ...(requests === undefined ? {} : { requests }), ...(check === undefined ? {} : { check }) };
}

const STORE_TITLE: Readonly<Record<StoreName, string>> = { s3: 'S3 (source)', azure: 'Azure', oci: 'OCI' };

/** The stores a run against `target` talks to. */
function storesOf(target: TargetName): StoreName[] {
  return ['s3', target];
}

function listingMinimum(store: StoreName, objects: number): number {
  return Math.ceil(objects / PAGE_SIZE[store]);
}

function total(requests: RequestCounts | undefined): number | undefined {
  return requests === undefined ? undefined : STORES.reduce((sum, store) => sum + requests[store].total, 0);
}

function find<Run extends MirrorRun>(runs: readonly Run[], contender: Contender, target: TargetName): Run | undefined {
  return runs.find((run) => run.contender === contender && run.target === target);
}

/** Request kinds per store in one line: `S3 (source): 10 list; Azure: 2 list`. */
function breakdown(requests: RequestCounts | undefined, target: TargetName): string {
  if (requests === undefined) return '-';
  return storesOf(target)
    .map((store) => {
      const kinds = Object.entries(requests[store].byKind)
        .sort(([, a], [, b]) => b - a)
        .map(([kind, n]) => `${count(n)} ${kind}`)
        .join(', ');
      return `${STORE_TITLE[store]}: ${kinds || 'none'}`;
    })
    .join('; ');
}

function threeColumns(contenders: readonly Contender[], cell: (contender: Contender) => string): string[] {
  return CONTENDERS.map((contender) => (contenders.includes(contender) ? cell(contender) : contender === 'ours' ? '-' : 'not installed'));
}

function renderNoop(data: SteadyStateData, contenders: readonly Contender[]): string {
  const noop = data.noop!;
  const rows: string[][] = [];
  for (const target of TARGET_NAMES) {
    const wall = (contender: Contender): number | undefined => find(noop.runs, contender, target)?.wallMs;
    rows.push([`${target}  wall time (median)`, ...threeColumns(contenders, (contender) => seconds(wall(contender))), ratio(wall('ours'), wall('rclone')), ratio(wall('ours'), wall('rclone --size-only'))]);
    for (const store of storesOf(target)) {
      const requests = (contender: Contender): number | undefined => find(noop.runs, contender, target)?.requests?.[store].total;
      rows.push([
        `${target}  requests ${STORE_TITLE[store]} (min ${listingMinimum(store, data.objects)})`,
        ...threeColumns(contenders, (contender) => count(requests(contender))),
        ratio(requests('ours'), requests('rclone')),
        ratio(requests('ours'), requests('rclone --size-only')),
      ]);
    }
    rows.push([`${target}  peak RSS`, ...threeColumns(contenders, (contender) => megabytes(find(noop.runs, contender, target)?.peakRssBytes)), '', '']);
    const cpu = (contender: Contender): number | undefined => find(noop.runs, contender, target)?.cpuMs;
    rows.push([`${target}  CPU time (user+sys)`, ...threeColumns(contenders, (contender) => seconds(cpu(contender))), ratio(cpu('ours'), cpu('rclone')), ratio(cpu('ours'), cpu('rclone --size-only'))]);
  }
  const setupProblems = data.firstCopies.flatMap((copy) =>
    Object.entries(copy.checks)
      .filter(([, check]) => copy.exitCode !== 0 || check?.exact !== true)
      .map(([target, check]) => `${copy.contender} -> ${target} (exit ${copy.exitCode}${check === undefined ? '' : `, ${describeCheck(check)}`})`),
  );
  const setupLine = `  setup: first copies (ours: one \`all\` run; rclone: one run per target) ran at once${data.change === undefined ? '' : ', then rclone --size-only got a server-side clone of rclone\'s targets'}: ${seconds(data.setupMs)}; ${
    setupProblems.length === 0 ? 'every target was then an exact mirror (keys and sizes)' : `NOT exact: ${setupProblems.join('; ')}`
  }`;
  const details = TARGET_NAMES.flatMap((target) => contenders.map((contender) => `  ${target}, ${contender}: ${breakdown(find(noop.runs, contender, target)?.requests, target)}`));
  const timelines = TARGET_NAMES.flatMap((target) => {
    const ours = find(noop.runs, 'ours', target)?.ours;
    return ours === undefined ? [] : [`  ours -> ${target}, timeline of the median run: ${ours.timeline}`];
  });
  return [
    `2. No-op re-run over ${count(data.objects)} objects of 1 KiB (each contender re-syncs the targets it mirrored itself)`,
    renderTable(['', ...CONTENDERS, 'ours/rclone', 'ours/size-only'], rows),
    `  every run through the counting proxies; wall time and requests: the median of ${size(noop.runs.find((run) => run.contender === 'ours')?.wallTimesMs)} runs, rounds alternating the contenders (rclone default: 1 run).`,
    setupLine,
    `  "min" is the listing minimum (S3 and OCI 1000 keys a page, Azure 5000); the goal allows ${CONSTANT_FEW} more per store.`,
    ...timelines,
    '  requests by kind:',
    ...details.map((line) => `  ${line}`),
    ...failureLines(noop.runs),
    ...data.firstCopies.filter((copy) => copy.errorOutput !== undefined).map((copy) => `  setup ${copy.contender} ${copy.provider} failed (exit ${copy.exitCode}):\n${copy.errorOutput!}`),
  ].join('\n');
}

function renderChange(data: SteadyStateData, contenders: readonly Contender[]): string {
  const change = data.change!;
  const rows: string[][] = [];
  for (const target of TARGET_NAMES) {
    const run = (contender: Contender): NonNullable<SteadyStateData['change']>['runs'][number] | undefined => find(change.runs, contender, target);
    rows.push([`${target}  wall time`, ...threeColumns(contenders, (contender) => seconds(run(contender)?.wallMs)), ratio(run('ours')?.wallMs, run('rclone')?.wallMs), ratio(run('ours')?.wallMs, run('rclone --size-only')?.wallMs)]);
    for (const store of storesOf(target)) {
      const requests = (contender: Contender): number | undefined => run(contender)?.requests?.[store].total;
      rows.push([`${target}  requests ${STORE_TITLE[store]}`, ...threeColumns(contenders, (contender) => count(requests(contender))), ratio(requests('ours'), requests('rclone')), ratio(requests('ours'), requests('rclone --size-only'))]);
    }
    const totals = (contender: Contender): number | undefined => total(run(contender)?.requests);
    rows.push([`${target}  requests, all stores`, ...threeColumns(contenders, (contender) => count(totals(contender))), ratio(totals('ours'), totals('rclone')), ratio(totals('ours'), totals('rclone --size-only'))]);
    rows.push([
      `${target}  changes caught`,
      ...threeColumns(contenders, (contender) => {
        const measured = run(contender);
        return measured === undefined ? '-' : `${measured.caught}/${change.changedKeys} (same-size ${measured.caughtSameSize}/${change.sameSize})`;
      }),
      '',
      '',
    ]);
    const cpu = (contender: Contender): number | undefined => run(contender)?.cpuMs;
    rows.push([`${target}  CPU time (user+sys)`, ...threeColumns(contenders, (contender) => seconds(cpu(contender))), ratio(cpu('ours'), cpu('rclone')), ratio(cpu('ours'), cpu('rclone --size-only'))]);
    rows.push([`${target}  target afterwards`, ...threeColumns(contenders, (contender) => { const check = run(contender)?.check; return check === undefined ? '-' : describeCheck(check); }), '', '']);
  }
  const details = TARGET_NAMES.flatMap((target) => contenders.map((contender) => `  ${target}, ${contender}: ${breakdown(find(change.runs, contender, target)?.requests, target)}`));
  const timelines = TARGET_NAMES.flatMap((target) => {
    const ours = find(change.runs, 'ours', target)?.ours;
    return ours === undefined ? [] : [`  ours -> ${target}, timeline: ${ours.timeline}`, ...ours.notes.map((note) => `  ours -> ${target}, report note: ${note}`)];
  });
  return [
    `3. 1% changed: ${change.changedKeys} of ${count(data.objects)} objects overwritten at the source (${change.sameSize} same size, ${change.differentSize} different size), at least 1 s after the targets were written`,
    renderTable(['', ...CONTENDERS, 'ours/rclone', 'ours/size-only'], rows),
    '  one run each, through the counting proxies (the proxy hop is in every contender\'s wall time alike);',
    '  "caught": the changed keys read back from the target afterwards, byte for byte equal to the new source bytes.',
    ...timelines,
    '  requests by kind:',
    ...details.map((line) => `  ${line}`),
    ...failureLines(change.runs),
  ].join('\n');
}

function size(values: readonly unknown[] | undefined): number {
  return values?.length ?? 0;
}

function failureLines(runs: readonly MirrorRun[]): string[] {
  return runs.filter((run) => run.errorOutput !== undefined).map((run) => `  ${run.contender} -> ${run.target} failed (exit ${run.exitCode}):\n${run.errorOutput!.split('\n').map((line) => `    ${line}`).join('\n')}`);
}

function noopVerdicts(data: SteadyStateData, rclone: boolean): Verdict[] {
  const noop = data.noop!;
  const list: Verdict[] = [];
  for (const target of TARGET_NAMES) {
    const ours = find(noop.runs, 'ours', target);
    const requests = ours?.requests;
    const observed = storesOf(target)
      .map((store) => `${STORE_TITLE[store]} ${count(requests?.[store].total)} (min ${listingMinimum(store, data.objects)})`)
      .join(', ');
    const within = requests !== undefined && ours?.exitCode === 0 && storesOf(target).every((store) => requests[store].total <= listingMinimum(store, data.objects) + CONSTANT_FEW);
    list.push(verdict('no-op', `${target}: requests = listing minimum (+ <= ${CONSTANT_FEW} per store)`, observed, requests === undefined ? undefined : within));
    const sizeOnly = find(noop.runs, 'rclone --size-only', target);
    list.push(
      verdict(
        'no-op',
        `${target}: wall time <= rclone --size-only's`,
        rclone ? `${seconds(ours?.wallMs)} vs ${seconds(sizeOnly?.wallMs)} = ${ratio(ours?.wallMs, sizeOnly?.wallMs)}` : `ours ${seconds(ours?.wallMs)}; rclone not installed`,
        ours === undefined || sizeOnly === undefined ? undefined : ours.exitCode === 0 && ours.wallMs <= sizeOnly.wallMs,
      ),
    );
  }
  return list;
}

function changeVerdicts(data: SteadyStateData, rclone: boolean): Verdict[] {
  const change = data.change!;
  const list: Verdict[] = [];
  for (const target of TARGET_NAMES) {
    const ours = find(change.runs, 'ours', target);
    const caughtAll = ours !== undefined && ours.caught === change.changedKeys && ours.check?.exact === true;
    list.push(verdict('1% change', `${target}: every change caught`, ours === undefined ? '-' : `${ours.caught}/${change.changedKeys}, target ${ours.check === undefined ? '-' : describeCheck(ours.check)}`, ours === undefined ? undefined : caughtAll));
    const theirs = find(change.runs, 'rclone', target);
    const oursTotal = total(ours?.requests);
    const theirTotal = total(theirs?.requests);
    list.push(
      verdict(
        '1% change',
        `${target}: fewer requests than rclone (default mode)`,
        rclone ? `${count(oursTotal)} vs ${count(theirTotal)}` : `ours ${count(oursTotal)}; rclone not installed`,
        oursTotal === undefined || theirTotal === undefined ? undefined : oursTotal < theirTotal,
      ),
    );
  }
  return list;
}
