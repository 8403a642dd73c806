import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['functions/**/*.test.ts', 'local/**/*.test.ts', 'infra-tests/**/*.test.ts', 'cdk/**/*.test.ts', 'bin/**/*.test.ts', 'testing/**/*.test.ts'],
    // Tests start real PostgreSQL servers; give them room and keep files in separate processes.
    testTimeout: 120_000,
    hookTimeout: 180_000,
    // Appliers run in the test process: keep Powertools' metric output out of the test log.
    env: { POWERTOOLS_METRICS_DISABLED: 'true', POWERTOOLS_LOG_LEVEL: 'ERROR' },
    pool: 'forks',
    maxWorkers: 2,
    coverage: {
      provider: 'v8',
      include: ['functions/**/*.ts', 'local/**/*.ts', 'cdk/**/*.ts'],
      exclude: ['**/*.test.ts'],
    },
  },
});
