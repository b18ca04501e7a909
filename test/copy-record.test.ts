/** The copy record and the decision it feeds, as pure functions (no store). */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CopyRecord, CopyRecordError } from '../src/core/copy-record.ts';
import { describeAction, planMirror, replaceReason } from '../src/core/plan.ts';
import type { ObjectInfo } from '../src/core/types.ts';

const T0 = Date.parse('2026-01-01T00:00:00Z');
const TARGET = 'oci://mirror';
const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');
const object = (key: string, etag: string, extra: Partial<ObjectInfo> = {}): ObjectInfo => ({ key, size: 10, lastModifiedMs: T0, etag, ...extra });

/** An entry: key, target ETag, source ETag (empty: the version records no source), and the source's LastModified when known. */
type Entry = [key: string, targetEtag: string, sourceEtag: string, sourceModifiedMs?: number];

const sourceOf = (sourceEtag: string, lastModifiedMs?: number) => (sourceEtag === '' ? undefined : { etag: sourceEtag, ...(lastModifiedMs === undefined ? {} : { lastModifiedMs }) });

function recordOf(entries: Entry[]): CopyRecord {
  const record = new CopyRecord();
  for (const [key, targetEtag, sourceEtag, sourceModifiedMs] of entries) record.record(key, targetEtag, sourceOf(sourceEtag, sourceModifiedMs));
  return CopyRecord.parse(record.serialize(TARGET), TARGET);
}

describe('replaceReason with the copy record', () => {
  it('takes a listed version the record covers as current exactly when the source ETag is the one copied, whatever the timestamps', () => {
    const record = recordOf([['a.zip', 'target-1', 'source-1']]);
    // The source was overwritten in a later second, then written back: same ETag, so current.
    expect(replaceReason(object('a.zip', 'source-1', { lastModifiedMs: T0 + 60_000 }), record.annotate(object('a.zip', 'target-1')))).toBeUndefined();
    // The source changed in the same second as our copy (or earlier, as a multipart upload is dated): replaced.
    const again = recordOf([['a.zip', 'target-1', 'source-1']]);
    expect(replaceReason(object('a.zip', 'source-2', { lastModifiedMs: T0 - 5_000 }), again.annotate(object('a.zip', 'target-1')))).toEqual({ why: 'source-etag', sourceEtag: 'source-2', recordedEtag: 'source-1' });
  });

  it('marks a version the record does not cover as unverified (a HEAD decides), and a caller that does not look copies it', () => {
    const record = recordOf([['a.zip', 'target-1', 'source-1']]);
    const annotated = [record.annotate(object('a.zip', 'target-2')), record.annotate(object('b.zip', 'target-9'))];
    expect(annotated.map((entry) => entry.provenance)).toEqual(['unknown', 'unknown']);
    const plan = planMirror([object('a.zip', 'source-1'), object('b.zip', 'source-9')], annotated);
    expect(plan.transfers.map(describeAction)).toEqual(['replace unverified', 'replace unverified']);
  });

  it('still decides a different size without looking', () => {
    const record = recordOf([]);
    expect(replaceReason(object('a.zip', 's', { size: 11 }), record.annotate(object('a.zip', 't')))).toMatchObject({ why: 'size' });
  });

  it('keeps the source LastModified in whole seconds: the same source ETag modified in a later second is a metadata-only change', () => {
    const record = recordOf([['a.js', 'target-1', 'source-1', T0 + 400], ['b.js', 'target-2', 'source-2']]);
    const copy = record.annotate(object('a.js', 'target-1'));
    expect(copy.recordedSource).toEqual({ etag: 'source-1', lastModifiedMs: T0 });
    expect(replaceReason(object('a.js', 'source-1', { lastModifiedMs: T0 + 999 }), copy)).toBeUndefined();
    expect(replaceReason(object('a.js', 'source-1', { lastModifiedMs: T0 + 1_000 }), copy)).toEqual({ why: 'source-metadata', sourceModifiedMs: T0 + 1_000, recordedModifiedMs: T0 });
    // Not known only where the version's own metadata recorded none (a HEAD would show the same): the ETag decides.
    expect(record.annotate(object('b.js', 'target-2')).recordedSource).toEqual({ etag: 'source-2' });
  });

  it('replaces a version rewritten elsewhere after our copy, and keeps the timestamp rule for an old copy that recorded nothing', () => {
    expect(replaceReason(object('a.zip', 's'), object('a.zip', 't', { provenance: 'rewritten', lastModifiedMs: T0 + 60_000 }))).toEqual({ why: 'target-rewritten' });
    const record = recordOf([['old.zip', 'target-old', '']]);
    expect(replaceReason(object('old.zip', 's'), record.annotate(object('old.zip', 'target-old', { lastModifiedMs: T0 + 60_000 })))).toBeUndefined();
  });
});

