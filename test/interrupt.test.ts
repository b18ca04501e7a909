/**
 * Ctrl-C: the real CLI process (`node src/cli.ts all`) gets SIGINT (or SIGTERM) while a multi-part object is
 * on its way. It stops starting work, cancels the transfers in flight, leaves nothing partial visible at
 * either target, releases its lock (the next run starts at once, without waiting out the lease) and
 * exits 130 (143 for SIGTERM). OCI is reached through the S3 stand-in (./support/s3-stand-in.ts), which
 * plays real OCI's atomic PutObject and multipart-upload listing that s3rver lacks.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, inject, it } from 'vitest';
import type { RunReport } from '../src/core/report.ts';
import { runJson } from './support/cli-run.ts';
import type { ProxiedRequest } from './support/http-proxy.ts';
import { createStandInScenario } from './support/stand-in-scenario.ts';
import { md5Hex, mirrorDifferences, pseudoRandomBytes, putSource, readAll } from './support/scenario.ts';

const emulators = inject('emulators');
const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const MIB = 1024 * 1024;

describe('a run stopped by the operator', () => {
  it.each([
    ['SIGINT', 130, 'in parts'],
    ['SIGTERM', 143, 'in parts'],
    ['SIGINT', 130, 'in one streamed request'],
  ] as const)('%s mid-transfer exits %i, leaves nothing partial, and releases the lock (the large object %s)', async (signalName, expectedExit, shape) => {
    const inParts = shape === 'in parts';
    // A long lease: a lock left held would keep the next run out (exit 3) for a minute.
    const s = await createStandInScenario(emulators, {
      prefix: `ctrl-c-${signalName.toLowerCase()}`,
      settings: { SYNC_TRANSFER_MODE: 'streaming', SYNC_LOCK_LEASE_SECONDS: '60', ...(inParts ? { SYNC_SINGLE_REQUEST_MAX_MB: '5' } : {}) },
    });
    try {
      const big = pseudoRandomBytes(60 * MIB, 1);
      await putSource(s, 'big.bin', big);
      for (let index = 0; index < 4; index += 1) await putSource(s, `small/${index}.txt`, `small ${index}`);

      const child = spawn(process.execPath, ['src/cli.ts', 'all', '--json'], {
        cwd: repoRoot,
        env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/tmp', ...s.settings },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      // Interrupted once two parts of the big object reached OCI, or 8 MiB of its one request: mid-transfer.
      const midTransfer = (request: ProxiedRequest): boolean =>
        inParts ? request.operation === 'UploadPart' && request.status === 200 : request.operation === 'PutObject' && request.path.endsWith('/big.bin') && request.status === null && request.requestBytes >= 8 * MIB;
      for (let waited = 0; waited < 60_000; waited += 5) {
        if (s.ociProxy.requests().filter(midTransfer).length >= (inParts ? 2 : 1)) break;
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      child.kill(signalName);
      const exitCode = await exited;

      expect(exitCode, stderr).toBe(expectedExit);
      const report = JSON.parse(stdout) as RunReport;
      expect(report.stoppedBy).toBe('interrupted');
      expect(report.complete).toBe(false);
      expect(stderr).toContain(`${signalName}: stopping`);

      // Nothing partial: every object either target shows is whole.
      await s.ociStandIn.idle();
      const stored = await readAll(s);
      const sourceMd5 = new Map([...stored.source].map(([key, object]) => [key, object.md5]));
      for (const [name, held] of [['azure', stored.azure], ['oci', stored.oci]] as const) {
        for (const [key, object] of held) expect(object.md5, `${name} ${key}`).toBe(sourceMd5.get(key));
      }
      expect(stored.oci.get('big.bin')).toBeUndefined();
      expect(md5Hex(big)).toBe(sourceMd5.get('big.bin'));

      // The lock was released: the next run starts at once (a held lock would answer exit 3) and completes the mirror.
      const next = await runJson('all', s.settings);
      expect(next.exitCode, next.stderr).toBe(0);
      const after = await readAll(s);
      expect(mirrorDifferences(after.source, after.azure)).toEqual([]);
      expect(mirrorDifferences(after.source, after.oci)).toEqual([]);
      expect(s.ociStandIn.uploads(s.ociBucket).filter((upload) => upload.state === 'in-progress')).toEqual([]);
    } finally {
      await s.close();
    }
  }, 180_000);
});
