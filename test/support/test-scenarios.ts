/** Scenarios for one test file: each is created on demand, and its S3 client is closed after the file's tests. */
import { afterAll } from 'vitest';
import type { EmulatorCoordinates } from './emulators.ts';
import { createScenario, type Scenario } from './scenario.ts';

export function scenarioFactory(emulators: EmulatorCoordinates, prefix: string): () => Promise<Scenario> {
  const created: Scenario[] = [];
  afterAll(() => {
    for (const scenario of created) scenario.s3.destroy();
  });
  return async () => {
    const scenario = await createScenario(emulators, prefix);
    created.push(scenario);
    return scenario;
  };
}
