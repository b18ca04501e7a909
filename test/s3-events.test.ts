/** Reading S3 event documents (pure: no emulator). */
import { describe, expect, it } from 'vitest';
import { EventDocumentError, encodeEventMessage, eventMessage, parseS3Events, readEventMessage } from '../src/core/s3-events.ts';
import { eventBridgeEvent, notificationRecord, testEvent } from './support/s3-event-documents.ts';

const BUCKET = 'artifacts';
/** Keys that S3 events encode in ways that are easy to get wrong. */
const ODD_KEYS = ['dir/with space.txt', 'c++/a+b.zip', '100%/done 50%.txt', 'ünïcødé/日本語 ファイル.bin'];
const TIME = new Date('2026-12-03T07:00:00.000Z');

function keysOf(document: unknown): string[] {
  return parseS3Events(JSON.stringify(document), BUCKET).keys.map((entry) => entry.key);
}

function refusal(document: unknown): string {
  try {
    parseS3Events(typeof document === 'string' ? document : JSON.stringify(document), BUCKET);
  } catch (error) {
    if (error instanceof EventDocumentError) return error.message;
    throw error;
  }
  throw new Error('the document was accepted');
}

describe('reading S3 event documents', () => {
  it('an S3 notification document: form-encoded keys are decoded exactly (+ is a space, %2B a plus, %25 a percent, UTF-8 escapes)', () => {
    const parsed = parseS3Events(JSON.stringify({ Records: ODD_KEYS.map((key) => notificationRecord(BUCKET, key, 'created', TIME)) }), BUCKET);

    expect(parsed.keys.map((entry) => entry.key)).toEqual(ODD_KEYS);
    expect(parsed.keys.every((entry) => entry.kind === 'created' && entry.eventTimeMs === TIME.getTime())).toBe(true);
    expect(keysOf({ Records: [notificationRecord(BUCKET, 'gone file.txt', 'deleted')] })).toEqual(['gone file.txt']);
  });

  it('an EventBridge event and an array of them: the key as given, plus its form-decoded reading when that differs (AWS does not pin the encoding down)', () => {
    expect(keysOf(eventBridgeEvent(BUCKET, 'dir/with space.txt', 'created'))).toEqual(['dir/with space.txt']);
    expect(keysOf(eventBridgeEvent(BUCKET, '100%/done 50%.txt', 'created'))).toEqual(['100%/done 50%.txt']);
    expect(keysOf(eventBridgeEvent(BUCKET, 'ünïcødé/日本語 ファイル.bin', 'deleted'))).toEqual(['ünïcødé/日本語 ファイル.bin']);
    expect(keysOf(eventBridgeEvent(BUCKET, 'c++/a+b.zip', 'created'))).toEqual(['c++/a+b.zip', 'c  /a b.zip']);
    // Encoded the notification way, the real key is still among the readings.
    expect(keysOf(eventBridgeEvent(BUCKET, 'dir/with+space%2B1.txt', 'created'))).toEqual(['dir/with+space%2B1.txt', 'dir/with space+1.txt']);

    const array = parseS3Events(JSON.stringify(ODD_KEYS.slice(0, 2).map((key, index) => eventBridgeEvent(BUCKET, key, index === 0 ? 'created' : 'deleted', TIME))), BUCKET);
    expect(array.keys.map((entry) => [entry.key, entry.kind])).toEqual([['dir/with space.txt', 'created'], ['c++/a+b.zip', 'deleted'], ['c  /a b.zip', 'deleted']]);
  });

  it('an s3:TestEvent names no key and is ignored, alone, in an array or as a record', () => {
    expect(parseS3Events(JSON.stringify(testEvent(BUCKET)), BUCKET)).toEqual({ keys: [], ignored: 1 });
    expect(parseS3Events(JSON.stringify([testEvent(BUCKET), eventBridgeEvent(BUCKET, 'a.txt', 'created')]), BUCKET).ignored).toBe(1);
    expect(parseS3Events(JSON.stringify({ Records: [testEvent(BUCKET)] }), BUCKET)).toEqual({ keys: [], ignored: 1 });
  });

  it('an event for another bucket is refused, naming both buckets, even when the other events are for ours', () => {
    expect(refusal([eventBridgeEvent(BUCKET, 'a.txt', 'created'), eventBridgeEvent('elsewhere', 'b.txt', 'created')])).toBe(
      'event [1] detail.bucket.name is "elsewhere", not the source bucket "artifacts": events of other buckets are refused',
    );
    expect(refusal({ Records: [notificationRecord('elsewhere', 'a.txt', 'deleted')] })).toContain('Records[0] s3.bucket.name is "elsewhere", not the source bucket "artifacts"');
  });

  it('a malformed document is refused with what is wrong and what is allowed', () => {
    expect(refusal('{"Records": [')).toMatch(/^the body is not JSON \(.*\): expected an EventBridge S3 event/);
    expect(refusal([])).toContain('the array holds no event');
    expect(refusal({ Records: {} })).toContain('"Records" is not an array');
    expect(refusal({ ...eventBridgeEvent(BUCKET, 'a', 'created'), 'detail-type': 'Object Restore Completed' })).toContain('has detail-type "Object Restore Completed": allowed are "Object Created" and "Object Deleted"');
    expect(refusal({ ...eventBridgeEvent(BUCKET, 'a', 'created'), source: 'aws.ec2' })).toContain('has source "aws.ec2": expected "aws.s3"');
    expect(refusal({ ...eventBridgeEvent(BUCKET, 'a', 'created'), time: 'yesterday' })).toContain('the event time "yesterday" is not an ISO-8601 time');
    expect(refusal({ ...eventBridgeEvent(BUCKET, 'a', 'created'), detail: { bucket: { name: BUCKET }, object: {} } })).toContain('has no detail.object.key string');
    expect(refusal({ Records: [{ ...notificationRecord(BUCKET, 'a', 'created'), eventName: 'ObjectTagging:Put' }] })).toContain('has eventName "ObjectTagging:Put": allowed are ObjectCreated:* and ObjectRemoved:*');
    const badEscape = notificationRecord(BUCKET, 'a', 'created');
    (badEscape['s3'] as { object: { key: string } }).object.key = '100%.txt';
    expect(refusal({ Records: [badEscape] })).toContain('s3.object.key "100%.txt" is not form-encoded');
    expect(refusal(42)).toContain('the event is not a JSON object');
  });

  it('a queue message carries one (key, event) as base64 JSON and reads back to the same key, time and id', () => {
    const [event] = parseS3Events(JSON.stringify(eventBridgeEvent(BUCKET, 'ünïcødé/日本語 ファイル.bin', 'created', TIME)), BUCKET).keys;
    const text = Buffer.from(encodeEventMessage(eventMessage(event!)), 'base64').toString('utf8');

    expect(readEventMessage(text)).toEqual(event);
    expect(readEventMessage(JSON.parse(text))).toEqual(event);
    expect(() => readEventMessage('not json')).toThrow(/the queue message is not JSON/);
    expect(() => readEventMessage({ v: 1, key: 'a', kind: 'renamed', eventTime: TIME.toISOString() })).toThrow(/not an event message/);
  });
});
