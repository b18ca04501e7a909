/**
 * Requests per store: one counting proxy (../test/support/http-proxy.ts) in front of each store, so
 * both tools are pointed at the proxies and every request they make is seen.
 */
import type { EmulatorCoordinates } from '../test/support/emulators.ts';
import { startHttpProxy, type HttpProxy, type ProxiedRequest } from '../test/support/http-proxy.ts';
import type { Endpoints } from './contenders.ts';

export const STORES = ['s3', 'azure', 'oci'] as const;
export type StoreName = (typeof STORES)[number];

export interface StoreRequests {
  readonly total: number;
  /** Requests by the proxy's operation name (`ListObjectsV2`, `HeadObject`, `ListBlobs`, ...); unnamed ones as `other GET ?location`. */
  readonly byKind: Readonly<Record<string, number>>;
}

export type RequestCounts = Readonly<Record<StoreName, StoreRequests>>;

export interface CountingProxies {
  /** The proxies' addresses, to hand to the tools instead of the emulators'. */
  readonly endpoints: Endpoints;
  /** Forgets every request counted so far. */
  reset(): void;
  counts(): RequestCounts;
  stop(): Promise<void>;
}

/** One proxy per store; S3 and OCI are the same s3rver behind two proxies, so their requests are told apart. */
export async function startCountingProxies(emulators: EmulatorCoordinates): Promise<CountingProxies> {
  const azureOrigin = new URL(emulators.azurite.blobEndpoint).origin;
  const started = await Promise.allSettled([
    startHttpProxy({ upstream: emulators.s3.endpoint, dialect: 's3' }),
    startHttpProxy({ upstream: azureOrigin, dialect: 'azure' }),
    startHttpProxy({ upstream: emulators.s3.endpoint, dialect: 's3' }),
  ]);
  const proxies = started.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
  const failure = started.find((result) => result.status === 'rejected');
  if (failure !== undefined) {
    await Promise.all(proxies.map((proxy) => proxy.close()));
    throw failure.reason;
  }
  const [s3, azure, oci] = proxies as [HttpProxy, HttpProxy, HttpProxy];
  const byStore: Readonly<Record<StoreName, HttpProxy>> = { s3, azure, oci };
  return {
    endpoints: { source: s3.url, azure: azure.url, oci: oci.url },
    reset: () => {
      for (const proxy of proxies) proxy.reset();
    },
    counts: () => {
      const counts: Record<StoreName, StoreRequests> = { s3: tally([]), azure: tally([]), oci: tally([]) };
      for (const store of STORES) counts[store] = tally(byStore[store].requests());
      return counts;
    },
    stop: async () => {
      await Promise.all(proxies.map((proxy) => proxy.close()));
    },
  };
}

function tally(requests: readonly ProxiedRequest[]): StoreRequests {
  const byKind: Record<string, number> = {};
  for (const request of requests) {
    const kind = request.operation === 'other' ? `other ${request.method}${describeQuery(request.query)}` : request.operation;
    byKind[kind] = (byKind[kind] ?? 0) + 1;
  }
  return { total: requests.length, byKind };
}

/** `?location`, `?comp=properties&restype=container`: enough to tell what an unnamed call was, no values that vary. */
function describeQuery(query: Readonly<Record<string, string>>): string {
  const names = Object.keys(query).sort();
  if (names.length === 0) return '';
  return `?${names.map((name) => (name === 'comp' || name === 'restype' ? `${name}=${query[name]}` : name)).join('&')}`;
}
