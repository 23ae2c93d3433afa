/** The families every probe has (see probe-series.ts), their buckets and results. */

/**
 * `probe_latency_seconds` buckets of a kind that declares none (each kind declares its own, for the
 * latencies its runs take; a file's `buckets:` overrides). 2, 3 and 5 s are the alert rules'
 * latency objectives (deploy/prometheus/rules.yml): with a bucket at the objective,
 * histogram_quantile crosses it exactly when the share of runs above it does.
 */
export const LATENCY_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30];
export type MetricType = 'gauge' | 'counter' | 'histogram';

export interface Family {
  name: string;
  help: string;
  type: MetricType;
}

/** The families every probe has, in the order they are exported. */
export const PROBE_FAMILIES = {
  success: { name: 'probe_success', help: 'Whether the last run of the probe succeeded (1) or failed (0).', type: 'gauge' },
  duration: { name: 'probe_duration_seconds', help: 'How long the last run of the probe took, in seconds.', type: 'gauge' },
  phase: { name: 'probe_phase_duration_seconds', help: 'Time spent in each phase of the last run (0 for phases not reached).', type: 'gauge' },
  failures: { name: 'probe_failures_total', help: 'Failed runs of the probe by failure reason.', type: 'counter' },
  latency: { name: 'probe_latency_seconds', help: 'Duration of every completed run of the probe, in seconds.', type: 'histogram' },
  lastRun: { name: 'probe_last_run_timestamp_seconds', help: 'When the last run of the probe started (seconds since the epoch).', type: 'gauge' },
  lastSuccess: {
    name: 'probe_last_success_timestamp_seconds',
    help: 'When the last successful run of the probe started (seconds since the epoch).',
    type: 'gauge',
  },
  skipped: { name: 'probe_skipped_runs_total', help: 'Runs not started because the previous run of the probe was still going.', type: 'counter' },
  // No probe_runs_total{result}: completed runs are probe_latency_seconds_count and failed ones the
  // sum of probe_failures_total, so it was two series a probe saying nothing new (docs/metrics.md).
  aborted: { name: 'probe_aborted_runs_total', help: 'Runs ended by a shutdown before they finished (neither passed nor failed).', type: 'counter' },
  certExpiry: {
    name: 'probe_ssl_earliest_cert_expiry',
    help: 'Earliest notAfter of the certificate chain seen by the last TLS handshake (seconds since the epoch).',
    type: 'gauge',
  },
  // Lets an alert say "has not run for 3 intervals" whatever each probe's schedule is.
  interval: { name: 'probe_interval_seconds', help: "The probe's interval (for cron probes the longest gap between runs), in seconds.", type: 'gauge' },
} as const satisfies Record<string, Family>;
