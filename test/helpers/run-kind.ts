import { pino } from 'pino';
import type { ProbeKind, ProbeSpec } from '../../src/core/kind.js';
import type { RunResult } from '../../src/core/result.js';
import { runProbe } from '../../src/core/run.js';

/**
 * One run of a kind, through runProbe (what the daemon and `fleetprobe run` do), with `fields`
 * parsed by the kind's own schema as the loader would: for tests that need no config file.
 */
export function runKindOnce(kind: ProbeKind, fields: Record<string, unknown>, opts: SpecOpts = {}): Promise<RunResult> {
  return runProbe(kindSpec(kind, fields, opts), kind as never, { log: pino({ level: 'silent' }) });
}

type SpecOpts = { name?: string; timeoutMs?: number };

/** The spec runKindOnce runs, for a test that also hands it to the metrics. */
export function kindSpec(kind: ProbeKind, fields: Record<string, unknown>, opts: SpecOpts = {}): ProbeSpec {
  return {
    name: opts.name ?? `${kind.kind}-test`,
    kind: kind.kind,
    intervalMs: 60_000,
    timeoutMs: opts.timeoutMs ?? 8000,
    labels: {},
    source: { file: 'test' },
    config: kind.schema.parse(fields),
    digest: 'test',
  };
}
