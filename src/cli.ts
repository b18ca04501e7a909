#!/usr/bin/env node
/** `artifacts-sync <all|azure|oci> [--dry-run] [--json]` and `artifacts-sync verify <all|azure|oci> [--json] [--checksum]`; runs on Node and Deno. */
import module from 'node:module';
import process from 'node:process';

// Keep the compiled code of this tool and its SDKs between runs (Node 22.1+, in the OS temp
// directory or NODE_COMPILE_CACHE): start-up takes half the time. Elsewhere (Deno) nothing happens.
module.enableCompileCache?.();
const { runCommandLine } = await import('./command-line.ts');

const exitCode = await runCommandLine(process.argv.slice(2), process.env, {
  out: (text) => process.stdout.write(`${text}\n`),
  err: (text) => process.stderr.write(`${text}\n`),
});
process.exitCode = exitCode;
