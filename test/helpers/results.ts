import type { ProbeSpec } from '../../src/core/kind.js';
import type { RunResult } from '../../src/core/result.js';

/** A configured probe for unit tests that need specs but load no configuration. */
export function fakeSpec(name: string, kind: string, labels: Record<string, string> = {}): ProbeSpec {
  return { name, kind, intervalMs: 60_000, timeoutMs: 10_000, labels, source: { file: 'p.yaml' }, config: {}, digest: name };
}

/** A passing run of `s` (0.25 s, at a fixed time), changed by `over`. */
export function fakeResult(s: ProbeSpec, over: Partial<RunResult> = {}): RunResult {
  return {
    name: s.name,
    kind: s.kind,
    success: true,
    aborted: false,
    reason: null,
    phase: null,
    message: null,
    durationSeconds: 0.25,
    phases: {},
    startedAt: 1_700_000_000_000,
    observations: {},
    labels: s.labels,
    ...over,
  };
}
