// The fleetprobe side of the SSH benchmark: `ssh` probes (proxy mode) through runProbe, one at a
// time, in a process of its own; answers CPU (process.cpuUsage) and each run's latency.
import { dist, quietLogger, serveWorker } from './lib.mjs';

const { runProbe } = await dist('core/run.js');
const { KINDS } = await dist('kinds/index.js');
const { loadConfig } = await dist('config/load.js');
const log = await quietLogger('warn');
let spec;

serveWorker({
  async load({ configFile }) {
    [spec] = loadConfig({ paths: [configFile] }).probes;
    return spec.name;
  },
  async round({ n }) {
    const latencies = [];
    const cpu0 = process.cpuUsage();
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      const r = await runProbe(spec, KINDS.ssh, { log });
      latencies.push(performance.now() - t0);
      if (!r.success) throw new Error(`${r.reason} in ${r.phase}: ${r.message}`);
    }
    const cpu = process.cpuUsage(cpu0);
    return { cpuSeconds: (cpu.user + cpu.system) / 1e6, latencies };
  },
});
