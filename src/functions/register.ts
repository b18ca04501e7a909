/**
 * What the Functions host loads (package.json `main`): the functions, over one runner and one event
 * service per instance, so Key Vault keys and credentials are cached across invocations.
 */
import azureFunctions from '@azure/functions';
import { loadEventConfig, loadFanOutConfig } from '../config.ts';
import { createEventService } from '../events.ts';
import { eventsHttpHandler } from './events-http.ts';
import { objectQueueHandler } from './object-queue.ts';
import { runStatusHttpHandler, statusHttpHandler } from './runs-http.ts';
import { createSyncRunner } from './run-sync.ts';
import { syncSchedule } from './schedule.ts';
import { syncHttpHandler } from './sync-http.ts';
import { syncTimerHandler } from './sync-timer.ts';

const { app } = azureFunctions;

/** With AzureWebJobsStorage, POST /api/sync answers 202 when the run takes longer than SYNC_HTTP_REPLY_WITHIN_MS; without, it waits for the report. */
function httpReplyWithinMs(): number {
  if (loadEventConfig(process.env).hostStorage === undefined) return Number.POSITIVE_INFINITY;
  return loadFanOutConfig(process.env).httpReplyWithinMs;
}

const runner = createSyncRunner();
const events = createEventService(process.env);

app.http('sync', {
  route: 'sync/{provider}',
  methods: ['GET', 'POST'],
  authLevel: 'function',
  handler: syncHttpHandler(runner, httpReplyWithinMs),
});

// Second on purpose: a malformed SYNC_SCHEDULE throws here, the host logs the message (naming the
// setting) as "unable to load entry point", and `sync` stays available.
app.timer('syncTimer', {
  schedule: syncSchedule(process.env),
  handler: syncTimerHandler(runner),
});

app.http('events', {
  route: 'events/s3',
  methods: ['POST'],
  authLevel: 'function',
  handler: eventsHttpHandler(events),
});

app.http('runStatus', {
  route: 'runs/{id}',
  methods: ['GET'],
  authLevel: 'function',
  handler: runStatusHttpHandler(),
});

app.http('status', {
  route: 'status',
  methods: ['GET'],
  authLevel: 'function',
  handler: statusHttpHandler(),
});

// Last: a malformed SYNC_QUEUE_NAME throws here (naming the setting), and the other functions stay available.
app.storageQueue('objectQueue', {
  queueName: loadEventConfig(process.env).queueName,
  connection: 'AzureWebJobsStorage',
  handler: objectQueueHandler(events),
});
