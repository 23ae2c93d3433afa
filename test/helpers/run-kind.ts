import { pino } from 'pino';
import type { ProbeKind, ProbeSpec } from '../../src/core/kind.js';
import type { RunResult } from '../../src/core/result.js';
import { runProbe } from '../../src/core/run.js';

/**
 * One run of a kind, through runProbe (what the daemon and `fleetprobe run` do), with `fields`
 * parsed by the kind's own schema as the loader would: for tests that need no config file.
 */
export function runKindOnce(kind: ProbeKind, fields: Record<string, unknown>, opts: { name?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  const spec: ProbeSpec = {
    name: opts.name ?? `${kind.kind}-test`,
    kind: kind.kind,
    intervalMs: 60_000,
    timeoutMs: opts.timeoutMs ?? 8000,
    labels: {},
    source: { file: 'test' },
    config: kind.schema.parse(fields),
    digest: 'test',
  };
  return runProbe(spec, kind as never, { log: pino({ level: 'silent' }) });
}
