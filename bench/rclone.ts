/**
 * The peer: Debian's rclone, configured entirely through environment variables so nothing on the
 * machine (a user's rclone.conf) changes what is measured.
 */
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AccountSASPermissions, AccountSASResourceTypes, AccountSASServices, StorageSharedKeyCredential, generateAccountSASQueryParameters } from '@azure/storage-blob';
import type { AzuriteCoordinates, S3ServerCoordinates } from '../test/support/emulators.ts';
import type { CommandToMeasure } from './measure.ts';

export const RCLONE_INSTALL_HINT = 'apt-get install -y rclone';

/**
 * Flags of every rclone sync we measure, beside the mode flag (`--size-only` or none).
 * `--transfers 16` matches our SYNC_CONCURRENCY default (16 objects at once); `--checkers 16` lets rclone compare in parallel
 * (its default is 8); `--fast-list` makes it list each bucket in one recursive listing as we do
 * instead of one listing per directory. Chunk sizes stay at rclone's defaults.
 */
export const RCLONE_SYNC_FLAGS = ['--transfers', '16', '--checkers', '16', '--fast-list'] as const;

/** `rclone v1.60.1-DEV`, or `undefined` when rclone is not installed. */
export function rcloneVersion(): string | undefined {
  const result = spawnSync('rclone', ['version'], { encoding: 'utf8' });
  if (result.error !== undefined || result.status !== 0) return undefined;
  return result.stdout.split('\n')[0]?.trim();
}

/** Where each rclone remote points; endpoints may be the emulators or the counting proxies in front of them. */
export interface RcloneRemotes {
  /** The source bucket's S3 endpoint (remote `src:`). */
  readonly sourceEndpoint: string;
  /** The OCI endpoint (remote `oci:`); a separate remote, so rclone cannot copy server-side within one remote. */
  readonly ociEndpoint: string;
  /** Azurite's blob endpoint `http://host:port/devstoreaccount1` (remote `az:`). */
  readonly azureBlobEndpoint: string;
  readonly s3: S3ServerCoordinates;
  readonly azurite: AzuriteCoordinates;
}

/** `rclone sync <from> <to>` with our flags, ready for `measure`. */
export function rcloneSync(remotes: RcloneRemotes, from: string, to: string, modeFlags: readonly string[] = []): CommandToMeasure {
  return { command: 'rclone', args: ['sync', from, to, ...RCLONE_SYNC_FLAGS, ...modeFlags], env: rcloneEnvironment(remotes) };
}

function rcloneEnvironment(remotes: RcloneRemotes): NodeJS.ProcessEnv {
  const environment: NodeJS.ProcessEnv = {
    ...process.env,
    // A config file that does not exist: only the remotes below are defined.
    RCLONE_CONFIG: join(tmpdir(), 'artifacts-sync-bench-no-rclone.conf'),
    ...s3Remote('SRC', remotes.sourceEndpoint, remotes.s3),
    ...s3Remote('OCI', remotes.ociEndpoint, remotes.s3),
    RCLONE_CONFIG_AZ_TYPE: 'azureblob',
    // rclone 1.60's `endpoint`/`use_emulator` options do not reach a local Azurite; an account SAS URL does.
    RCLONE_CONFIG_AZ_SAS_URL: `${remotes.azureBlobEndpoint}?${accountSas(remotes.azurite)}`,
  };
  // Set on this machine for other tools; rclone's s3 backend then fails every request.
  delete environment['AWS_CA_BUNDLE'];
  return environment;
}

function s3Remote(name: string, endpoint: string, s3: S3ServerCoordinates): NodeJS.ProcessEnv {
  return {
    [`RCLONE_CONFIG_${name}_TYPE`]: 's3',
    [`RCLONE_CONFIG_${name}_PROVIDER`]: 'Other',
    [`RCLONE_CONFIG_${name}_ENDPOINT`]: endpoint,
    [`RCLONE_CONFIG_${name}_REGION`]: s3.region,
    [`RCLONE_CONFIG_${name}_ACCESS_KEY_ID`]: s3.accessKeyId,
    [`RCLONE_CONFIG_${name}_SECRET_ACCESS_KEY`]: s3.secretAccessKey,
    [`RCLONE_CONFIG_${name}_FORCE_PATH_STYLE`]: 'true',
  };
}

function accountSas(azurite: AzuriteCoordinates): string {
  const credential = new StorageSharedKeyCredential(azurite.accountName, azurite.accountKey);
  return generateAccountSASQueryParameters(
    {
      services: AccountSASServices.parse('b').toString(),
      resourceTypes: AccountSASResourceTypes.parse('sco').toString(),
      permissions: AccountSASPermissions.parse('rwdlac'),
      expiresOn: new Date(Date.now() + 6 * 3_600_000),
    },
    credential,
  ).toString();
}
