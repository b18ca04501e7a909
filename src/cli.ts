#!/usr/bin/env node
/** `artifacts-sync <all|azure|oci> [--dry-run] [--json]` and `artifacts-sync verify <all|azure|oci> [--json] [--checksum]`; runs on Node and Deno. */
import module from 'node:module';
import process from 'node:process';

// Keep the compiled code of this tool and its SDKs between runs (Node 22.1+, in the OS temp
// directory or NODE_COMPILE_CACHE): start-up takes half the time. Elsewhere (Deno) nothing happens.
module.enableCompileCache?.();
const [{ runCommandLine }, { InterruptedError }] = await Promise.all([import('./command-line.ts'), import('./core/errors.ts')]);

// Ctrl-C (SIGINT) or SIGTERM: stop starting work, cancel transfers in flight (nothing partial is left
// visible), release the lock, exit 130 or 143. A second signal exits at once.
const interrupt = new AbortController();
const onSignal = (signalName: 'SIGINT' | 'SIGTERM'): void => {
  if (interrupt.signal.aborted) process.exit(signalName === 'SIGTERM' ? 143 : 130);
  process.stderr.write(`artifacts-sync: ${signalName}: stopping; transfers in flight are cancelled and the lock released (again to quit at once)\n`);
  interrupt.abort(new InterruptedError(signalName));
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

const exitCode = await runCommandLine(
  process.argv.slice(2),
  process.env,
  {
    out: (text) => process.stdout.write(`${text}\n`),
    err: (text) => process.stderr.write(`${text}\n`),
  },
  {},
  interrupt.signal,
);
process.exitCode = exitCode;
