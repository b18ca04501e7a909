/**
 * What event-driven work keeps in the Functions host's own storage account (`AzureWebJobsStorage`):
 * the queue of keys to reconcile, and the rolling count of event deletions (a small JSON blob per
 * source bucket and target, updated with If-Match so concurrent workers never lose a count).
 */
import type { TokenCredential } from '@azure/identity';
import { BlobServiceClient, RestError } from '@azure/storage-blob';
import { QueueServiceClient, type QueueClient } from '@azure/storage-queue';
import { forEachBounded } from './core/concurrency.ts';
import { admitDeletions, type DeletionWindow, type WindowCounts, type WindowLimits } from './core/delete-window.ts';
import { registerSecret } from './core/errors.ts';
import type { RunPieceMessage, RunStartMessage } from './core/fan-out.ts';
import { encodeEventMessage, type EventMessage } from './core/s3-events.ts';
import type { TargetName } from './core/types.ts';
import type { HostStorageConfig } from './config.ts';
import { connectionStringAccountKey } from './stores/azure-connection-string.ts';

/** Container of the host storage account that holds the event deletion window. */
export const EVENT_STATE_CONTAINER = 'artifacts-sync-events';
/** Messages sent at once; 500 records of one request go in about 16 round trips. */
const SEND_CONCURRENCY = 32;
/** Conditional writes of the window tried before a grant gives up (each loses only to another worker's write). */
const WINDOW_WRITE_ATTEMPTS = 20;

export interface HostStorageClients {
  readonly queues: QueueServiceClient;
  readonly blobs: BlobServiceClient;
}

/** Clients for the host storage; an identity-based setting loads @azure/identity (managed identity in Azure). */
export async function hostStorageClients(config: HostStorageConfig): Promise<HostStorageClients> {
  if (config.kind === 'connection-string') {
    registerSecret(connectionStringAccountKey(config.connectionString));
    return { queues: QueueServiceClient.fromConnectionString(config.connectionString), blobs: BlobServiceClient.fromConnectionString(config.connectionString) };
  }
  const { DefaultAzureCredential, ManagedIdentityCredential } = await import('@azure/identity');
  const credential: TokenCredential = config.managedIdentityClientId === undefined ? new DefaultAzureCredential() : new ManagedIdentityCredential({ clientId: config.managedIdentityClientId });
  return { queues: new QueueServiceClient(config.queueServiceUri, credential), blobs: new BlobServiceClient(config.blobServiceUri, credential) };
}

export interface EventQueue {
  readonly name: string;
  /** Puts one message per entry on the queue (created on first use); resolves once every one is stored. */
  send(messages: readonly (EventMessage | RunPieceMessage | RunStartMessage)[], signal?: AbortSignal): Promise<void>;
}

export function eventQueue(clients: HostStorageClients, name: string): EventQueue {
  const queue: QueueClient = clients.queues.getQueueClient(name);
  let created: Promise<unknown> | undefined;
  return {
    name,
    async send(messages, signal) {
      created ??= queue.createIfNotExists().catch((error: unknown) => {
        created = undefined;
        throw error;
      });
      await created;
      await forEachBounded(messages, SEND_CONCURRENCY, async (message) => {
        await queue.sendMessage(encodeEventMessage(message), { abortSignal: signal });
      });
    },
  };
}

/** The deletion window shared by every worker: one blob per source bucket and target in the host storage. */
export function blobDeletionWindow(clients: HostStorageClients, bucket: string, limits: WindowLimits, now: () => number = Date.now): DeletionWindow {
  const container = clients.blobs.getContainerClient(EVENT_STATE_CONTAINER);
  let created: Promise<unknown> | undefined;
  return {
    rule: `${limits.limit} per target in ${limits.windowMs / 1000} s, counted in the host storage`,
    setting: 'SYNC_MAX_DELETE_COUNT',
    async grant(target: TargetName, count: number, take: boolean, signal?: AbortSignal): Promise<number> {
      if (count === 0) return 0;
      created ??= container.createIfNotExists({ abortSignal: signal });
      await created;
      const blob = container.getBlockBlobClient(`deletion-window/${bucket}/${target}.json`);
      for (let attempt = 1; ; attempt += 1) {
        let counts: WindowCounts = {};
        let etag: string | undefined;
        try {
          // The counts and the ETag come from one answer, so the conditional write below covers exactly what was read.
          const current = await blob.download(0, undefined, { abortSignal: signal });
          etag = current.etag;
          counts = JSON.parse(await text(current.readableStreamBody)) as WindowCounts;
        } catch (error) {
          if (!(error instanceof RestError && error.statusCode === 404)) throw error;
        }
        const admitted = admitDeletions(counts, limits, now(), count);
        if (!take || admitted.granted === 0) return admitted.granted;
        const body = JSON.stringify(admitted.counts);
        try {
          await blob.upload(body, Buffer.byteLength(body), { abortSignal: signal, conditions: etag === undefined ? { ifNoneMatch: '*' } : { ifMatch: etag } });
          return admitted.granted;
        } catch (error) {
          // Another worker wrote first (412, or 409 when both created it): read its counts and try again.
          const lost = error instanceof RestError && (error.statusCode === 412 || error.statusCode === 409);
          if (!lost || attempt >= WINDOW_WRITE_ATTEMPTS) throw error;
        }
      }
    },
  };
}

/** A downloaded blob's body as UTF-8 text. */
export async function text(stream: NodeJS.ReadableStream | undefined): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream ?? []) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks).toString('utf8');
}
