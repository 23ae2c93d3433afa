/** Durations in config are Prometheus-style strings ("500ms", "30s", "5m", "1h30m") or seconds as numbers. */
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION_RE = /^(?:(\d+(?:\.\d+)?)(ms|s|m|h|d))+$/;
const PART_RE = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/g;

export function parseDurationMs(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value * 1000 : undefined;
  const v = value.trim();
  if (!DURATION_RE.test(v)) return undefined;
  let total = 0;
  for (const m of v.matchAll(PART_RE)) total += Number(m[1]) * UNIT_MS[m[2]];
  return total;
}

/** A duration in the config's own notation (`0s`, `500ms`, `90s`, `10m`, `2h`), for messages. */
export function formatDuration(ms: number): string {
  // 0 is a multiple of every unit: say it in seconds, as configs do (`maxDrift: 0s`), not "0h".
  if (ms === 0) return '0s';
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

/** A measured time for people: `41.0ms` under a second, `1.234s` above (the phase timeline, the status page). */
export function formatSeconds(s: number): string {
  return s >= 1 ? `${s.toFixed(3)}s` : `${(s * 1000).toFixed(1)}ms`;
}
