/**
 * Scenario "events": the near-real-time path on the emulators.
 *  1. Event → mirrored lag: objects are uploaded one after another, each event posted to the events
 *     handler as it happens, while a worker loop drains the queue the way the Functions host would
 *     (test/support/queue-host.ts; the host itself cannot run here). The lag of a key is the later of
 *     its two targets' `lagMs` (event time → in step), as the worker logs it.
 *  2. Endpoint throughput: the handler behind a plain HTTP server on loopback takes a burst of one
 *     event per request at EventBridge's default API-destination rate (300 per second), bounded in time.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import azureFunctions from '@azure/functions';
import { QueueServiceClient } from '@azure/storage-queue';
import { createEventService } from '../src/events.ts';
import { eventsHttpHandler } from '../src/functions/events-http.ts';
import { objectQueueHandler } from '../src/functions/object-queue.ts';
import { uniqueName } from '../test/support/emulators.ts';
import { drainQueue } from '../test/support/queue-host.ts';
import { eventBridgeEvent } from '../test/support/s3-event-documents.ts';
import { createScenario, mirrorDifferences, pseudoRandomBytes, putSource, readAll } from '../test/support/scenario.ts';
import { verdict, type BenchContext, type ScenarioOutcome } from './context.ts';
import { renderTable, seconds } from './table.ts';

const { HttpRequest, InvocationContext } = azureFunctions;

export interface EventsSize {
  /** Objects uploaded, one event each. */
  readonly events: number;
  /** Requests of the burst, sent at `burstRate` per second. */
  readonly burstRequests: number;
}

const BURST_RATE = 300;
/** The burst is cut off after this long, whatever is still in flight. */
const BURST_LIMIT_MS = 15_000;
/** How long the worker loop waits when the queue is empty before it looks again (the host backs off up to host.json maxPollingInterval, 2 s). */
const IDLE_POLL_MS = 50;
const LAG_GOAL_MS = 5_000;

export interface EventsData {
  readonly lag: { readonly events: number; readonly p50Ms: number; readonly p95Ms: number; readonly maxMs: number; readonly exact: boolean };
  readonly burst: { readonly requests: number; readonly accepted: number; readonly otherStatuses: number; readonly durationMs: number; readonly perSecond: number; readonly p50Ms: number; readonly p95Ms: number; readonly maxMs: number };
}

export async function eventsScenario(context: BenchContext, size: EventsSize): Promise<ScenarioOutcome<EventsData>> {
  const lag = await measureLag(context, size.events);
  const burst = await measureBurst(context, size.burstRequests);
  const data: EventsData = { lag, burst };
  const text = [
    `Scenario "events": event → mirrored at both targets (${lag.events} events), and the events endpoint under a ${BURST_RATE}/s burst (loopback)`,
    renderTable(['measure', 'p50', 'p95', 'max', 'notes'], [
      ['event → mirrored (azure and oci)', seconds(lag.p50Ms), seconds(lag.p95Ms), seconds(lag.maxMs), lag.exact ? 'both targets exact at the end' : 'TARGETS NOT EXACT'],
      [`endpoint response (${burst.requests} requests)`, seconds(burst.p50Ms), seconds(burst.p95Ms), seconds(burst.maxMs), `${burst.accepted} answered 202, ${burst.otherStatuses} other; ${burst.perSecond.toFixed(0)} requests/s over ${seconds(burst.durationMs)}`],
    ]),
    'The worker loop here polls an empty queue every 50 ms; the Functions host backs off up to host.json maxPollingInterval (2 s), which adds up to 2 s to an event that arrives on an idle queue.',
  ].join('\n');
  return {
    text,
    data,
    verdicts: [
      verdict('events', `event → mirrored p95 under ${seconds(LAG_GOAL_MS)}`, seconds(lag.p95Ms), lag.exact && lag.p95Ms < LAG_GOAL_MS),
      verdict('events', `endpoint answers a ${BURST_RATE}/s burst with 202, p95 under 1 s`, `${burst.accepted}/${burst.requests} at ${burst.perSecond.toFixed(0)}/s, p95 ${seconds(burst.p95Ms)}`, burst.accepted === burst.requests && burst.p95Ms < 1000),
    ],
  };
}

