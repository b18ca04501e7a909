/**
 * What the Functions host loads (package.json `main`): the three functions, over one service per
 * instance, so Key Vault keys and credentials are cached across invocations.
 */
import azureFunctions from '@azure/functions';
import { createSyncService } from '../sync.ts';
import { createSyncRunner } from './run-sync.ts';
import { syncSchedule } from './schedule.ts';
import { syncHttpHandler } from './sync-http.ts';
import { syncTimerHandler } from './sync-timer.ts';
import { verifyHttpHandler } from './verify-http.ts';

const { app } = azureFunctions;
const service = createSyncService(process.env);
const runner = createSyncRunner({ service });

app.http('sync', {
  route: 'sync/{provider}',
  methods: ['GET', 'POST'],
  authLevel: 'function',
  handler: syncHttpHandler(runner),
});

app.http('verify', {
  route: 'verify/{provider}',
  methods: ['GET'],
  authLevel: 'function',
  handler: verifyHttpHandler({ service, settings: process.env }),
});

// Last on purpose: a malformed SYNC_SCHEDULE throws here, the host logs the message (naming the
// setting) as "unable to load entry point", and `sync` stays available.
app.timer('syncTimer', {
  schedule: syncSchedule(process.env),
  handler: syncTimerHandler(runner),
});
