import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Starts one Azurite and one s3rver for the run; test files get them with inject('emulators').
    globalSetup: ['test/support/global-setup.ts'],
    pool: 'forks',
    // The machine and CI have 2 cores. Tests mostly wait on the emulators (two more processes), so two
    // workers keep both cores busy; more would only make the emulators and the workers fight for them.
    maxWorkers: 2,
    // Real HTTP round trips to emulators on a loaded 2-core machine: generous, but a hang still fails.
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
