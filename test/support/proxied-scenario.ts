/**
 * A scenario whose three stores are reached through counting proxies (test/support/http-proxy.ts), so
 * a test can see every request the run makes to each store, and inject faults into any of them.
 * Optionally Azure is reached through the copy-from-URL stand-in (test/support/copy-from-url-proxy.ts),
 * which serves the server-side copy API that Azurite lacks, and the S3 stores through the S3 stand-in
 * (test/support/s3-stand-in.ts), which gives OCI real S3's atomic PUT and multipart-upload listing.
 */
import type { Settings } from '../../src/config.ts';
import { startCopyFromUrlProxy, type CopyFromUrlProxy } from './copy-from-url-proxy.ts';
import type { EmulatorCoordinates } from './emulators.ts';
import { startHttpProxy, type HttpProxy } from './http-proxy.ts';
import { startS3StandIn, type S3StandIn } from './s3-stand-in.ts';
import { createScenario, type Scenario } from './scenario.ts';

export interface ProxiedScenario extends Scenario {
  /** Every request of the run to the source bucket. */
  readonly sourceProxy: HttpProxy;
  /** Every request of the run to the OCI bucket. */
  readonly ociProxy: HttpProxy;
  /** Every request of the run to Azure (in front of the copy proxy, when there is one). */
  readonly azureProxy: HttpProxy;
  readonly copyProxy: CopyFromUrlProxy | undefined;
  /** Present with `standIns`: between the source proxy and s3rver. */
  readonly sourceStandIn: S3StandIn | undefined;
  /** Present with `standIns`: between the OCI proxy and s3rver, with atomic PUTs and multipart-upload listing. */
  readonly ociStandIn: S3StandIn | undefined;
  close(): Promise<void>;
}

export interface ProxiedScenarioOptions {
  readonly prefix?: string;
  readonly serverSideCopy?: boolean;
  readonly standIns?: boolean;
  readonly settings?: Settings;
}

export async function createProxiedScenario(emulators: EmulatorCoordinates, options: ProxiedScenarioOptions = {}): Promise<ProxiedScenario> {
  const base = await createScenario(emulators, options.prefix ?? 'proxied', options.settings);
  const copyProxy = options.serverSideCopy ? await startCopyFromUrlProxy({ azurite: emulators.azurite }) : undefined;
  const sourceStandIn = options.standIns ? await startS3StandIn({ upstream: emulators.s3.endpoint }) : undefined;
  const ociStandIn = options.standIns ? await startS3StandIn({ upstream: emulators.s3.endpoint, atomicPuts: true, multipartUploads: true }) : undefined;
  const sourceProxy = await startHttpProxy({ upstream: sourceStandIn?.url ?? emulators.s3.endpoint, dialect: 's3' });
  const ociProxy = await startHttpProxy({ upstream: ociStandIn?.url ?? emulators.s3.endpoint, dialect: 's3' });
  const azureProxy = await startHttpProxy({ upstream: copyProxy?.url ?? new URL(emulators.azurite.blobEndpoint).origin, dialect: 'azure' });
  const blobEndpoint = `${azureProxy.url}/${emulators.azurite.accountName}`;
  return {
    ...base,
    settings: {
      ...base.settings,
      AWS_S3_ENDPOINT: sourceProxy.url,
      OCI_S3_ENDPOINT: ociProxy.url,
      AZURE_STORAGE_CONNECTION_STRING: `DefaultEndpointsProtocol=http;AccountName=${emulators.azurite.accountName};AccountKey=${emulators.azurite.accountKey};BlobEndpoint=${blobEndpoint};`,
    },
    sourceProxy,
    ociProxy,
    azureProxy,
    copyProxy,
    sourceStandIn,
    ociStandIn,
    async close(): Promise<void> {
      base.s3.destroy();
      await Promise.all([sourceProxy.close(), ociProxy.close(), azureProxy.close(), copyProxy?.close()]);
      await Promise.all([sourceStandIn?.close(), ociStandIn?.close()]);
    },
  };
}

/** Runs `test` against a fresh proxied scenario and closes it after, whatever the outcome. */
export async function withProxiedScenario(emulators: EmulatorCoordinates, options: ProxiedScenarioOptions, test: (s: ProxiedScenario) => Promise<void>): Promise<void> {
  const s = await createProxiedScenario(emulators, options);
  try {
    await test(s);
  } finally {
    await s.close();
  }
}
