import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // e2e tests start child processes and real servers; keep a generous but finite bound.
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    // A phase a kind did not declare fails its run (src/core/run.ts), so every kind test checks it.
    env: { FLEETPROBE_STRICT_PHASES: '1' },
    reporters: process.env.CI ? ['default'] : ['default'],
  },
});
