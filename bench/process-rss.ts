import { readFileSync } from 'node:fs';
import process from 'node:process';

/** The process's peak resident set so far (VmHWM; where /proc is missing, the OS's maxRSS). */
export function peakRssBytes(): number {
  const kib = Number(/^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]);
  return Number.isFinite(kib) ? kib * 1024 : process.resourceUsage().maxRSS * 1024;
}
