import type { RunResult } from '../../src/core/result.js';

export const HTTP_PHASES = ['resolve', 'connect', 'tls', 'request', 'transfer'] as const;

/** A passing http run of 41 ms over its five phases, started at `startedAt`, changed by `over`. */
export function httpRun(name: string, startedAt: number, over: Partial<RunResult> = {}): RunResult {
  return {
    name,
    kind: 'http',
    success: true,
    aborted: false,
    reason: null,
    phase: null,
    message: null,
    durationSeconds: 0.041,
    phases: { resolve: 0.00001, connect: 0.0005, tls: 0.0106, request: 0.0153, transfer: 0.0015 },
    startedAt,
    observations: {},
    labels: {},
    ...over,
  };
}
