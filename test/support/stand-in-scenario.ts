/**
 * A scenario whose S3 stores sit behind the S3 stand-in (./s3-stand-in.ts) as well as a counting proxy
 * (./http-proxy.ts), for the reliability tests:
 *
 *   app → sourceProxy (counting, faults) → sourceStandIn (listing rewrites, corrupt reads) → s3rver
 *   app → ociProxy (counting, faults)    → ociStandIn (atomic PUT, multipart list/abort)  → s3rver
 *   app → azureProxy (counting, faults)  → [copy-from-URL proxy] → Azurite
 *
 * The OCI stand-in plays real OCI where s3rver differs (atomic PutObject, ListMultipartUploads and
 * AbortMultipartUpload); the source stand-in lets a test cut a listing short or corrupt bytes in flight.
 */
import type { Settings } from '../../src/config.ts';
import { startCopyFromUrlProxy, type CopyFromUrlProxy } from './copy-from-url-proxy.ts';
import type { EmulatorCoordinates } from './emulators.ts';
import { startHttpProxy, type HttpProxy } from './http-proxy.ts';
import { startS3StandIn, type S3StandIn } from './s3-stand-in.ts';
import { createScenario, type Scenario } from './scenario.ts';

export interface StandInScenario extends Scenario {
  readonly sourceProxy: HttpProxy;
  readonly ociProxy: HttpProxy;
  readonly azureProxy: HttpProxy;
  readonly sourceStandIn: S3StandIn;
  readonly ociStandIn: S3StandIn;
  readonly copyProxy: CopyFromUrlProxy | undefined;
  close(): Promise<void>;
}

export async function createStandInScenario(
  emulators: EmulatorCoordinates,
  options: { prefix?: string; serverSideCopy?: boolean; settings?: Settings } = {},
): Promise<StandInScenario> {
  const base = await createScenario(emulators, options.prefix ?? 'standin', options.settings);
  const copyProxy = options.serverSideCopy ? await startCopyFromUrlProxy({ azurite: emulators.azurite }) : undefined;
  const sourceStandIn = await startS3StandIn({ upstream: emulators.s3.endpoint });
  const ociStandIn = await startS3StandIn({ upstream: emulators.s3.endpoint, atomicPuts: true, multipartUploads: true });
  const sourceProxy = await startHttpProxy({ upstream: sourceStandIn.url, dialect: 's3' });
  const ociProxy = await startHttpProxy({ upstream: ociStandIn.url, dialect: 's3' });
  const azureProxy = await startHttpProxy({ upstream: copyProxy?.url ?? new URL(emulators.azurite.blobEndpoint).origin, dialect: 'azure' });
  return {
    ...base,
    settings: {
      ...base.settings,
      AWS_S3_ENDPOINT: sourceProxy.url,
      OCI_S3_ENDPOINT: ociProxy.url,
      AZURE_STORAGE_CONNECTION_STRING: `DefaultEndpointsProtocol=http;AccountName=${emulators.azurite.accountName};AccountKey=${emulators.azurite.accountKey};BlobEndpoint=${azureProxy.url}/${emulators.azurite.accountName};`,
    },
    sourceProxy,
    ociProxy,
    azureProxy,
    sourceStandIn,
    ociStandIn,
    copyProxy,
    async close(): Promise<void> {
      base.s3.destroy();
      await Promise.all([sourceProxy.close(), ociProxy.close(), azureProxy.close(), copyProxy?.close()]);
      await Promise.all([sourceStandIn.close(), ociStandIn.close()]);
    },
  };
}
