/**
 * What OCI's copy record costs per key: heap bytes while a run holds it, and stored bytes.
 * Run: `npm run build && node --expose-gc dist/bench/copy-record-size.js [keys]` (default 200,000).
 * Keys are ~50 characters (`releases/v12/linux-x64/artifact-000123.tar.gz`), ETags 32 hex digits:
 * S3 single-part ETags and OCI's are of that length.
 */
import { createHash } from 'node:crypto';
import { CopyRecord } from '../src/core/copy-record.ts';

const keys = Number(process.argv[2] ?? 200_000);
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with node --expose-gc');
const hex = (text: string): string => createHash('md5').update(text).digest('hex');
const keyOf = (index: number): string => `releases/v${index % 97}/linux-x64/artifact-${String(index).padStart(6, '0')}.tar.gz`;

// The entries as a run builds them: keys and ETags arrive as separate strings (from listings and answers).
const source = Array.from({ length: keys }, (_, index) => [keyOf(index), hex(`t${index}`), hex(`s${index}`)] as const);
const stored = ((): Uint8Array => {
  const built = new CopyRecord();
  for (const [key, target, sourceEtag] of source) built.record(key, target, { etag: sourceEtag, lastModifiedMs: 1_767_225_600_000 });
  return built.serialize('oci://bench');
})();

gc();
const before = process.memoryUsage().heapUsed;
const record = CopyRecord.parse(stored, 'oci://bench');
gc();
const after = process.memoryUsage().heapUsed;
// A no-op run's listing: keys arrive as slices of page texts; the record must not keep a page alive.
for (let page = 0; page < keys; page += 1000) {
  const text = source.slice(page, page + 1000).map(([key, target]) => `<Contents><Key>${key}</Key><ETag>${target}</ETag><Size>1024</Size></Contents>`).join('');
  let cursor = 0;
  for (let index = page; index < Math.min(keys, page + 1000); index += 1) {
    const start = text.indexOf('<Key>', cursor) + 5;
    const end = text.indexOf('</Key>', start);
    cursor = end;
    record.annotate({ key: text.slice(start, end), size: 1024, lastModifiedMs: 0, etag: source[index]![1] });
  }
}
record.pruneUnlisted();
gc();
const listed = process.memoryUsage().heapUsed;
const averageKey = source.reduce((sum, [key]) => sum + key.length, 0) / keys;
console.log(`${keys} keys of ${averageKey.toFixed(0)} characters, ${record.size} entries`);
console.log(`heap held by the loaded record: ${((after - before) / keys).toFixed(0)} bytes per key (${((after - before) / 1024 / 1024).toFixed(1)} MiB)`);
console.log(`heap held after a listing matched every key: ${((listed - before) / keys).toFixed(0)} bytes per key`);
console.log(`stored record: ${(stored.byteLength / keys).toFixed(0)} bytes per key (${(stored.byteLength / 1024 / 1024).toFixed(1)} MiB)`);
