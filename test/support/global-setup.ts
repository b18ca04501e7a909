/**
 * Vitest global setup: ONE Azurite and ONE s3rver for the whole run, shared by every test file.
 * Test files read their coordinates with `inject('emulators')` and isolate themselves by creating
 * their own buckets and containers (`uniqueName`), never by starting emulators of their own.
 */
import type { TestProject } from 'vitest/node';
import { type EmulatorCoordinates, startEmulators } from './emulators.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Where the run's shared Azurite and s3rver answer. */
    emulators: EmulatorCoordinates;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const emulators = await startEmulators();
  project.provide('emulators', emulators.coordinates);
  return () => emulators.stop();
}
