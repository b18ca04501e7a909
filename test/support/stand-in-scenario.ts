/**
 * A proxied scenario whose S3 stores also sit behind the S3 stand-in (./s3-stand-in.ts), for the
 * reliability tests:
 *
 *   app → sourceProxy (counting, faults) → sourceStandIn (listing rewrites, corrupt reads) → s3rver
 *   app → ociProxy (counting, faults)    → ociStandIn (atomic PUT, multipart list/abort)  → s3rver
 *   app → azureProxy (counting, faults)  → [copy-from-URL proxy] → Azurite
 *
 * The OCI stand-in plays real OCI where s3rver differs (atomic PutObject, ListMultipartUploads and
 * AbortMultipartUpload); the source stand-in lets a test cut a listing short or corrupt bytes in flight.
 */
import type { EmulatorCoordinates } from './emulators.ts';
import { createProxiedScenario, type ProxiedScenario, type ProxiedScenarioOptions } from './proxied-scenario.ts';
import type { S3StandIn } from './s3-stand-in.ts';

export interface StandInScenario extends ProxiedScenario {
  readonly sourceStandIn: S3StandIn;
  readonly ociStandIn: S3StandIn;
}

export async function createStandInScenario(emulators: EmulatorCoordinates, options: Omit<ProxiedScenarioOptions, 'standIns'> = {}): Promise<StandInScenario> {
  const scenario = await createProxiedScenario(emulators, { prefix: 'standin', ...options, standIns: true });
  const { sourceStandIn, ociStandIn } = scenario;
  if (sourceStandIn === undefined || ociStandIn === undefined) throw new Error('createProxiedScenario did not start the S3 stand-ins');
  return { ...scenario, sourceStandIn, ociStandIn };
}
