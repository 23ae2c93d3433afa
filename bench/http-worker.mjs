// The fleetprobe side of the HTTPS benchmark: a process of its own that runs `http` probes through
// runProbe and records each result exactly as the daemon does (metrics, status store, log), so its
// process.cpuUsage() is the daemon's cost per probe, without the scheduler's idle time.
import { dist, pool, quietLogger, serveWorker } from './lib.mjs';

const { runProbe } = await dist('core/run.js');
const { KINDS } = await dist('kinds/index.js');
const { loadConfig } = await dist('config/load.js');
const { Metrics } = await dist('metrics/metrics.js');
const { StatusStore } = await dist('daemon/status.js');
const { recordResult } = await dist('daemon/recorder.js');

const log = await quietLogger('info');
let specs = [];
let metrics;
let status;

serveWorker({
  /** Loads the probe file (one probe per concurrent lane, so each has its own series like a daemon's). */
  async load({ configFile }) {
    specs = loadConfig({ paths: [configFile] }).probes;
    metrics = new Metrics('bench', KINDS);
    status = new StatusStore();
    metrics.configure(specs);
    status.configure(specs);
    return specs.length;
  },
  /** n probes, `concurrency` at a time; returns CPU seconds and wall time of this process. */
  async round({ n, concurrency }) {
    let failures = 0;
    let firstFailure;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    await pool(n, concurrency, async (i) => {
      const spec = specs[i % specs.length];
      const r = await runProbe(spec, KINDS[spec.kind], { log });
      recordResult(r, { metrics, status, log });
      if (!r.success) {
        failures++;
        firstFailure ??= `${r.reason} in ${r.phase}: ${r.message}`;
      }
    });
    const wall = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    return { cpuSeconds: (cpu.user + cpu.system) / 1e6, wallSeconds: wall, failures, firstFailure };
  },
});
