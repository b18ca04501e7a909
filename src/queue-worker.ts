/**
 * `artifacts-sync work`: a queue worker outside the Functions host. It calls the queue function's own
 * handler (functions/object-queue.ts) the way the host does with our host.json: messages received in
 * batches, base64-decoded and handed over as parsed JSON, `dequeueCount` in the trigger metadata,
 * deleted when the handler returns, made visible again when it throws, and moved to `<queue>-poison`
 * after `maxDequeueCount` attempts. While a message is worked on its visibility is renewed, so it is
 * never handed to a second worker; a worker that dies stops renewing, and its messages come back to
 * the others within `visibilitySeconds`.
 */
import { randomUUID } from 'node:crypto';
import type { StorageQueueHandler } from '@azure/functions';
import type { DequeuedMessageItem, QueueClient } from '@azure/storage-queue';
import { describeError } from './core/errors.ts';

export interface WorkOptions {
  /** Return once the queue holds no message, counting the ones other workers hold invisible; otherwise run until `signal`. */
  readonly untilEmpty: boolean;
  /** How long a received message stays invisible; renewed at a third of it while the handler runs. */
  readonly visibilitySeconds: number;
  /** How long a failed message stays invisible before its next attempt. */
  readonly retrySeconds: number;
  readonly maxDequeueCount: number;
  /** Messages received and worked on at once (host.json `batchSize`). */
  readonly batchSize: number;
  readonly signal?: AbortSignal;
  /** One line per message handled (and every line the handler logs). */
  readonly log: (level: string, line: string) => void;
}

export interface WorkResult {
  readonly succeeded: number;
  readonly failed: number;
  readonly poisoned: number;
}

/** The longest pause between two looks at an empty queue (host.json `maxPollingInterval`). */
const MAX_POLL_MS = 2000;

export async function workQueue(queue: QueueClient, poison: QueueClient, handler: StorageQueueHandler, options: WorkOptions): Promise<WorkResult> {
  const { InvocationContext } = (await import('@azure/functions')).default;
  await queue.createIfNotExists();
  let succeeded = 0;
  let failed = 0;
  let poisoned = 0;
  let pollMs = 100;
  const work = async (message: DequeuedMessageItem): Promise<void> => {
    let popReceipt = message.popReceipt;
    // Renewals run one at a time: each needs the pop receipt the one before it returned.
    let renewing: Promise<void> = Promise.resolve();
    const renew = setInterval(() => {
      renewing = renewing.then(async () => {
        popReceipt = (await queue.updateMessage(message.messageId, popReceipt, undefined, options.visibilitySeconds)).popReceipt ?? popReceipt;
      }).catch((error: unknown) => options.log('warn', JSON.stringify({ event: 'visibility-renewal-failed', messageId: message.messageId, error: describeError(error) })));
    }, (options.visibilitySeconds * 1000) / 3);
    const entry = queueEntry(message.messageText);
    const context = new InvocationContext({
      invocationId: randomUUID(),
      functionName: 'objectQueue',
      triggerMetadata: { dequeueCount: message.dequeueCount, id: message.messageId },
      logHandler: (level, ...args) => options.log(level, args.map(String).join(' ')),
    });
    let outcome: { ok: true } | { ok: false; error: unknown };
    try {
      await handler(entry, context);
      outcome = { ok: true };
    } catch (error) {
      outcome = { ok: false, error };
    } finally {
      clearInterval(renew);
      await renewing;
    }
    if (outcome.ok) {
      succeeded += 1;
      await queue.deleteMessage(message.messageId, popReceipt);
      return;
    }
    failed += 1;
    options.log('warn', JSON.stringify({ event: 'message-failed', messageId: message.messageId, dequeueCount: message.dequeueCount, error: describeError(outcome.error) }));
    if (message.dequeueCount >= options.maxDequeueCount) {
      await poison.createIfNotExists();
      await poison.sendMessage(message.messageText);
      await queue.deleteMessage(message.messageId, popReceipt);
      poisoned += 1;
    } else {
      await queue.updateMessage(message.messageId, popReceipt, undefined, options.retrySeconds);
    }
  };

  while (options.signal?.aborted !== true) {
    const { receivedMessageItems: batch } = await queue.receiveMessages({ numberOfMessages: options.batchSize, visibilityTimeout: options.visibilitySeconds });
    if (batch.length > 0) {
      pollMs = 100;
      await Promise.all(batch.map(work));
      continue;
    }
    if (options.untilEmpty && ((await queue.getProperties()).approximateMessagesCount ?? 0) === 0) break;
    await new Promise((resolve) => setTimeout(resolve, pollMs));
    pollMs = Math.min(MAX_POLL_MS, pollMs * 2);
  }
  return { succeeded, failed, poisoned };
}

/** What the host hands a queue handler for a message (host.json `messageEncoding: base64`): the parsed JSON, or the text when it is not JSON. */
export function queueEntry(messageText: string): unknown {
  const text = Buffer.from(messageText, 'base64').toString('utf8');
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