async function measureLag(context: BenchContext, events: number): Promise<EventsData['lag']> {
  const queueName = uniqueName('bench-events');
  const scenario = await createScenario(context.emulators, 'bench-events', { AzureWebJobsStorage: context.emulators.azurite.connectionString, SYNC_QUEUE_NAME: queueName });
  const service = createEventService(scenario.settings);
  const queues = QueueServiceClient.fromConnectionString(context.emulators.azurite.connectionString);
  // The endpoint creates the queue with its first message; the worker loop starts before that.
  await queues.getQueueClient(queueName).createIfNotExists();
  const lagByKey = new Map<string, number>();
  let producing = true;
  const worker = (async () => {
    for (;;) {
      const drained = await drainQueue(queues.getQueueClient(queueName), queues.getQueueClient(`${queueName}-poison`), objectQueueHandler(service));
      for (const line of drained.lines) {
        const fields = JSON.parse(line.text) as Record<string, unknown>;
        if (fields['event'] !== 'key-mirrored' || typeof fields['lagMs'] !== 'number') continue;
        const key = String(fields['key']);
        lagByKey.set(key, Math.max(lagByKey.get(key) ?? 0, fields['lagMs']));
      }
      if (!producing && drained.succeeded + drained.failed === 0) return;
      if (drained.succeeded + drained.failed === 0) await new Promise((resolve) => setTimeout(resolve, IDLE_POLL_MS));
    }
  })();
  try {
    for (let index = 0; index < events; index += 1) {
      const key = `events/${String(index).padStart(4, '0')}.bin`;
      await putSource(scenario, key, pseudoRandomBytes(4096, index + 1));
      const request = new HttpRequest({ method: 'POST', url: 'http://127.0.0.1/api/events/s3', body: { string: JSON.stringify(eventBridgeEvent(scenario.sourceBucket, key, 'created')) } });
      const response = await eventsHttpHandler(service)(request, new InvocationContext({ functionName: 'events', logHandler: () => undefined }));
      if (response.status !== 202) throw new Error(`the events endpoint answered ${response.status}: ${String(response.body)}`);
      if (index % 50 === 49) context.progress(`events: ${index + 1}/${events} uploaded and posted`);
    }
  } finally {
    producing = false;
    await worker;
  }
  const state = await readAll(scenario);
  scenario.s3.destroy();
  const lags = [...lagByKey.values()].sort((a, b) => a - b);
  return {
    events: lags.length,
    p50Ms: percentile(lags, 50),
    p95Ms: percentile(lags, 95),
    maxMs: lags.at(-1) ?? 0,
    exact: lags.length === events && mirrorDifferences(state.source, state.azure).length === 0 && mirrorDifferences(state.source, state.oci).length === 0,
  };
}

async function measureBurst(context: BenchContext, requests: number): Promise<EventsData['burst']> {
  const scenario = await createScenario(context.emulators, 'bench-burst', { AzureWebJobsStorage: context.emulators.azurite.connectionString, SYNC_QUEUE_NAME: uniqueName('bench-burst') });
  scenario.s3.destroy();
  const handler = eventsHttpHandler(createEventService(scenario.settings));
  const server = createServer((incoming, outgoing) => void serve(handler, incoming, outgoing));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/events/s3`;
  const deadline = AbortSignal.timeout(BURST_LIMIT_MS);
  const timings: number[] = [];
  let accepted = 0;
  let otherStatuses = 0;
  const startedMs = performance.now();
  try {
    const sent: Promise<void>[] = [];
    for (let index = 0; index < requests && !deadline.aborted; index += 1) {
      // Paced at the rate EventBridge sends: request i leaves i / rate seconds after the first.
      const due = startedMs + (index * 1000) / BURST_RATE;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      const body = JSON.stringify(eventBridgeEvent(scenario.sourceBucket, `burst/${index}.bin`, 'created'));
      sent.push((async () => {
        const requestStarted = performance.now();
        try {
          const response = await fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/json' }, signal: deadline });
          await response.arrayBuffer();
          if (response.status === 202) accepted += 1;
          else otherStatuses += 1;
        } catch {
          otherStatuses += 1;
        }
        timings.push(performance.now() - requestStarted);
      })());
    }
    await Promise.all(sent);
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
  const durationMs = performance.now() - startedMs;
  timings.sort((a, b) => a - b);
  return { requests, accepted, otherStatuses, durationMs, perSecond: (accepted / durationMs) * 1000, p50Ms: percentile(timings, 50), p95Ms: percentile(timings, 95), maxMs: timings.at(-1) ?? 0 };
}

/** Node's request, translated for the handler as the Functions host would, and its answer written back. */
async function serve(handler: ReturnType<typeof eventsHttpHandler>, incoming: IncomingMessage, outgoing: ServerResponse): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const chunk of incoming) chunks.push(chunk as Buffer);
  const request = new HttpRequest({ method: incoming.method ?? 'POST', url: `http://127.0.0.1${incoming.url ?? '/'}`, body: { bytes: Buffer.concat(chunks) } });
  const response = await handler(request, new InvocationContext({ functionName: 'events', logHandler: () => undefined }));
  outgoing.writeHead(response.status ?? 200, { 'content-type': 'application/json' });
  outgoing.end(typeof response.body === 'string' ? response.body : '');
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0;
}
