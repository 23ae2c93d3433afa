import os from 'node:os';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // e2e tests start child processes and real servers; keep a generous but finite bound.
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    // Most test time is waiting on child processes, sockets and timers, not CPU: two files at once
    // even on a 2-core machine (vitest's default there is one) halves the suite (9 -> 5 min in CI),
    // and the timing tests hold under it (their bounds are for a loaded machine).
    maxWorkers: Math.max(2, os.availableParallelism() - 1),
    // A phase a kind did not declare fails its run (src/core/run.ts), so every kind test checks it.
    env: { FLEETPROBE_STRICT_PHASES: '1' },
    reporters: process.env.CI ? ['default'] : ['default'],
  },
});
