#!/usr/bin/env node
/** `artifacts-sync <all|azure|oci> [--dry-run] [--json]`; runs on Node and Deno. */
import process from 'node:process';
import { runCommandLine } from './command-line.ts';

const exitCode = await runCommandLine(process.argv.slice(2), process.env, {
  out: (text) => process.stdout.write(`${text}\n`),
  err: (text) => process.stderr.write(`${text}\n`),
});
process.exitCode = exitCode;
