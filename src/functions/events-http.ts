/**
 * `POST /api/events/s3`: the door S3 events come in by (EventBridge API destination, or any poster of
 * an S3 notification document). It reads at most EVENTS_BODY_LIMIT_BYTES, checks the document, puts
 * one queue message per (key, event) and answers 202: the queue worker does the mirroring. Bad input
 * is a 400 saying what is wrong (EventBridge does not retry a 4xx); a queue that cannot be reached is
 * a 503 (EventBridge retries 5xx for up to 24 h). Nothing is queued unless the whole document is valid.
 */
import type { HttpHandler, HttpRequest, HttpResponseInit } from '@azure/functions';
import { ConfigError, describeError } from '../core/errors.ts';
import { EventDocumentError, type ParsedEvents } from '../core/s3-events.ts';
import type { EventService } from '../events.ts';
import { logLine, redactedJson } from './run-sync.ts';

/** The largest body read: about 1,500 S3 notification records, or hundreds of EventBridge events. */
export const EVENTS_BODY_LIMIT_BYTES = 1024 * 1024;

export function eventsHttpHandler(service: EventService, now: () => number = Date.now): HttpHandler {
  return async (request, context) => {
    const startedMs = now();
    const answer = (status: number, payload: object): HttpResponseInit => {
      logLine(context, status < 400 ? 'info' : status < 500 ? 'warn' : 'error', { event: 'events-received', status, ...payload, durationMs: now() - startedMs });
      return {
        status,
        headers: { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'x-invocation-id': context.invocationId },
        body: redactedJson({ invocationId: context.invocationId, ...payload }),
      };
    };
    const text = await bodyWithin(request, EVENTS_BODY_LIMIT_BYTES);
    if (text === undefined) return answer(413, { error: `the body is larger than ${EVENTS_BODY_LIMIT_BYTES} bytes: send fewer events per request` });
    let parsed: ParsedEvents;
    try {
      parsed = service.parse(text);
    } catch (error) {
      if (error instanceof EventDocumentError) return answer(400, { error: error.message });
      return answer(error instanceof ConfigError ? 503 : 500, { error: describeError(error) });
    }
    try {
      if (parsed.keys.length > 0) await service.enqueue(parsed.keys);
    } catch (error) {
      return answer(503, { error: `the events were not queued (send them again): ${describeError(error)}` });
    }
    return answer(202, { queued: parsed.keys.length, ignored: parsed.ignored });
  };
}

/** The body as text, or `undefined` as soon as it is longer than `limit` bytes (the rest is not read). */
async function bodyWithin(request: HttpRequest, limit: number): Promise<string | undefined> {
  const declared = Number(request.headers.get('content-length') ?? Number.NaN);
  if (declared > limit) return undefined;
  if (request.body === null) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of request.body) {
    size += chunk.byteLength;
    if (size > limit) return undefined;
    chunks.push(chunk);
  }
  return new TextDecoder().decode(Buffer.concat(chunks));
}

