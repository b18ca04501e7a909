/**
 * `npm run demo`: the real mirror on local emulators. Starts Azurite and an S3 emulator on free ports,
 * seeds a source bucket of artifacts and some drift in both targets, runs `artifacts-sync all` (the
 * same code path as the CLI), runs it again to show nothing is left to do; then the event path: an
 * upload and a deletion reach both targets through the events endpoint and the queue worker in about a
 * second. Last, it checks the mirrors with `artifacts-sync verify all --checksum` (bytes, headers and
 * metadata), and stops everything it started.
 */
import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import azureFunctions from '@azure/functions';
import { QueueServiceClient } from '@azure/storage-queue';
import process from 'node:process';
import { runCommandLine } from '../src/command-line.ts';
import { createEventService } from '../src/events.ts';
import { eventsHttpHandler } from '../src/functions/events-http.ts';
import { objectQueueHandler } from '../src/functions/object-queue.ts';
import { startEmulators, uniqueName } from '../test/support/emulators.ts';
import { drainQueue } from '../test/support/queue-host.ts';
import { eventBridgeEvent, type EventKind } from '../test/support/s3-event-documents.ts';
import { createScenario, nextSecond, pseudoRandomBytes, putBlob, putS3Object, putSource, readAll } from '../test/support/scenario.ts';

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

  say('Seeding the source with a tree of artifacts, odd names and one 40 MiB installer (streamed to both targets from one read, one request each)...');
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

  say('\nNear-real-time: S3 events → POST /api/events/s3 → queue → worker (the Functions host\'s queue loop is played here)');
  const queueName = uniqueName('demo-events');
  const eventSettings = { ...settings, AzureWebJobsStorage: emulators.coordinates.azurite.connectionString, SYNC_QUEUE_NAME: queueName };
  const events = createEventService(eventSettings);
  const queues = QueueServiceClient.fromConnectionString(emulators.coordinates.azurite.connectionString);
  const hotfix = 'releases/2.1.0/hotfix 2.1.0+1.zip';
  const where = async (): Promise<string> => {
    const now = await readAll(scenario);
    return `azure ${now.azure.has(hotfix) ? 'has it' : 'has not'}, oci ${now.oci.has(hotfix) ? 'has it' : 'has not'}`;
  };
  let eventPathWorked = true;
  const postAndWork = async (kind: EventKind): Promise<void> => {
    const startedMs = Date.now();
    const body = JSON.stringify(eventBridgeEvent(scenario.sourceBucket, hotfix, kind));
    const request = new azureFunctions.HttpRequest({ method: 'POST', url: 'http://localhost:7071/api/events/s3', body: { string: body } });
    const context = new azureFunctions.InvocationContext({ invocationId: 'demo', functionName: 'events', logHandler: () => undefined });
    const response = await eventsHttpHandler(events)(request, context);
    say(`  POST /api/events/s3 (${kind === 'created' ? 'Object Created' : 'Object Deleted'}) → ${response.status} ${String(response.body)}`);
    const drained = await drainQueue(queues.getQueueClient(queueName), queues.getQueueClient(`${queueName}-poison`), objectQueueHandler(events));
    // The key is also looked at as its form-decoded reading (EventBridge's encoding is not pinned down): nothing happens to that one.
    const lags = drained.lines.map((line) => JSON.parse(line.text) as Record<string, unknown>).filter((line) => line['event'] === 'key-mirrored' && line['outcome'] !== 'unchanged');
    for (const line of lags) say(`  worker: ${String(line['target'])} ${String(line['outcome'])} ${JSON.stringify(line['key'])}, lag ${String(line['lagMs'])} ms`);
    const state = await where();
    say(`  ${kind === 'created' ? 'mirrored' : 'gone'} ${Date.now() - startedMs} ms after the event was posted: ${state}`);
    if (state !== (kind === 'created' ? 'azure has it, oci has it' : 'azure has not, oci has not')) eventPathWorked = false;
  };
  say(`\n$ aws s3 cp hotfix.zip "s3://${scenario.sourceBucket}/${hotfix}"`);
  await putSource(scenario, hotfix, pseudoRandomBytes(200_000, 7), 'application/zip');
  await postAndWork('created');
  say(`\n$ aws s3 rm "s3://${scenario.sourceBucket}/${hotfix}"`);
  await scenario.s3.send(new DeleteObjectCommand({ Bucket: scenario.sourceBucket, Key: hotfix }));
  await postAndWork('deleted');

  say('\n$ artifacts-sync verify all --checksum   # compare both targets with the source, bytes included');
  const verified = await runCommandLine(['verify', 'all', '--checksum'], settings, io);
  say(`(exit code ${verified})`);
  exitCode = first === 0 && second === 0 && eventPathWorked && verified === 0 ? 0 : 1;
} finally {
  await emulators.stop();
  say('Emulators stopped.');
}
process.exitCode = exitCode;
