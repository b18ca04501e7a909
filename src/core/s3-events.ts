/**
 * S3 event documents in, the keys they name out. Three shapes are read:
 * - an EventBridge event (`"source": "aws.s3"`, `"detail-type": "Object Created" | "Object Deleted"`),
 * - an array of them,
 * - an S3 notification document `{"Records": [...]}` (what S3 sends to SNS, SQS and Lambda), whose keys
 *   are form-encoded (`+` is a space, `%2B` a plus).
 * An `s3:TestEvent` (S3 sends one when a notification is configured) names no key and is ignored.
 *
 * The keys only say WHICH objects to look at: a worker reconciles each to the source's current state,
 * never to what the event says, so an event that is late, repeated or out of order is harmless. That
 * also makes an ambiguous key safe to look at twice: where AWS does not document whether a key is
 * encoded (EventBridge), both readings are reconciled when they differ. Pure: no I/O.
 */
import type { RunPieceMessage, RunStartMessage } from './fan-out.ts';

/** What happened to the key, as the event said (a hint for logs; the worker asks the source). */
export type S3EventKind = 'created' | 'deleted';

/** One (key, event) to reconcile. */
export interface S3EventKey {
  readonly key: string;
  readonly kind: S3EventKind;
  /** When S3 says the change happened (epoch ms): the start of the lag a worker logs. */
  readonly eventTimeMs: number;
  /** The event's id or S3 sequencer, for logs; absent when the document has none. */
  readonly eventId?: string;
}

export interface ParsedEvents {
  readonly keys: readonly S3EventKey[];
  /** Test events and others that name no key: counted, not reconciled. */
  readonly ignored: number;
}

/** The document is not an event we read, or names another bucket; says what is wrong and what is allowed. */
export class EventDocumentError extends Error {
  override readonly name = 'EventDocumentError';
}

const FORMATS = 'an EventBridge S3 event ({"source":"aws.s3","detail-type":"Object Created"|"Object Deleted",...}), an array of them, or an S3 notification document ({"Records":[...]})';
/** Errors quote at most this much of a caller's text. */
const QUOTE_LIMIT = 80;

/**
 * The keys `text` names in `bucket`. Throws `EventDocumentError` when the document is not JSON, not one
 * of the three shapes, names another bucket or an event we do not handle: then nothing is reconciled.
 */
export function parseS3Events(text: string, bucket: string): ParsedEvents {
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    throw new EventDocumentError(`the body is not JSON (${error instanceof Error ? error.message : String(error)}): expected ${FORMATS}`);
  }
  const keys: S3EventKey[] = [];
  let ignored = 0;
  const add = (found: readonly S3EventKey[] | 'ignored'): void => {
    if (found === 'ignored') ignored += 1;
    else keys.push(...found);
  };
  if (Array.isArray(document)) {
    if (document.length === 0) throw new EventDocumentError(`the array holds no event: expected ${FORMATS}`);
    document.forEach((event, index) => add(eventBridgeKeys(event, bucket, `event [${index}]`)));
  } else if (isRecord(document) && 'Records' in document) {
    const records = document['Records'];
    if (!Array.isArray(records)) throw new EventDocumentError(`"Records" is not an array: expected ${FORMATS}`);
    records.forEach((record, index) => add(notificationKeys(record, bucket, `Records[${index}]`)));
  } else if (isRecord(document) && document['Event'] === 's3:TestEvent') {
    add('ignored');
  } else {
    add(eventBridgeKeys(document, bucket, 'the event'));
  }
  return { keys, ignored };
}

/** One EventBridge event: its key (both readings when it may be form-encoded), or 'ignored' for a test event. */
function eventBridgeKeys(event: unknown, bucket: string, where: string): readonly S3EventKey[] | 'ignored' {
  if (!isRecord(event)) throw new EventDocumentError(`${where} is not a JSON object: expected ${FORMATS}`);
  if (event['Event'] === 's3:TestEvent') return 'ignored';
  if (event['source'] !== 'aws.s3') throw new EventDocumentError(`${where} has source ${quote(event['source'])}: expected "aws.s3" (${FORMATS})`);
  const detailType = event['detail-type'];
  const kind = detailType === 'Object Created' ? 'created' : detailType === 'Object Deleted' ? 'deleted' : undefined;
  if (kind === undefined) throw new EventDocumentError(`${where} has detail-type ${quote(detailType)}: allowed are "Object Created" and "Object Deleted"`);
  const detail = event['detail'];
  if (!isRecord(detail)) throw new EventDocumentError(`${where} has no "detail" object`);
  checkBucket(field(detail, 'bucket', 'name'), bucket, `${where} detail.bucket.name`);
  const key = field(detail, 'object', 'key');
  if (typeof key !== 'string' || key === '') throw new EventDocumentError(`${where} has no detail.object.key string`);
  const eventTimeMs = timeOf(event['time'], `${where} time`);
  const eventId = typeof event['id'] === 'string' ? event['id'] : undefined;
  const readings = new Set([key]);
  // EventBridge's key encoding is not documented the way notifications' is: reconcile both readings.
  const decoded = formDecoded(key);
  if (decoded !== undefined) readings.add(decoded);
  return [...readings].map((reading) => ({ key: reading, kind, eventTimeMs, ...(eventId === undefined ? {} : { eventId }) }));
}

