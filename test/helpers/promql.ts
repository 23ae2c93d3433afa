import { KINDS } from '../../src/kinds/index.js';
import { Metrics } from '../../src/metrics/metrics.js';

/** Checks that deploy/ (rules, dashboard, rollout analysis) queries only series fleetprobe exports. */

/** Series of kinds being built now (ssh, tunnel, device-status): the rules cover them already. */
const PLANNED_KIND_METRICS = ['fleetprobe_tunnel_interruptions_total', 'fleetprobe_device_status_drift_seconds', 'fleetprobe_device_api_online'];

export async function exposedMetricNames(): Promise<Set<string>> {
  const m = new Metrics('test', KINDS);
  const names = new Set<string>(['up', ...PLANNED_KIND_METRICS]);
  for (const fam of await m.registry.getMetricsAsJSON()) {
    names.add(fam.name);
    if (String(fam.type) === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(fam.name + s);
  }
  return names;
}

/** Metric names an expression selects (not functions, keywords, labels or recorded rule names). */
export function selectedMetrics(expr: string): string[] {
  const noStrings = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    // Grafana's duration variables (`offset $__rate_interval`) are durations, not metrics.
    .replace(/\$__\w+/g, '5m')
    .replace(/\{[^}]*\}/g, '{}')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const words = [...noStrings.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{|\[|\)|$|\s|==|>|<|\/|\*|-)/g)].map((m) => m[1]);
  const skip =
    /^(sum|count|min|max|avg|topk|by|without|on|ignoring|group_left|group_right|and|or|unless|rate|increase|histogram_quantile|absent|time|vector|label_values|bool|offset)$/;
  return words.filter((w) => !skip.test(w) && !w.includes(':') && !/^\d/.test(w) && !/^(s|m|h|d)$/.test(w));
}
