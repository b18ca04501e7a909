/**
 * The fan-out scenario runs here, in a process of its own, so the peak RSS measured is the planning
 * run's alone: `node fan-out-plan-child.js <objects>`. A synthetic source listing of N objects, all
 * missing at an empty target, goes through the run's own `planWhileListing` into a `FanOut` with the
 * default settings (SYNC_FAN_OUT_*), whose queue encodes each message as it would be sent and drops it.
 * Prints one JSON line: `FanOutPlanResult`.
 */
import { performance } from 'node:perf_hooks';
import process from 'node:process';
import { loadFanOutConfig } from '../src/config.ts';
import { FanOut } from '../src/core/fan-out.ts';
import { planWhileListing, type Listing } from '../src/core/listings.ts';
import { DEFAULT_DELETE_LIMITS } from '../src/core/plan.ts';
import { encodeEventMessage } from '../src/core/s3-events.ts';
import type { ObjectInfo } from '../src/core/types.ts';
import { peakRssBytes } from './process-rss.ts';

export interface FanOutPlanResult {
  readonly objects: number;
  readonly keysEnqueued: number;
  readonly messages: number;
  /** Base64 characters of every message, as the queue would store them. */
  readonly encodedBytes: number;
  readonly largestMessageBytes: number;
  readonly peakUnmatched: number;
  readonly wallMs: number;
  readonly baselineRssBytes: number;
  readonly peakRssBytes: number;
}

const PAGE = 1000;
const objects = Number(process.argv[2] ?? '1000000');
const baselineRssBytes = peakRssBytes();
const modified = Date.UTC(2025, 0, 1);

const source: Listing = {
  label: 's3://synthetic',
  async *pages() {
    for (let start = 0; start < objects; start += PAGE) {
      const page: ObjectInfo[] = [];
      for (let index = start; index < Math.min(objects, start + PAGE); index += 1) {
        page.push({ key: `artifacts/${String(Math.floor(index / 1000)).padStart(5, '0')}/package-${String(index).padStart(8, '0')}.tgz`, size: 1000 + (index % 5000), lastModifiedMs: modified, etag: index.toString(16).padStart(32, '0') });
      }
      yield page;
    }
  },
};
const empty: Listing = { label: 'oci://empty', async *pages() {} };

let messages = 0;
let keysEnqueued = 0;
let encodedBytes = 0;
let largestMessageBytes = 0;
const fanOut = new FanOut<'oci'>(loadFanOutConfig({}).fanOut, {
  open: async () => ({ id: '20260101T000000Z-00000000' }),
  async send(batch) {
    for (const message of batch) {
      const length = encodeEventMessage(message).length;
      messages += 1;
      keysEnqueued += message.keys.length;
      encodedBytes += length;
      largestMessageBytes = Math.max(largestMessageBytes, length);
    }
  },
});
const started = performance.now();
const listed = await planWhileListing(source, [{ ...empty, name: 'oci' as const }], DEFAULT_DELETE_LIMITS, { transferSink: fanOut });
await fanOut.finish();
const result: FanOutPlanResult = {
  objects: listed.sourceObjects,
  keysEnqueued,
  messages,
  encodedBytes,
  largestMessageBytes,
  peakUnmatched: listed.peakUnmatched,
  wallMs: performance.now() - started,
  baselineRssBytes,
  peakRssBytes: peakRssBytes(),
};
process.stdout.write(`${JSON.stringify(result)}\n`);
