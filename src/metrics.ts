import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { nominalIntervalMs } from './config/load.js';
import type { KindMetric, ProbeKind, ProbeSpec } from './core/kind.js';
import { REASONS } from './core/reasons.js';
import type { RunResult } from './core/result.js';

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900];
const LAG_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
export const RESULTS = ['success', 'failure', 'aborted'] as const;

type Labels = Record<string, string>;

/** Every series a probe owns, created together so they can be removed together. */
function probeMetrics(registry: Registry, staticLabels: string[], kinds: Record<string, ProbeKind>) {
  const base = ['probe', 'kind', ...staticLabels];
  const registers = [registry];
  // Kinds' own series, by observation name (one metric may serve several kinds).
  const extra = new Map<string, Gauge | Counter>();
  for (const k of Object.values(kinds)) {
    for (const m of k.metrics ?? []) {
      if (extra.has(m.name)) continue;
      const labelNames = m.label ? [...base, m.label.name] : base;
      extra.set(m.name, m.type === 'gauge' ? new Gauge({ name: m.name, help: m.help, labelNames, registers }) : new Counter({ name: m.name, help: m.help, labelNames, registers }));
    }
  }
  return {
    extra,
    success: new Gauge({ name: 'probe_success', help: 'Whether the last run of the probe succeeded (1) or failed (0).', labelNames: base, registers }),
    duration: new Gauge({ name: 'probe_duration_seconds', help: 'How long the last run of the probe took, in seconds.', labelNames: base, registers }),
    phase: new Gauge({ name: 'probe_phase_duration_seconds', help: 'Time spent in each phase of the last run (0 for phases not reached).', labelNames: [...base, 'phase'], registers }),
    runs: new Counter({ name: 'probe_runs_total', help: 'Runs of the probe by result (success, failure, aborted by shutdown).', labelNames: [...base, 'result'], registers }),
    failures: new Counter({ name: 'probe_failures_total', help: 'Failed runs of the probe by failure reason.', labelNames: [...base, 'reason'], registers }),
    latency: new Histogram({ name: 'probe_latency_seconds', help: 'Duration of every completed run of the probe, in seconds.', labelNames: base, buckets: LATENCY_BUCKETS, registers }),
    lastRun: new Gauge({ name: 'probe_last_run_timestamp_seconds', help: 'When the last run of the probe started (seconds since the epoch).', labelNames: base, registers }),
    lastSuccess: new Gauge({ name: 'probe_last_success_timestamp_seconds', help: 'When the last successful run of the probe started (seconds since the epoch).', labelNames: base, registers }),
    skipped: new Counter({ name: 'probe_skipped_runs_total', help: 'Runs not started because the previous run of the probe was still going.', labelNames: base, registers }),
    certExpiry: new Gauge({ name: 'probe_ssl_earliest_cert_expiry', help: 'Earliest notAfter of the certificate chain seen by the last TLS handshake (seconds since the epoch).', labelNames: base, registers }),
    // Lets an alert say "has not run for 3 intervals" whatever each probe's schedule is.
    interval: new Gauge({ name: 'probe_interval_seconds', help: 'The probe\'s interval (for cron probes the longest gap between runs), in seconds.', labelNames: base, registers }),
  };
}
type ProbeMetrics = ReturnType<typeof probeMetrics>;

/** The series of a kind metric for one probe, with the observation that feeds each (see KindMetric.label). */
function kindSeries(m: KindMetric, labels: Labels): { series: Labels; observation: string }[] {
  if (!m.label) return [{ series: labels, observation: m.observation }];
  const name = m.label.name;
  return m.label.values.map((v) => ({ series: { ...labels, [name]: v }, observation: `${m.observation}.${v}` }));
}

/**
 * The only writer of prom-client series. Series for every phase, reason and result exist from the
 * moment a probe is configured, so `rate()` and alerts work before the first failure.
 */
export class Metrics {
  readonly registry = new Registry();
  private staticLabels: string[] = [];
  private probe: ProbeMetrics;
  private configured = new Map<string, { labels: Labels; phases: readonly string[] }>();

  readonly reloadSuccessful = new Gauge({ name: 'fleetprobe_config_last_reload_successful', help: 'Whether the last configuration (re)load succeeded.', registers: [this.registry] });
  readonly reloadTimestamp = new Gauge({ name: 'fleetprobe_config_last_reload_success_timestamp_seconds', help: 'When the configuration was last loaded successfully.', registers: [this.registry] });
  readonly schedulerLag = new Histogram({ name: 'fleetprobe_scheduler_lag_seconds', help: 'How late runs started after they were due (includes waiting for the concurrency cap).', buckets: LAG_BUCKETS, registers: [this.registry] });
  readonly inFlight = new Gauge({ name: 'fleetprobe_runs_in_flight', help: 'Probe runs in progress.', registers: [this.registry] });
  readonly probesConfigured = new Gauge({ name: 'fleetprobe_probes_configured', help: 'Probes in the running configuration, by kind.', labelNames: ['kind'], registers: [this.registry] });
  readonly shardIndex = new Gauge({ name: 'fleetprobe_shard_index', help: 'Which shard of the probes this replica runs (0-based; see --shard).', registers: [this.registry] });
  readonly shardCount = new Gauge({ name: 'fleetprobe_shards', help: 'How many shards the probes are split into (1 when not sharded).', registers: [this.registry] });
  readonly buildInfo = new Gauge({ name: 'fleetprobe_build_info', help: 'Build information; always 1.', labelNames: ['version', 'nodejs'], registers: [this.registry] });

