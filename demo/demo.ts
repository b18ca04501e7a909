/**
 * `npm run demo`: the real mirror on local emulators. Starts Azurite and an S3 emulator on free ports,
 * seeds a source bucket of artifacts and some drift in both targets, runs `artifacts-sync all` (the
 * same code path as the CLI), runs it again to show nothing is left to do, checks the mirrors with
 * `artifacts-sync verify all --checksum` (bytes, headers and metadata), and stops everything it started.
 */
import process from 'node:process';
import { runCommandLine } from '../src/command-line.ts';
import { startEmulators } from '../test/support/emulators.ts';
import { createScenario, nextSecond, pseudoRandomBytes, putBlob, putS3Object, putSource } from '../test/support/scenario.ts';

const MIB = 1024 * 1024;
const say = (text: string): void => {
  process.stdout.write(`${text}\n`);
};

say('Starting Azurite (Azure Blob) and s3rver (standing in for AWS S3 and OCI) on free ports...');
const emulators = await startEmulators();
let exitCode = 1;
try {
  const scenario = await createScenario(emulators.coordinates, 'demo');
  say(`source s3://${scenario.sourceBucket}, targets azure://${scenario.container} and oci://${scenario.ociBucket}\n`);

  say('Seeding the source with a tree of artifacts, odd names and one 40 MiB installer (uploaded in parts)...');
  const artifacts: [string, Uint8Array | string, string][] = [
    ['releases/1.0.0/app-setup.exe', pseudoRandomBytes(300_000, 1), 'application/vnd.microsoft.portable-executable'],
    ['releases/1.0.0/app-1.0.0.zip', pseudoRandomBytes(120_000, 2), 'application/zip'],
    ['releases/1.1.0/app-setup.exe', pseudoRandomBytes(310_000, 3), 'application/vnd.microsoft.portable-executable'],
    ['releases/1.1.0/app-1.1.0.zip', pseudoRandomBytes(125_000, 4), 'application/zip'],
    ['releases/1.1.0/SHA256SUMS', 'checksums v1\n', 'text/plain'],
    ['releases/2.0.0/big-installer.bin', pseudoRandomBytes(40 * MIB, 5), 'application/octet-stream'],
    ['docs/README.txt', 'Artifacts of the team, version 1\n', 'text/plain'],
    ['odd/space name.txt', 'spaces', 'text/plain'],
    ['odd/ünïcødé ✓/файл.txt', 'unicode', 'text/plain'],
    ['odd/c++ & co #1?.txt', 'punctuation', 'text/plain'],
    ['odd/100% done+more.txt', 'percent and plus', 'text/plain'],
    ['folder-marker/', '', 'application/x-directory'],
    ['empty.bin', '', 'application/octet-stream'],
  ];
  for (const [key, body, type] of artifacts) await putSource(scenario, key, body, type);

  say('Drifting the targets: an earlier mirror by the old tool, then changes at the source...');
  // The old tool copied everything except 1.1.0 to both targets (no recorded source metadata).
  for (const [key, body, type] of artifacts) {
    if (key.startsWith('releases/1.1.0/') || key.startsWith('releases/2.0.0/')) continue;
    await putBlob(scenario, key, body, type);
    await putS3Object(scenario, scenario.ociBucket, key, body, type);
  }
  await putBlob(scenario, 'releases/0.9.0/app-setup.exe', pseudoRandomBytes(1000, 9), 'application/octet-stream');
  await putS3Object(scenario, scenario.ociBucket, 'releases/0.9.0/app-setup.exe', pseudoRandomBytes(1000, 9));
  await nextSecond();
  // Same size, new bytes: the old size-only tool never noticed this.
  await putSource(scenario, 'releases/1.0.0/app-1.0.0.zip', pseudoRandomBytes(120_000, 22), 'application/zip');
  // A different size.
  await putSource(scenario, 'docs/README.txt', 'Artifacts of the team, version 2 (longer)\n', 'text/plain');

  const settings = { ...process.env, ...scenario.settings };
  const io = { out: say, err: (text: string) => process.stderr.write(`  · ${text}\n`) };

  say('\n$ artifacts-sync all --dry-run');
  await runCommandLine(['all', '--dry-run'], settings, io);

  say('\n$ artifacts-sync all');
  const first = await runCommandLine(['all'], settings, io);
  say(`(exit code ${first})`);

  say('\n$ artifacts-sync all   # again: nothing left to do');
  const second = await runCommandLine(['all'], settings, io);
  say(`(exit code ${second})`);

  say('\n$ artifacts-sync verify all --checksum   # compare both targets with the source, bytes included');
  const verified = await runCommandLine(['verify', 'all', '--checksum'], settings, io);
  say(`(exit code ${verified})`);
  exitCode = first === 0 && second === 0 && verified === 0 ? 0 : 1;
} finally {
  await emulators.stop();
  say('Emulators stopped.');
}
process.exitCode = exitCode;
