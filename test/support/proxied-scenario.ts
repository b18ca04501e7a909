/**
 * A scenario whose three stores are reached through counting proxies (test/support/http-proxy.ts), so
 * a test can see every request the run makes to each store, and inject faults into any of them.
 * Optionally Azure is reached through the copy-from-URL stand-in (test/support/copy-from-url-proxy.ts),
 * which serves the server-side copy API that Azurite lacks.
 */
import type { Settings } from '../../src/config.ts';
import { startCopyFromUrlProxy, type CopyFromUrlProxy } from './copy-from-url-proxy.ts';
import type { EmulatorCoordinates } from './emulators.ts';
import { startHttpProxy, type HttpProxy } from './http-proxy.ts';
import { createScenario, type Scenario } from './scenario.ts';

export interface ProxiedScenario extends Scenario {
  /** Every request of the run to the source bucket. */
  readonly sourceProxy: HttpProxy;
  /** Every request of the run to the OCI bucket. */
  readonly ociProxy: HttpProxy;
  /** Every request of the run to Azure (in front of the copy proxy, when there is one). */
  readonly azureProxy: HttpProxy;
  readonly copyProxy: CopyFromUrlProxy | undefined;
  close(): Promise<void>;
}

export async function createProxiedScenario(
  emulators: EmulatorCoordinates,
  options: { prefix?: string; serverSideCopy?: boolean; settings?: Settings } = {},
): Promise<ProxiedScenario> {
  const base = await createScenario(emulators, options.prefix ?? 'proxied', options.settings);
  const copyProxy = options.serverSideCopy ? await startCopyFromUrlProxy({ azurite: emulators.azurite }) : undefined;
  const sourceProxy = await startHttpProxy({ upstream: emulators.s3.endpoint, dialect: 's3' });
  const ociProxy = await startHttpProxy({ upstream: emulators.s3.endpoint, dialect: 's3' });
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
    async close(): Promise<void> {
      base.s3.destroy();
      await Promise.all([sourceProxy.close(), ociProxy.close(), azureProxy.close(), copyProxy?.close()]);
    },
  };
}
