/**
 * Runs s3rver in its own process, started by `startS3Server` in ./emulators.ts.
 *
 * Usage: node --openssl-legacy-provider s3rver-process.ts <data directory>
 * Prints one JSON line `{"event":"s3rver_listening","port":N}` once it accepts requests.
 * The data directory belongs to the parent, which removes it after this process exits.
 */
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';

/** The part of s3rver's (untyped, CommonJS) API used here. */
interface S3rverOptions {
  address: string;
  port: number;
  silent: boolean;
  directory: string;
  resetOnClose: boolean;
}
type S3rverConstructor = new (options: S3rverOptions) => { run(): Promise<AddressInfo> };

const directory = process.argv[2];
if (directory === undefined) {
  process.stderr.write('usage: s3rver-process.ts <data directory>\n');
  process.exit(2);
}

const S3rver = createRequire(import.meta.url)('s3rver') as S3rverConstructor;
const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory, resetOnClose: false });
const { port } = await server.run();

// The data is disposable (the parent deletes the directory), so there is nothing to shut down gracefully.
process.once('SIGTERM', () => process.exit(0));
process.once('SIGINT', () => process.exit(0));

process.stdout.write(`${JSON.stringify({ event: 's3rver_listening', port })}\n`);
