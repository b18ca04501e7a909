/**
 * What the Functions host loads (package.json `main`): the two functions, over one runner per
 * instance, so Key Vault keys and credentials are cached across invocations.
 */
import azureFunctions from '@azure/functions';
import { createSyncRunner } from './run-sync.ts';
import { syncSchedule } from './schedule.ts';
import { syncHttpHandler } from './sync-http.ts';
import { syncTimerHandler } from './sync-timer.ts';

const { app } = azureFunctions;
const runner = createSyncRunner();

app.http('sync', {
  route: 'sync/{provider}',
  methods: ['GET', 'POST'],
  authLevel: 'function',
  handler: syncHttpHandler(runner),
});

// Second on purpose: a malformed SYNC_SCHEDULE throws here, the host logs the message (naming the
// setting) as "unable to load entry point", and `sync` stays available.
app.timer('syncTimer', {
  schedule: syncSchedule(process.env),
  handler: syncTimerHandler(runner),
});
