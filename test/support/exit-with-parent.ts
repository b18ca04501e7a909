/**
 * Preloaded with `node --import` into every emulator child process by ./emulators.ts.
 *
 * The parent holds the other end of our stdin pipe. When that pipe ends the parent is gone, even if
 * it died by a signal and its 'exit' handler never ran, so the emulator must not outlive it, and
 * nobody else will remove its work directory. `unref` keeps the pipe from holding the event loop
 * open, so the emulator's own graceful shutdown on SIGTERM still ends the process.
 */
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname } from 'node:path';

function exitWithParent(): never {
  const workDir = process.env['EMULATOR_WORK_DIR'];
  // Only ever a directory that ./emulators.ts created: a wrong variable must not delete anything else.
  if (workDir !== undefined && dirname(workDir) === tmpdir() && basename(workDir).startsWith('artifacts-sync-')) {
    rmSync(workDir, { recursive: true, force: true });
  }
  process.exit(0);
}

process.stdin.on('end', exitWithParent);
process.stdin.on('error', exitWithParent);
process.stdin.resume();
process.stdin.unref();