describe('the stored copy record', () => {
  it('round-trips odd keys and ETags', () => {
    const keys = ['a b.txt', 'ünï/✓', 'line\nbreak', 'tab\tkey', '"quoted"', 'back\\slash'];
    const record = recordOf(keys.map((key, index) => [key, `"t-${index}"`, index % 2 === 0 ? `s-${index}` : '']));
    expect(keys.map((key, index) => record.annotate(object(key, `"t-${index}"`)).recordedSource?.etag)).toEqual(['s-0', undefined, 's-2', undefined, 's-4', undefined]);
    expect(record.size).toBe(keys.length);
  });

  it('keeps hex ETags (packed) and any other ETag byte-exact', () => {
    const hex = (digit: string): string => digit.repeat(32);
    const entries: Entry[] = [
      ['both-hex', hex('a'), hex('b')],
      ['hex-no-source', hex('c'), ''],
      ['upper-case', hex('D'), hex('e')],
      ['multipart', hex('f'), `${hex('1')}-12`],
      ['opaque', 'ocid-ünï-etag', 'W/"weak"'],
    ];
    const record = recordOf(entries);
    for (const [key, targetEtag, sourceEtag] of entries) {
      expect(record.annotate(object(key, targetEtag)).recordedSource?.etag ?? '').toBe(sourceEtag);
      expect(record.annotate(object(key, hex('0'))).provenance).toBe('unknown');
    }
  });

  it('refuses a record that was cut short, edited, is another target\'s, or is not one, naming what is wrong', () => {
    const record = new CopyRecord();
    record.record('a.zip', 'target-1', { etag: 'source-1', lastModifiedMs: T0 });
    record.record('b.zip', 'target-2', { etag: 'source-2', lastModifiedMs: T0 });
    const bytes = record.serialize(TARGET);
    const text = new TextDecoder().decode(bytes);
    const parse = (value: string | Uint8Array, target = TARGET): unknown => CopyRecord.parse(typeof value === 'string' ? new TextEncoder().encode(value) : value, target);
    expect(() => parse(bytes.subarray(0, bytes.byteLength - 5))).toThrow(/checksum/);
    expect(() => parse(text.replace('source-1', 'source-9'))).toThrow(/checksum/);
    expect(() => parse(bytes, 'oci://other')).toThrow(/record of oci:\/\/mirror, not of oci:\/\/other/);
    expect(() => parse('garbage')).toThrow(CopyRecordError);
    expect(() => parse('{"format":"artifacts-sync copy record","version":2}\n[]')).toThrow(/header/);
    // Version 1 kept no source LastModified: not trusted, whatever else it holds.
    const v1Body = '["a.zip","target-1","source-1"]';
    expect(() => parse(`{"format":"artifacts-sync copy record","version":1,"target":"${TARGET}","count":1,"sha256":"${sha256(v1Body)}"}\n${v1Body}`)).toThrow(/version 1, which keeps no source LastModified/);
    // A sound header over an entry of the old shape (three fields) is malformed.
    expect(() => parse(`{"format":"artifacts-sync copy record","version":2,"target":"${TARGET}","count":1,"sha256":"${sha256(v1Body)}"}\n${v1Body}`)).toThrow(/malformed/);
    expect(() => parse(new Uint8Array([0xff, 0xfe, 0x00]))).toThrow();
  });

  it('drops the entries of keys the listing no longer shows, and of deleted keys', () => {
    const record = recordOf([['a', 't-a', 's-a'], ['b', 't-b', 's-b'], ['c', 't-c', 's-c']]);
    record.annotate(object('a', 't-a'));
    record.annotate(object('b', 't-b'));
    expect(record.changed).toBe(false);
    record.pruneUnlisted();
    expect(record.changed).toBe(true);
    record.forget('b');
    const stored = CopyRecord.parse(record.serialize(TARGET), TARGET);
    expect(stored.size).toBe(1);
    expect(stored.annotate(object('a', 't-a')).recordedSource).toEqual({ etag: 's-a' });
  });

  it('says it changed only when it did', () => {
    const record = recordOf([['a', 't-a', 's-a']]);
    record.annotate(object('a', 't-a'));
    record.pruneUnlisted();
    record.record('a', 't-a', { etag: 's-a' });
    expect(record.changed).toBe(false);
    record.record('a', 't-a2', { etag: 's-a2' });
    expect(record.changed).toBe(true);
  });
});
