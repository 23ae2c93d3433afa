import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { nominalIntervalMs } from '../config/schedule.js';
import { CERT_EXPIRY } from '../core/observations.js';
import type { ProbeKind, ProbeSpec } from '../core/kind.js';
import type { RunResult } from '../core/result.js';
import { ProbeSeries } from './probe-series.js';

const LAG_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * The only writer of metrics. The probes' own series live in ProbeSeries (compact, rendered by
 * hand: they are most of /metrics at scale); the daemon's few series and the process metrics stay
 * in prom-client. Series for every phase, declared reason and the latency histogram exist from the moment a probe is
 * configured, so `rate()` and alerts work before the first failure.
 */
export class Metrics {
  private readonly prom = new Registry();
  private readonly probes: ProbeSeries;
  private readonly kindNames: string[];
  /** Every family (names and types) as prom-client's getMetricsAsJSON gives them, and the text. */
  readonly registry: { contentType: string; metrics(): Promise<string>; getMetricsAsJSON(): Promise<{ name: string; help: string; type: string }[]> };

  readonly reloadSuccessful = new Gauge({
    name: 'fleetprobe_config_last_reload_successful',
    help: 'Whether the last configuration (re)load succeeded.',
    registers: [this.prom],
  });
  readonly reloadTimestamp = new Gauge({
    name: 'fleetprobe_config_last_reload_success_timestamp_seconds',
    help: 'When the configuration was last loaded successfully.',
    registers: [this.prom],
  });
  readonly schedulerLag = new Histogram({
    name: 'fleetprobe_scheduler_lag_seconds',
    help: 'How late runs started after they were due (includes waiting for the concurrency cap).',
    buckets: LAG_BUCKETS,
    registers: [this.prom],
  });
  readonly inFlight = new Gauge({ name: 'fleetprobe_runs_in_flight', help: 'Probe runs in progress.', registers: [this.prom] });
  readonly probesConfigured = new Gauge({
    name: 'fleetprobe_probes_configured',
    help: 'Probes in the running configuration, by kind.',
    labelNames: ['kind'],
    registers: [this.prom],
  });
  readonly shardIndex = new Gauge({
    name: 'fleetprobe_shard_index',
    help: 'Which shard of the probes this replica runs (0-based; see --shard).',
    registers: [this.prom],
  });
  readonly shardCount = new Gauge({
    name: 'fleetprobe_shards',
    help: 'How many shards the probes are split into (1 when not sharded).',
    registers: [this.prom],
  });
  readonly httpConnections = new Gauge({
    name: 'fleetprobe_http_connections',
    help: "Open connections to fleetprobe's own HTTP server (at most --max-connections).",
    registers: [this.prom],
  });
  readonly httpConnectionsDropped = new Counter({
    name: 'fleetprobe_http_connections_dropped_total',
    help: 'Connections to the HTTP server closed to stay within --max-connections (an idle one, or the new one when all were busy).',
    registers: [this.prom],
  });
  readonly buildInfo = new Gauge({
    name: 'fleetprobe_build_info',
    help: 'Build information; always 1.',
    labelNames: ['version', 'nodejs'],
    registers: [this.prom],
  });

