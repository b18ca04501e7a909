/**
 * Plays the Functions host's queue loop, which is not available without the host (`func` cannot be
 * installed here), over a real Azurite queue. It follows the host's documented behaviour with the
 * settings of our host.json:
 * - receive up to `batchSize` (16) messages with a visibility timeout and run them concurrently;
 * - decode each from base64 (`messageEncoding: base64`) and hand a JSON message over as the parsed object;
 * - pass `dequeueCount` in the trigger metadata;
 * - delete a message whose handler returned; leave one whose handler threw to become visible again;
 * - once a message has failed `maxDequeueCount` (5) times, move it to `<queue>-poison` and delete it.
 * One difference, for speed: a failed message becomes visible again at once (the host waits
 * host.json `visibilityTimeout`, 10 s).
 */
import { randomUUID } from 'node:crypto';
import azureFunctions from '@azure/functions';
import type { StorageQueueHandler } from '@azure/functions';
import type { QueueClient } from '@azure/storage-queue';
import { queueEntry } from '../../src/queue-worker.ts';
import type { LoggedLine } from './functions-invocation.ts';

const { InvocationContext } = azureFunctions;

/** host.json `extensions.queues.maxDequeueCount` (and the host's default). */
export const HOST_MAX_DEQUEUE_COUNT = 5;
/** host.json `extensions.queues.batchSize` (and the host's default). */
export const HOST_BATCH_SIZE = 16;

export interface DrainResult {
  /** Invocations that returned (messages deleted). */
  readonly succeeded: number;
  /** Invocations that threw (retried or poisoned). */
  readonly failed: number;
  /** Messages moved to `<queue>-poison`. */
  readonly poisoned: number;
  /** Every line logged by every invocation. */
  readonly lines: readonly LoggedLine[];
  /** What each failed invocation threw. */
  readonly errors: readonly string[];
}

/** Runs `handler` over the queue until it is empty, as the host would. */
export async function drainQueue(queue: QueueClient, poison: QueueClient, handler: StorageQueueHandler): Promise<DrainResult> {
  let succeeded = 0;
  let failed = 0;
  let poisoned = 0;
  const lines: LoggedLine[] = [];
  const errors: string[] = [];
  for (;;) {
    const { receivedMessageItems: batch } = await queue.receiveMessages({ numberOfMessages: HOST_BATCH_SIZE, visibilityTimeout: 60 });
    if (batch.length === 0) break;
    await Promise.all(batch.map(async (message) => {
      const entry = queueEntry(message.messageText);
      const context = new InvocationContext({
        invocationId: randomUUID(),
        functionName: 'objectQueue',
        triggerMetadata: { dequeueCount: message.dequeueCount, id: message.messageId },
        logHandler: (level, ...args) => lines.push({ level, text: args.map(String).join(' ') }),
      });
      try {
        await handler(entry, context);
        succeeded += 1;
        await queue.deleteMessage(message.messageId, message.popReceipt);
      } catch (error) {
        failed += 1;
        errors.push(error instanceof Error ? error.message : String(error));
        if (message.dequeueCount >= HOST_MAX_DEQUEUE_COUNT) {
          await poison.createIfNotExists();
          await poison.sendMessage(message.messageText);
          await queue.deleteMessage(message.messageId, message.popReceipt);
          poisoned += 1;
        } else {
          await queue.updateMessage(message.messageId, message.popReceipt, undefined, 0);
        }
      }
    }));
  }
  return { succeeded, failed, poisoned, lines, errors };
}
