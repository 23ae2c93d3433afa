import type http from 'node:http';
import type { Logger } from 'pino';
import { loadConfig, type LoadedConfig } from '../config/load.js';
import { ConfigError } from '../core/errors.js';
import { collectGarbage } from './collect-garbage.js';
import { DEFAULT_HISTORY_LIMITS, RunHistory, type HistoryLimits } from './history.js';
import { HeldProbes, isHeld } from './hold.js';
import { runProbe } from '../core/run.js';
import { KINDS } from '../kinds/index.js';
import type { Lab } from '../lab/index.js';
import { Metrics } from '../metrics/metrics.js';
import { recordResult } from './recorder.js';
import { Scheduler } from './scheduler.js';
import { noProbesError } from './no-probes.js';
import { NO_SHARD, ownedBy, type Shard } from './shard.js';
import { createServer, listen } from './server.js';
import { ProbeStates } from './probe-states.js';
import { StatusStore } from './status.js';
import { VERSION } from '../core/version.js';

export interface DaemonOptions {
  configPaths: string[];
  listen: string;
  concurrency: number;
  /** Open connections the HTTP server accepts at most (`--max-connections`). */
  maxConnections?: number;
  graceMs: number;
  log: Logger;
  lab?: Lab;
  /** Run only this shard's probes (`--shard i/n`); all of them when absent. */
  shard?: Shard;
  /** Runs and failures kept per probe (`--history N`); DEFAULT_HISTORY_LIMITS when absent. */
  history?: HistoryLimits;
}

export interface Daemon {
  url: string;
  metrics: Metrics;
  status: StatusStore;
  reload(): boolean;
  shutdown(reason: string): Promise<void>;
}

/**
 * Wires config, scheduler, metrics and the HTTP server. An invalid config at start throws (the CLI
 * refuses to start); an invalid reload keeps the running config and flags it in a metric.
 *
 * long: the wiring of one daemon (config, scheduler, holds, metrics, status, server, reload, shutdown) in one place, read top to bottom; each part lives in its own file.
 */
