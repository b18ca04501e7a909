/**
 * The node floor: the least work a Node program does for the initial mirror, as a measuring stick
 * beside rclone. It lists the source, GETs each object and streams the answer straight into one PUT
 * per target (S3 SigV4 with an unsigned payload for OCI, Shared Key for Azure), 16 objects at once,
 * through `node:http` alone. No SDK, no hashing, no check of what it read or wrote, no lock, no
 * records, no retries: not a tool (it would say nothing of a broken copy), only what Node's HTTP
 * and streams cost for these bytes on this machine. Our CPU time above this floor is what the tool
 * itself adds; the floor's own ratio to rclone is what Node allows.
 *
 * `node dist/bench/node-floor.js <azure|oci|all>`, with the endpoints in FLOOR_SETTINGS (JSON, see
 * `FloorSettings`); for `all` each source answer is piped into both PUTs at once.
 */
import { createHmac } from 'node:crypto';
import http from 'node:http';
import process from 'node:process';
import type { Readable } from 'node:stream';
import { Hash } from '@smithy/core/serde';
import { SignatureV4 } from '@smithy/signature-v4';
import { answerText, decodeEntities } from '../src/stores/xml-scan.ts';

export interface FloorSettings {
  /** `http://host:port/bucket` of the source. */
  readonly source: string;
  /** `http://host:port/bucket` of the OCI bucket. */
  readonly oci: string;
  /** `http://host:port/account/container` of the Azure container. */
  readonly azure: string;
  readonly s3Region: string;
  readonly s3AccessKeyId: string;
  readonly s3SecretAccessKey: string;
  readonly azureAccount: string;
  readonly azureAccountKey: string;
}

/** Objects copied at once: SYNC_CONCURRENCY's default and rclone's `--transfers` in the benchmark. */
const OBJECTS_AT_ONCE = 16;
const AZURE_VERSION = '2025-11-05';

interface SourceObject {
  readonly key: string;
  readonly size: number;
}

type Put = (object: SourceObject, body: Readable) => Promise<void>;

async function main(): Promise<void> {
  const target = process.argv[2];
  if (target !== 'azure' && target !== 'oci' && target !== 'all') throw new Error(`usage: node-floor <azure|oci|all>, not ${String(target)}`);
  const settings = JSON.parse(process.env['FLOOR_SETTINGS'] ?? '') as FloorSettings;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 2 * OBJECTS_AT_ONCE });
  const signer = new SignatureV4({
    service: 's3',
    region: settings.s3Region,
    credentials: { accessKeyId: settings.s3AccessKeyId, secretAccessKey: settings.s3SecretAccessKey },
    sha256: Hash.bind(null, 'sha256'),
    uriEscapePath: false,
    applyChecksum: false,
  });
  const send = (url: URL, method: string, headers: http.OutgoingHttpHeaders, body?: Readable): Promise<http.IncomingMessage> =>
    new Promise((resolve, reject) => {
      const request = http.request(url, { method, headers, agent }, resolve);
      request.on('error', reject);
      if (body === undefined) request.end();
      else body.pipe(request);
    });
  const s3Headers = async (url: URL, method: string, headers: Record<string, string>): Promise<http.OutgoingHttpHeaders> => {
    const signed = await signer.sign({
      protocol: url.protocol,
      hostname: url.hostname,
      port: Number(url.port),
      method,
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers: { host: url.host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD', ...headers },
    });
    return signed.headers;
  };
  const answered = async (answer: http.IncomingMessage, what: string): Promise<string> => {
    const text = await answerText(answer, what);
    if ((answer.statusCode ?? 0) >= 300) throw new Error(`${what}: ${answer.statusCode} ${text.slice(0, 300)}`);
    return text;
  };

  const putOci: Put = async (object, body) => {
    const url = new URL(`${settings.oci}/${encodeURIComponent(object.key)}`);
    await answered(await send(url, 'PUT', await s3Headers(url, 'PUT', { 'content-length': String(object.size) }), body), `PUT ${url.pathname}`);
  };
  const azureKey = Buffer.from(settings.azureAccountKey, 'base64');
  const putAzure: Put = async (object, body) => {
    const url = new URL(`${settings.azure}/${encodeURIComponent(object.key)}`);
    const headers: Record<string, string> = { 'x-ms-version': AZURE_VERSION, 'x-ms-date': new Date().toUTCString(), 'x-ms-blob-type': 'BlockBlob', 'content-length': String(object.size) };
    const canonicalHeaders = Object.keys(headers).filter((name) => name.startsWith('x-ms-')).sort().map((name) => `${name}:${headers[name]}\n`).join('');
    // Shared Key string to sign: verb, eleven standard headers (only Content-Length set), x-ms- headers, resource.
    const stringToSign = `PUT\n\n\n${object.size}\n\n\n\n\n\n\n\n\n${canonicalHeaders}/${settings.azureAccount}${url.pathname}`;
    headers['authorization'] = `SharedKey ${settings.azureAccount}:${createHmac('sha256', azureKey).update(stringToSign, 'utf8').digest('base64')}`;
    await answered(await send(url, 'PUT', headers, body), `PUT ${url.pathname}`);
  };
  const puts: Put[] = target === 'all' ? [putAzure, putOci] : [target === 'azure' ? putAzure : putOci];

  const objects: SourceObject[] = [];
  let continuation: string | undefined;
  do {
    const url = new URL(settings.source);
    url.searchParams.set('list-type', '2');
    if (continuation !== undefined) url.searchParams.set('continuation-token', continuation);
    const listing = await answered(await send(url, 'GET', await s3Headers(url, 'GET', {})), 'ListObjectsV2');
    for (const match of listing.matchAll(/<Key>([^<]*)<\/Key>.*?<Size>(\d+)<\/Size>/gs)) objects.push({ key: decodeEntities(match[1] ?? '', 'ListObjectsV2'), size: Number(match[2]) });
    continuation = /<NextContinuationToken>([^<]*)</.exec(listing)?.[1];
  } while (continuation !== undefined);

  let next = 0;
  await Promise.all(Array.from({ length: OBJECTS_AT_ONCE }, async () => {
    for (let object = objects[next++]; object !== undefined; object = objects[next++]) {
      const url = new URL(`${settings.source}/${encodeURIComponent(object.key)}`);
      const answer = await send(url, 'GET', await s3Headers(url, 'GET', {}));
      if (answer.statusCode !== 200) await answered(answer, `GET ${url.pathname}`);
      const current = object;
      await Promise.all(puts.map((put) => put(current, answer)));
    }
  }));
  agent.destroy();
  process.stderr.write(`node floor -> ${target}: ${objects.length} objects\n`);
}

await main();