  /** `log`: where a reason a kind did not declare is reported (once per kind and reason) as a bug. */
  constructor(
    version: string,
    private readonly kinds: Record<string, ProbeKind>,
    log?: Pick<Logger, 'warn'>,
  ) {
    // prom-client samples the event loop's delay with a 10 ms timer by default: 100 wakeups a
    // second, 2.5 ms of CPU a second in an otherwise idle daemon (50 us per run at 50 runs/s).
    // Every 50 ms still gives its nodejs_eventloop_lag_* hundreds of samples per scrape.
    collectDefaultMetrics({ register: this.prom, eventLoopMonitoringPrecision: 50 });
    // prom-client names these gauges *_total, which `promtool check metrics` rejects (only counters
    // end in _total). nodejs_active_handles / _requests / _resources (by type) carry the same numbers.
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
      this.prom.removeSingleMetric(name);
    }
    this.buildInfo.set({ version, nodejs: process.version }, 1);
    this.shardCount.set(1);
    this.shardIndex.set(0);
    const undeclared = new Set<string>();
    this.probes = new ProbeSeries(kinds, (probe, kind, reason) => {
      if (undeclared.has(`${kind}/${reason}`)) return;
      undeclared.add(`${kind}/${reason}`);
      log?.warn(
        { probe, kind, reason },
        `probe ${probe} failed with reason ${reason}, which the ${kind} kind does not declare (its series was made now, so its first failure is missing from rate()): a bug in the kind's reasons list`,
      );
    });
    this.kindNames = Object.keys(kinds);
    for (const k of this.kindNames) this.probesConfigured.set({ kind: k }, 0);
    const prom = this.prom;
    const probes = this.probes;
    this.registry = {
      contentType: prom.contentType,
      metrics: async () => (await this.renderBytes()).toString('utf8'),
      getMetricsAsJSON: async () => [
        ...(await prom.getMetricsAsJSON()).map((m) => ({ name: m.name, help: m.help, type: String(m.type) })),
        ...probes.families(),
      ],
    };
  }

  /** Creates the series of the given probes and removes those of probes no longer configured. */
  configure(specs: ProbeSpec[]): void {
    const kindOf = new Map(specs.map((s) => [s.name, s.kind]));
    this.probes.configure(
      specs.map((s) => ({
        name: s.name,
        kind: s.kind,
        labels: s.labels,
        intervalSeconds: nominalIntervalMs(s) / 1000,
        buckets: s.buckets,
        config: s.config,
        companionKinds: (this.kinds[s.kind]?.companions?.(s.config as never) ?? []).flatMap((c) => kindOf.get(c.probe) ?? []),
      })),
    );
    const byKind = new Map<string, number>();
    for (const s of specs) byKind.set(s.kind, (byKind.get(s.kind) ?? 0) + 1);
    for (const k of this.kindNames) this.probesConfigured.set({ kind: k }, byKind.get(k) ?? 0);
  }

  record(r: RunResult): void {
    if (!this.probes.has(r.name)) return; // removed by a reload while it ran
    const expiry = r.observations[CERT_EXPIRY];
    this.probes.recordRun(r.name, { ...r, certExpiry: typeof expiry === 'number' ? expiry : undefined });
    if (!r.aborted) this.probes.observe(r.name, r.observations);
  }

  /** Feeds a kind's own series from observations, outside a run (a held probe's state between runs). */
  observe(name: string, observations: Readonly<Record<string, number | string | undefined>>): void {
    this.probes.observe(name, observations);
  }

  /** A held probe's passed keepalive at `at` (ms): its last-run and last-success times move, no run is counted. */
  checked(name: string, at: number): void {
    this.probes.checked(name, at);
  }

  skipped(spec: { name: string }): void {
    this.probes.skipped(spec.name);
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  /**
   * The last render of the probes' series: wall time (turns given to other work included) and the
   * render's own work, in ms. The scale benchmark reports them beside the whole /metrics time.
   */
  lastSeriesRender = { wallMs: 0, workMs: 0 };

  /** Renders the probes' series once, for nobody: the next render copies from it (call before runs start). */
  prime(): void {
    this.probes.recycle(this.probes.render());
  }

  /** Hands back a body of renderBytes once nothing reads it (sent, or compressed), for the next render to fill. */
  recycle(body: Buffer): void {
    this.probes.recycle(body);
  }

  /**
   * The exposition as bytes, for the HTTP server (at scale, tens of MB: no string in between). The
   * caller may give it back with recycle() when done with it.
   */
  async renderBytes(): Promise<Buffer> {
    const prefix = `${await this.prom.metrics()}\n`;
    const t = performance.now();
    const out = await this.probes.renderAsync(prefix);
    this.lastSeriesRender = { wallMs: performance.now() - t, workMs: this.probes.lastRenderWorkMs };
    return out;
  }
}
