// The daemon under the scale benchmark: startDaemon in this process (exactly what `fleetprobe
// daemon` runs), with its hooks observed: every scheduler lag, skip and result, the RSS each
// second and how long each /metrics render takes. The parent asks for these over IPC.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { dist, quietLogger, serveWorker } from './lib.mjs';

const { startDaemon } = await dist('daemon/daemon.js');
const log = await quietLogger('warn');
let daemon;
const lags = [];
const renders = [];
const seriesRenders = [];
// Each /metrics response: from the render's start to the body ready to send (compressed, for a
// scraper that asks for gzip), taken when the server gives the body back (Metrics.recycle).
const responses = [];
const counts = { skipped: 0, runs: 0, failures: 0 };
const failuresByKind = {};
let firstFailures = [];
let rssMax = 0;
let heapMax = 0;
let sampler;
// How late the event loop itself ran (blocking work, GC, or waiting for a CPU on a busy machine).
const eld = monitorEventLoopDelay({ resolution: 10 });
let cpu0;
let inFlightMax = 0;
let wall0;

function memory() {
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers };
}

serveWorker({
  async start({ configFile, concurrency, shard }) {
    const t0 = performance.now();
    // The scheduler adds random jitter (up to 1% of the interval, 600 ms at 60 s) on purpose, and
    // its lag metric counts from the slot before jitter. To measure how late runs start against
    // their planned time, the scheduler is built with jitter 0: it takes Math.random when it is
    // constructed, so it is swapped only for the duration of startDaemon.
    const random = Math.random;
    Math.random = () => 0;
    try {
      daemon = await startDaemon({ configPaths: [configFile], listen: '127.0.0.1:0', concurrency: concurrency ?? 64, graceMs: 5000, log, shard });
    } finally {
      Math.random = random;
    }
    const startMs = performance.now() - t0;
    const m = daemon.metrics;
    const observe = m.schedulerLag.observe.bind(m.schedulerLag);
    m.schedulerLag.observe = (v) => {
      lags.push(v * 1000);
      observe(v);
    };
    const skipped = m.skipped.bind(m);
    m.skipped = (spec) => {
      counts.skipped++;
      skipped(spec);
    };
    const record = m.record.bind(m);
    m.record = (r) => {
      counts.runs++;
      if (!r.success && !r.aborted) {
        counts.failures++;
        failuresByKind[r.kind] = (failuresByKind[r.kind] ?? 0) + 1;
        if (firstFailures.length < 5) firstFailures.push(`${r.name}: ${r.reason} in ${r.phase}: ${r.message}`);
      }
      record(r);
    };
    const render = m.renderBytes.bind(m);
    const started = new WeakMap();
    m.renderBytes = async () => {
      const t = performance.now();
      const out = await render();
      started.set(out.buffer, t);
      renders.push({ ms: performance.now() - t, bytes: out.length });
      // The probes' series alone, apart from the whole /metrics (which also awaits prom-client's
      // process metrics): wall time, turns given to other work included, and the render's own work.
      seriesRenders.push({ ...m.lastSeriesRender });
      return out;
    };
    const recycle = m.recycle.bind(m);
    m.recycle = (body) => {
      const t = started.get(body.buffer);
      if (t !== undefined) responses.push(performance.now() - t);
      recycle(body);
    };
    const setInFlight = m.inFlight.set.bind(m.inFlight);
    m.inFlight.set = (n) => {
      inFlightMax = Math.max(inFlightMax, n);
      setInFlight(n);
    };
    eld.enable();
    cpu0 = process.cpuUsage();
    wall0 = performance.now();
    sampler = setInterval(() => {
      const mem = memory();
      rssMax = Math.max(rssMax, mem.rss);
      heapMax = Math.max(heapMax, mem.heapUsed);
    }, 1000);
    return { url: daemon.url, startMs, memory: memory() };
  },
  /** Everything observed since the last call (lags in ms). */
  async stats() {
    const cpu = process.cpuUsage(cpu0);
    const cpuShare = (cpu.user + cpu.system) / 1000 / (performance.now() - wall0);
    const out = {
      lags: lags.splice(0),
      renders: renders.splice(0),
      seriesRenders: seriesRenders.splice(0),
      responses: responses.splice(0),
      counts: { ...counts },
      failuresByKind: { ...failuresByKind },
      firstFailures,
      rssMax,
      heapMax,
      memory: memory(),
      cpuShare,
      eventLoopDelayP99Ms: eld.percentile(99) / 1e6,
      eventLoopDelayMaxMs: eld.max / 1e6,
      inFlightMax,
    };
    return out;
  },
  /** Memory after full GCs (needs --expose-gc), for the idle per-probe cost. */
  async settledMemory() {
    for (let i = 0; i < 4; i++) {
      globalThis.gc?.();
      await new Promise((r) => setTimeout(r, 100));
    }
    return memory();
  },
  async close() {
    clearInterval(sampler);
    await daemon?.shutdown('bench over');
  },
});
