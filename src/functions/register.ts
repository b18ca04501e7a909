/**
 * What the Functions host loads (package.json `main`): the functions, over one runner and one event
 * service per instance, so Key Vault keys and credentials are cached across invocations.
 */
import azureFunctions from '@azure/functions';
import { loadEventConfig } from '../config.ts';
import { createEventService } from '../events.ts';
import { eventsHttpHandler } from './events-http.ts';
import { objectQueueHandler } from './object-queue.ts';
import { createSyncService } from '../sync.ts';
import { runStatusHttpHandler, statusHttpHandler } from './runs-http.ts';
import { createSyncRunner } from './run-sync.ts';
import { syncSchedule } from './schedule.ts';
import { syncHttpHandler } from './sync-http.ts';
import { syncTimerHandler } from './sync-timer.ts';
import { verifyHttpHandler } from './verify-http.ts';

const { app } = azureFunctions;

const service = createSyncService(process.env);
const runner = createSyncRunner({ service });
const events = createEventService(process.env);

app.http('sync', {
  route: 'sync/{provider}',
  methods: ['GET', 'POST'],
  authLevel: 'function',
  // With AzureWebJobsStorage, POST /api/sync puts the run on the queue and answers 200 or 202 within SYNC_HTTP_REPLY_WITHIN_MS; without, it runs and waits for the report.
  handler: syncHttpHandler(runner, process.env),
});

app.http('verify', {
  route: 'verify/{provider}',
  methods: ['GET'],
  authLevel: 'function',
  handler: verifyHttpHandler({ service, settings: process.env }),
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

// Last, each on its own: a malformed SYNC_SCHEDULE or SYNC_QUEUE_NAME throws here (naming the setting),
// the host logs it as "unable to load entry point", and every other function stays available.
const settingProblems = [
  () => app.timer('syncTimer', { schedule: syncSchedule(process.env), handler: syncTimerHandler(runner) }),
  () => app.storageQueue('objectQueue', { queueName: loadEventConfig(process.env).queueName, connection: 'AzureWebJobsStorage', handler: objectQueueHandler(events, process.env, runner) }),
].flatMap((register) => {
  try {
    register();
    return [];
  } catch (error) {
    return [error instanceof Error ? error.message : String(error)];
  }
});
if (settingProblems.length > 0) throw new Error(settingProblems.join('; '));