export async function startDaemon(opts: DaemonOptions): Promise<Daemon> {
  const { log } = opts;
  const shard = opts.shard ?? NO_SHARD;
  // Sharding applies after loading, so every replica validates the whole configuration alike.
  let total = 0;
  const load = (): LoadedConfig => {
    const all = loadConfig({ paths: opts.configPaths, lab: Boolean(opts.lab), vars: opts.lab?.vars });
    total = all.probes.length;
    const probes = ownedBy(all.probes, shard);
    if (shard.count > 1)
      log.info(
        { shard: `${shard.index}/${shard.count}`, probes: probes.length, total: all.probes.length },
        `shard ${shard.index}/${shard.count}: running ${probes.length} of ${all.probes.length} probes`,
      );
    // The parse's garbage goes now, not on top of the runs' (collect-garbage.ts).
    collectGarbage();
    return { ...all, probes };
  };
  const config = load();
  for (const f of config.skippedLabFiles) log.info({ file: f }, `skipped ${f}: it describes the embedded lab (lab: true); start with --lab to use it`);
  if (total === 0) throw noProbesError(opts.configPaths, { skippedLabFiles: config.skippedLabFiles });
  // Other shards may own them all (a few probes over many replicas).
  if (config.probes.length === 0) log.warn({ paths: opts.configPaths, shard: `${shard.index}/${shard.count}` }, 'no probes in this shard');

  const metrics = new Metrics(VERSION, KINDS, log);
  metrics.shardIndex.set(shard.index);
  metrics.shardCount.set(shard.count);
  // Each probe's memory between runs (ProbeContext.state), dropped when a reload changes the probe.
  const states = new ProbeStates();
  const status = new StatusStore(new RunHistory(opts.history ?? DEFAULT_HISTORY_LIMITS, (kind) => KINDS[kind].phases));
  let shuttingDown = false;

  const scheduler = new Scheduler({
    concurrency: opts.concurrency,
    log,
    hooks: {
      run: async (spec, shutdown) => {
        // A companion that has not run yet (just after start or a reload: each probe waits for its
        // own offset) is run once now, so the reader compares against a fresh result instead of
        // failing for our own scheduling. Its result is recorded like any other run.
        for (const { probe } of KINDS[spec.kind].companions?.(spec.config as never) ?? []) {
          const companionSpec = specsByName.get(probe);
          if (companionSpec && !status.get(probe)?.last) {
            recordResult(await runProbe(companionSpec, KINDS[companionSpec.kind], { shutdown, log, state: states.for(companionSpec) }), {
              metrics,
              status,
              log,
            });
          }
        }
        const result = await runProbe(spec, KINDS[spec.kind], { shutdown, log, companion: (name) => status.companion(name), state: states.for(spec) });
        recordResult(result, { metrics, status, log });
      },
      onSkip: (spec) => metrics.skipped(spec),
      onStart: (_spec, lag) => metrics.schedulerLag.observe(lag),
      onInFlight: (n) => metrics.inFlight.set(n),
    },
  });

  // Held probes (e.g. a tunnel kept open) run as one long-lived task each instead of on a schedule.
  const held = new HeldProbes({
    kinds: KINDS,
    log,
    record: (result) => recordResult(result, { metrics, status, log }),
    observe: (spec, observations) => metrics.observe(spec.name, observations),
    checked: (spec, at) => metrics.checked(spec.name, at),
  });

  let specsByName = new Map<string, LoadedConfig['probes'][number]>();
  const apply = (c: LoadedConfig, { start = false } = {}) => {
    specsByName = new Map(c.probes.map((p) => [p.name, p]));
    metrics.configure(c.probes);
    // The first /metrics render formats every probe and warms its code: at the start, before any
    // run is due, not in the first scrape (at 11,500 probes, 100+ ms in the middle of the first runs).
    if (start) metrics.prime();
    status.configure(c.probes);
    states.retain(c.probes);
    scheduler.update(c.probes.filter((s) => !isHeld(s, KINDS)));
    held.update(c.probes.filter((s) => isHeld(s, KINDS)));
    metrics.reloadSuccessful.set(1);
    metrics.reloadTimestamp.set(Date.now() / 1000);
  };
  // The port first: a port in use fails the start before any tunnel is held or probe runs (and
  // /ready says not ready until the scheduler runs).
  const server: http.Server = createServer({
    metrics,
    status,
    log,
    maxConnections: opts.maxConnections,
    state: { ready: () => !shuttingDown && scheduler.isRunning },
  });
  const addr = await listen(server, opts.listen);
  apply(config, { start: true });
  const host = addr.host.includes(':') ? `[${addr.host}]` : addr.host;
  const url = `http://${host === '0.0.0.0' || host === '[::]' ? '127.0.0.1' : host}:${addr.port}`;
  log.info(
    { listen: `${addr.host}:${addr.port}`, probes: config.probes.length, version: VERSION },
    `fleetprobe ${VERSION} running ${config.probes.length} probes; metrics at ${url}/metrics`,
  );

  const reload = (): boolean => {
    try {
      const next = load();
      apply(next);
      log.info({ probes: next.probes.length }, `configuration reloaded: ${next.probes.length} probes`);
      return true;
    } catch (err) {
      metrics.reloadSuccessful.set(0);
      const detail = err instanceof ConfigError ? err.message : String(err);
      log.error({ err }, `configuration reload failed; keeping the running configuration\n${detail}`);
      return false;
    }
  };

  const shutdown = async (reason: string) => {
    if (shuttingDown) return;
    shuttingDown = true;
    log.info({ reason }, `shutting down (${reason}): aborting runs in flight`);
    const [drained] = await Promise.all([scheduler.stop(opts.graceMs), held.stop(opts.graceMs)]);
    if (!drained) log.warn({ graceMs: opts.graceMs }, 'runs still in flight after the grace period');
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await opts.lab?.close();
    log.info('stopped');
  };

  return { url, metrics, status, reload, shutdown };
}
