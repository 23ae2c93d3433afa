import type { Reason } from './reasons.js';

/** The outcome of one run: what metrics, /probes, the CLI and the log all read from. */
export interface RunResult {
  name: string;
  kind: string;
  success: boolean;
  /** Ended by shutdown before it could pass or fail: not a failure, not a success. */
  aborted: boolean;
  reason: Reason | null;
  /** The phase the failure happened in (null on success). */
  phase: string | null;
  /** Redacted, bounded, one line. */
  message: string | null;
  durationSeconds: number;
  /** Seconds per phase reached, in the order reached. */
  phases: Record<string, number>;
  /** ms since the epoch. */
  startedAt: number;
  observations: Record<string, number | string>;
  labels: Record<string, string>;
  /**
   * The last lines of the target's own output (ctx.progress: a build's log), already redacted and
   * stripped of control characters; absent when it wrote none. Not part of resultToJson: the run
   * history serves it (/probes/NAME) and `fleetprobe run` shows it live.
   */
  output?: string[];
  /**
   * A fleet-target run's devices, one result each, in the order they were picked (absent for a run
   * of one target). Messages are redacted and bounded like the run's.
   */
  targets?: TargetResult[];
}

/** One device of a fleet-target run (src/kinds/shared/fleet-targets.ts): its verdict as a run's. */
export interface TargetResult extends Pick<RunResult, 'success' | 'reason' | 'phase' | 'message' | 'durationSeconds'> {
  device: string;
}

/** The shape `fleetprobe run --json` prints and /probes serves for one run. */
export function resultToJson(r: RunResult) {
  return {
    name: r.name,
    kind: r.kind,
    success: r.success,
    aborted: r.aborted || undefined,
    reason: r.reason,
    phase: r.phase,
    durationSeconds: roundSeconds(r.durationSeconds),
    phases: Object.fromEntries(Object.entries(r.phases).map(([k, v]) => [k, roundSeconds(v)])),
    message: r.message,
    startedAt: new Date(r.startedAt).toISOString(),
    labels: r.labels,
    observations: Object.keys(r.observations).length ? r.observations : undefined,
    targets: r.targets?.map((t) => ({ ...t, durationSeconds: roundSeconds(t.durationSeconds) })),
  };
}

/** Seconds to the microsecond, for JSON. */
export function roundSeconds(s: number): number {
  return Math.round(s * 1e6) / 1e6;
}
