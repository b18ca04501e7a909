/** The event path's settings (pure), and the endpoint when the host storage is missing. */
import { describe, expect, it } from 'vitest';
import { loadEventConfig } from '../src/config.ts';
import { createEventService } from '../src/events.ts';
import { callEvents } from './support/functions-invocation.ts';
import { eventBridgeEvent } from './support/s3-event-documents.ts';

describe('event settings', () => {
  it('default to the artifacts-sync-objects queue and a one-hour deletion window, with no host storage', () => {
    expect(loadEventConfig({})).toEqual({ queueName: 'artifacts-sync-objects', deleteWindowMs: 3_600_000, hostStorage: undefined });
  });

  it('read AzureWebJobsStorage as a connection string, or the identity-based AzureWebJobsStorage__* settings the host uses', () => {
    expect(loadEventConfig({ AzureWebJobsStorage: 'UseDevelopmentStorage=true' }).hostStorage).toEqual({ kind: 'connection-string', connectionString: 'UseDevelopmentStorage=true' });
    expect(loadEventConfig({ AzureWebJobsStorage__accountName: 'mirrorhost', AzureWebJobsStorage__credential: 'managedidentity', AzureWebJobsStorage__clientId: '11111111-2222-3333-4444-555555555555' }).hostStorage).toEqual({
      kind: 'identity',
      queueServiceUri: 'https://mirrorhost.queue.core.windows.net',
      blobServiceUri: 'https://mirrorhost.blob.core.windows.net',
      managedIdentityClientId: '11111111-2222-3333-4444-555555555555',
    });
  });

  it('name each bad setting and what is allowed', () => {
    expect(() => loadEventConfig({ SYNC_QUEUE_NAME: 'Events--X', SYNC_EVENT_DELETE_WINDOW_SECONDS: '5', AzureWebJobsStorage__queueServiceUri: 'https://h.queue.core.windows.net', AzureWebJobsStorage__credential: 'password' })).toThrow(
      /SYNC_QUEUE_NAME "Events--X" is not a valid queue name: 3-56 lowercase letters[\s\S]*SYNC_EVENT_DELETE_WINDOW_SECONDS "5" is not a whole number from 60 to 604800[\s\S]*AzureWebJobsStorage__credential "password" must be "managedidentity"[\s\S]*AzureWebJobsStorage__blobServiceUri is required with AzureWebJobsStorage__queueServiceUri/,
    );
    expect(() => loadEventConfig({ AzureWebJobsStorage: 'not a connection string' })).toThrow(/AzureWebJobsStorage is not a storage connection string/);
  });

  it('without AzureWebJobsStorage the endpoint answers 503 (EventBridge retries) and says which setting is missing', async () => {
    const call = await callEvents(createEventService({ AWS_S3_BUCKET: 'artifacts' }), JSON.stringify(eventBridgeEvent('artifacts', 'a.txt', 'created')));

    expect(call.status).toBe(503);
    expect(call.body['error']).toContain('AzureWebJobsStorage is required to queue events');
  });
});