  constructor(version: string, private readonly kinds: Record<string, ProbeKind>) {
    collectDefaultMetrics({ register: this.registry });
    // prom-client names these gauges *_total, which `promtool check metrics` rejects (only counters
    // end in _total). nodejs_active_handles / _requests / _resources (by type) carry the same numbers.
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
      this.registry.removeSingleMetric(name);
    }
    this.buildInfo.set({ version, nodejs: process.version }, 1);
    this.shardCount.set(1);
    this.shardIndex.set(0);
    this.probe = probeMetrics(this.registry, this.staticLabels, kinds);
    for (const k of Object.keys(kinds)) this.probesConfigured.set({ kind: k }, 0);
  }

  private labelsOf(spec: { name: string; kind: string; labels: Labels }): Labels {
    const l: Labels = { probe: spec.name, kind: spec.kind };
    for (const n of this.staticLabels) l[n] = spec.labels[n] ?? '';
    return l;
  }

  /** Creates the series of the given probes and removes those of probes no longer configured. */
  configure(specs: ProbeSpec[]): void {
    const names = [...new Set(specs.flatMap((s) => Object.keys(s.labels)))].sort();
    if (names.join() !== this.staticLabels.join()) {
      // The label set changed: the metric families must be rebuilt (their counters restart at 0).
      const { extra, ...common } = this.probe;
      for (const m of [...Object.values(common), ...extra.values()]) this.registry.removeSingleMetric((m as unknown as { name: string }).name);
      this.staticLabels = names;
      this.probe = probeMetrics(this.registry, names, this.kinds);
      this.configured.clear();
    }
    const next = new Map<string, { labels: Labels; phases: readonly string[] }>();
    for (const spec of specs) next.set(spec.name, { labels: this.labelsOf(spec), phases: this.kinds[spec.kind]?.phases ?? [] });
    for (const [name, old] of this.configured) {
      const now = next.get(name);
      if (!now || JSON.stringify(now.labels) !== JSON.stringify(old.labels)) this.removeSeries(old.labels, old.phases);
    }
    for (const spec of specs) {
      const { labels, phases } = next.get(spec.name)!;
      const name = spec.name;
      // Set on every reload: an interval can change while the labels stay.
      this.probe.interval.set(labels, nominalIntervalMs(spec) / 1000);
      if (this.configured.has(name) && JSON.stringify(this.configured.get(name)!.labels) === JSON.stringify(labels)) continue;
      const p = this.probe;
      for (const phase of phases) p.phase.set({ ...labels, phase }, 0);
      for (const result of RESULTS) p.runs.inc({ ...labels, result }, 0);
      for (const reason of REASONS) p.failures.inc({ ...labels, reason }, 0);
      p.skipped.inc(labels, 0);
      p.latency.zero(labels);
      for (const m of this.kinds[labels.kind]?.metrics ?? []) {
        if (m.type === 'counter') for (const { series } of kindSeries(m, labels)) (p.extra.get(m.name) as Counter).inc(series, 0);
      }
    }
    this.configured = next;
    for (const k of Object.keys(this.kinds)) this.probesConfigured.set({ kind: k }, specs.filter((s) => s.kind === k).length);
  }

  private removeSeries(labels: Labels, phases: readonly string[]): void {
    const p = this.probe;
    for (const m of [p.success, p.duration, p.latency, p.lastRun, p.lastSuccess, p.skipped, p.certExpiry, p.interval]) m.remove(labels);
    for (const m of this.kinds[labels.kind]?.metrics ?? []) for (const { series } of kindSeries(m, labels)) p.extra.get(m.name)!.remove(series);
    for (const phase of phases) p.phase.remove({ ...labels, phase });
    for (const result of RESULTS) p.runs.remove({ ...labels, result });
    for (const reason of REASONS) p.failures.remove({ ...labels, reason });
  }

  record(r: RunResult): void {
    const entry = this.configured.get(r.name);
    if (!entry) return; // removed by a reload while it ran
    const { labels, phases } = entry;
    const p = this.probe;
    if (r.aborted) {
      p.runs.inc({ ...labels, result: 'aborted' });
      return;
    }
    p.success.set(labels, r.success ? 1 : 0);
    p.duration.set(labels, r.durationSeconds);
    for (const phase of phases) p.phase.set({ ...labels, phase }, r.phases[phase] ?? 0);
    p.runs.inc({ ...labels, result: r.success ? 'success' : 'failure' });
    if (!r.success && r.reason) p.failures.inc({ ...labels, reason: r.reason });
    p.latency.observe(labels, r.durationSeconds);
    p.lastRun.set(labels, r.startedAt / 1000);
    if (r.success) p.lastSuccess.set(labels, r.startedAt / 1000);
    const expiry = r.observations.ssl_earliest_cert_expiry;
    if (typeof expiry === 'number') p.certExpiry.set(labels, expiry);
    this.observe(r.name, r.kind, r.observations);
  }

  /** Feeds a kind's own series from observations, outside a run (a held probe's state between runs). */
  observe(name: string, kind: string, observations: Record<string, number | string>): void {
    const entry = this.configured.get(name);
    if (!entry) return;
    for (const m of this.kinds[kind]?.metrics ?? []) {
      const metric = this.probe.extra.get(m.name)!;
      for (const { series, observation } of kindSeries(m, entry.labels)) {
        const v = observations[observation];
        if (typeof v !== 'number') continue;
        if (metric instanceof Gauge) metric.set(series, v);
        else (metric as Counter).inc(series, v);
      }
    }
  }

  skipped(spec: { name: string }): void {
    const entry = this.configured.get(spec.name);
    if (entry) this.probe.skipped.inc(entry.labels);
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
