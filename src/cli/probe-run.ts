import type { Logger } from 'pino';
import { nominalIntervalMs } from '../config/schedule.js';
import type { CompanionStatus, ProbeSpec, ProgressEvent } from '../core/kind.js';
import type { RunResult } from '../core/result.js';
import { runProbe } from '../core/run.js';
import { KINDS } from '../kinds/index.js';

export interface ProbeRunOptions {
  shutdown: AbortSignal;
  log: Logger;
  /** The target's output as it comes (a build's log). */
  onProgress?: (event: ProgressEvent) => void;
  /** One line per companion run (`companion NAME: passed`), with the companion's result. */
  onCompanion?: (line: string, result: RunResult) => void;
}

/**
 * One run of a probe from the command line, exactly as the daemon runs it: through runProbe, with
 * the probes it reads (ProbeKind.companions) run once just before, since under the CLI there is no
 * daemon whose latest results they could read.
 */
export async function runWithCompanions(spec: ProbeSpec, all: ProbeSpec[], opts: ProbeRunOptions): Promise<RunResult> {
  const companion = await runCompanions(spec, all, opts);
  // oneShot: no earlier or later runs of this probe in this process (device-status judges drift now).
  return runProbe(spec, KINDS[spec.kind], { shutdown: opts.shutdown, log: opts.log, onProgress: opts.onProgress, companion, oneShot: true });
}

async function runCompanions(spec: ProbeSpec, all: ProbeSpec[], opts: ProbeRunOptions): Promise<(name: string) => CompanionStatus | undefined> {
  const seen = new Map<string, CompanionStatus>();
  for (const { probe } of KINDS[spec.kind].companions?.(spec.config as never) ?? []) {
    const other = all.find((p) => p.name === probe);
    if (!other || seen.has(probe)) continue;
    const r = await runProbe(other, KINDS[other.kind], { shutdown: opts.shutdown, log: opts.log });
    seen.set(probe, { last: r.aborted ? undefined : r, lastSuccessAt: r.success ? r.startedAt : undefined, intervalMs: nominalIntervalMs(other) });
    opts.onCompanion?.(`companion ${probe}: ${r.success ? 'passed' : `failed (${r.reason} in ${r.phase}: ${r.message})`}`, r);
  }
  return (name) => seen.get(name);
}

/** Output lines kept per run for the reports; a build log can be long, its end says the most. */
export const MAX_OUTPUT_LINES = 200;

/** A finished run with what it printed, as the many-probe reports see it. */
export interface RunRecord {
  result: RunResult;
  /** Companion lines and the target's output lines (not the transient ones), at most MAX_OUTPUT_LINES. */
  output: string[];
  /** 1 for the probe's first run in this command, 2 for its second... */
  attempt: number;
}

/** A run whose output is collected rather than shown live (runs in parallel would interleave). */
export async function runCollected(
  spec: ProbeSpec,
  all: ProbeSpec[],
  attempt: number,
  opts: Omit<ProbeRunOptions, 'onProgress' | 'onCompanion'>,
): Promise<RunRecord> {
  const output: string[] = [];
  let dropped = 0;
  const keep = (line: string) => {
    output.push(line);
    if (output.length > MAX_OUTPUT_LINES) {
      output.shift();
      dropped++;
    }
  };
  const result = await runWithCompanions(spec, all, {
    ...opts,
    onProgress: (e) => {
      if (e.line !== undefined && !e.transient) keep(e.line);
    },
    onCompanion: (line) => keep(line),
  });
  if (dropped) output.unshift(`… ${dropped} earlier line${dropped === 1 ? '' : 's'} not kept`);
  return { result, output, attempt };
}