/** One record of an S3 notification document: its (form-decoded) key, or 'ignored' for a test event. */
function notificationKeys(record: unknown, bucket: string, where: string): readonly S3EventKey[] | 'ignored' {
  if (!isRecord(record)) throw new EventDocumentError(`${where} is not a JSON object: expected an S3 event record`);
  if (record['Event'] === 's3:TestEvent' || record['eventName'] === 's3:TestEvent') return 'ignored';
  const name = record['eventName'];
  const kind = typeof name !== 'string' ? undefined : name.startsWith('ObjectCreated:') ? 'created' : name.startsWith('ObjectRemoved:') ? 'deleted' : undefined;
  if (kind === undefined) throw new EventDocumentError(`${where} has eventName ${quote(name)}: allowed are ObjectCreated:* and ObjectRemoved:*`);
  const s3 = record['s3'];
  if (!isRecord(s3)) throw new EventDocumentError(`${where} has no "s3" object`);
  checkBucket(field(s3, 'bucket', 'name'), bucket, `${where} s3.bucket.name`);
  const encoded = field(s3, 'object', 'key');
  if (typeof encoded !== 'string' || encoded === '') throw new EventDocumentError(`${where} has no s3.object.key string`);
  const key = formDecoded(encoded);
  if (key === undefined) throw new EventDocumentError(`${where} s3.object.key ${quote(encoded)} is not form-encoded (a "%" must start %XX of UTF-8)`);
  const sequencer = field(s3, 'object', 'sequencer');
  return [{ key, kind, eventTimeMs: timeOf(record['eventTime'], `${where} eventTime`), ...(typeof sequencer === 'string' ? { eventId: sequencer } : {}) }];
}

/** `+` is a space and `%XX` a UTF-8 byte; `undefined` when the text is not valid form encoding. */
export function formDecoded(text: string): string | undefined {
  try {
    return decodeURIComponent(text.replaceAll('+', ' '));
  } catch {
    return undefined;
  }
}

function checkBucket(name: unknown, bucket: string, where: string): void {
  if (typeof name !== 'string') throw new EventDocumentError(`${where} is missing: expected the source bucket ${JSON.stringify(bucket)}`);
  if (name !== bucket) throw new EventDocumentError(`${where} is ${quote(name)}, not the source bucket ${JSON.stringify(bucket)}: events of other buckets are refused`);
}

function timeOf(value: unknown, where: string): number {
  const ms = typeof value === 'string' ? Date.parse(value) : Number.NaN;
  if (Number.isNaN(ms)) throw new EventDocumentError(`${where} ${quote(value)} is not an ISO-8601 time such as "2026-12-03T07:00:00Z"`);
  return ms;
}

function field(object: Record<string, unknown>, outer: string, inner: string): unknown {
  const value = object[outer];
  return isRecord(value) ? value[inner] : undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function quote(value: unknown): string {
  const text = value === undefined ? 'missing' : JSON.stringify(value) ?? String(value);
  return text.length > QUOTE_LIMIT ? `${text.slice(0, QUOTE_LIMIT)}...` : text;
}

/** One queue message: one (key, event). Versioned, so a later format can tell old messages apart. */
export interface EventMessage {
  readonly v: 1;
  readonly key: string;
  readonly kind: S3EventKind;
  /** ISO-8601, as the event gave it. */
  readonly eventTime: string;
  readonly eventId?: string;
}

export function eventMessage(event: S3EventKey): EventMessage {
  return { v: 1, key: event.key, kind: event.kind, eventTime: new Date(event.eventTimeMs).toISOString(), ...(event.eventId === undefined ? {} : { eventId: event.eventId }) };
}

/**
 * The message as the queue carries it: base64 of its UTF-8 JSON, because the Functions host decodes
 * queue messages from base64 by default (host.json `extensions.queues.messageEncoding`).
 */
export function encodeEventMessage(message: EventMessage | RunPieceMessage | RunStartMessage): string {
  const bytes = new TextEncoder().encode(JSON.stringify(message));
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/**
 * The key a queue message names, from what the host hands the handler: the decoded text, or the object
 * it parsed from JSON. Throws `EventDocumentError` for anything else (the host then retries and, after
 * its dequeue limit, moves the message to the poison queue, where it can be read).
 */
export function readEventMessage(entry: unknown): S3EventKey {
  let value = entry;
  if (typeof entry === 'string') {
    try {
      value = JSON.parse(entry);
    } catch {
      throw new EventDocumentError(`the queue message is not JSON: expected {"v":1,"key":"...","kind":"created"|"deleted","eventTime":"..."}, got ${quote(entry)}`);
    }
  }
  if (!isRecord(value) || value['v'] !== 1 || typeof value['key'] !== 'string' || value['key'] === '' || (value['kind'] !== 'created' && value['kind'] !== 'deleted')) {
    throw new EventDocumentError(`the queue message is not an event message: expected {"v":1,"key":"...","kind":"created"|"deleted","eventTime":"..."}, got ${quote(value)}`);
  }
  const eventId = value['eventId'];
  return { key: value['key'], kind: value['kind'], eventTimeMs: timeOf(value['eventTime'], 'the queue message eventTime'), ...(typeof eventId === 'string' ? { eventId } : {}) };
}
