import { Cron } from 'croner';
import { formatDuration } from '../core/duration.js';

export const DEFAULT_INTERVAL_MS = 60_000;
export const DEFAULT_TIMEOUT_MS = 10_000;
// When only an interval is given, the timeout defaults to this share of it, so a run always ends
// before the next one is due.
const DEFAULT_TIMEOUT_SHARE = 0.8;

/**
 * The shortest gap between runs of a cron pattern, to compare with the timeout. Gaps need not be
 * equal ("*\/45 * * * *" runs at :00 and :45), so look at a window of upcoming runs, not just the
 * next two, or the verdict would depend on the time of day the config is loaded.
 */
const CRON_GAP_RUNS = 64;
function cronGaps(pattern: string): { min: number; max: number } | undefined {
  const job = new Cron(pattern, { paused: true });
  try {
    const runs = job.nextRuns(CRON_GAP_RUNS).map((d) => d.getTime());
    if (runs.length < 2) return undefined;
    const gaps = runs.slice(1).map((t, i) => t - runs[i]);
    return { min: Math.min(...gaps), max: Math.max(...gaps) };
  } finally {
    job.stop();
  }
}

/**
 * How long a probe may normally go without running: its interval, or for cron the longest gap
 * between runs (a weekday-only pattern idles over the weekend, which is not "stopped").
 */
export function nominalIntervalMs(spec: { intervalMs?: number; cron?: string }): number {
  if (spec.intervalMs !== undefined) return spec.intervalMs;
  return (spec.cron && cronGaps(spec.cron)?.max) || 0;
}

export interface Schedule {
  intervalMs?: number;
  cron?: string;
  timeoutMs: number;
}

/** What the schedule step reads: the probe's own fields, the file's defaults, the kind's defaults. */
export interface ScheduleInput {
  probe: { interval?: number; cron?: string; timeout?: number };
  defaults: { interval?: number; timeout?: number };
  kindDefaults?: { intervalMs?: number; timeoutMs?: number };
  /** Where the defaults block sets `timeout` (`defaults.timeout at line 3`), named when that timeout is the problem. */
  defaultsTimeoutAt?: string;
}

/**
 * Step 6 of loading: a probe's schedule. An explicit interval or cron on the probe wins over the
 * defaults block; the timeout must be below the gap between runs, so runs never overlap. A problem
 * is returned with the field to report it on.
 */
export function deriveSchedule({ probe: p, defaults, kindDefaults, defaultsTimeoutAt }: ScheduleInput): Schedule | { field: string; message: string } {
  if (p.interval !== undefined && p.cron !== undefined) return { field: 'cron', message: 'set either interval or cron, not both' };
  let intervalMs: number | undefined;
  let gapMs: number;
  if (p.cron !== undefined) {
    try {
      gapMs = cronGaps(p.cron)?.min ?? Infinity;
    } catch (err) {
      return { field: 'cron', message: `invalid cron pattern "${p.cron}": ${(err as Error).message}` };
    }
  } else {
    intervalMs = p.interval ?? defaults.interval ?? kindDefaults?.intervalMs ?? DEFAULT_INTERVAL_MS;
    if (intervalMs < 1000) return { field: 'interval', message: `interval ${formatDuration(intervalMs)} is below the minimum of 1s` };
    gapMs = intervalMs;
  }
  const explicitTimeout = p.timeout ?? defaults.timeout;
  const timeoutMs = explicitTimeout ?? Math.min(kindDefaults?.timeoutMs ?? DEFAULT_TIMEOUT_MS, Math.floor(gapMs * DEFAULT_TIMEOUT_SHARE));
  if (timeoutMs <= 0) return { field: 'timeout', message: 'timeout must be above 0' };
  if (timeoutMs >= gapMs) {
    // A timeout from the defaults block is fixed there or on this probe: say where it was written.
    const fromDefaults = p.timeout === undefined && defaults.timeout !== undefined;
    const origin = fromDefaults ? ` (from ${defaultsTimeoutAt ?? 'defaults.timeout'})` : '';
    const fix = fromDefaults ? '; set a shorter timeout on this probe or in defaults' : '';
    return {
      field: p.timeout !== undefined ? 'timeout' : p.cron !== undefined ? 'cron' : 'interval',
      message: `timeout ${formatDuration(timeoutMs)}${origin} must be below the ${p.cron !== undefined ? 'gap between cron runs' : 'interval'} (${formatDuration(gapMs)}), so runs never overlap${fix}`,
    };
  }
  return { intervalMs, cron: p.cron, timeoutMs };
}
