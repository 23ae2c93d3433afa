// The daemon as a user runs it, for the benchmarks that measure it whole: `node dist/cli/main.js
// daemon --config FILE` in a process of its own, its CPU read from /proc/PID/stat (utime+stime) and
// its completed runs from its own /metrics. SIGHUP reloads the (rewritten) config file.
import path from 'node:path';
import { DIST, freePort, procCpuSeconds, sleep, startChild } from './lib.mjs';

/**
 * Starts `fleetprobe daemon` on `configFile`; resolves once /metrics answers. `nodeArgs` go to node
 * (e.g. `--cpu-prof`), `args` to the daemon.
 */
export async function startDaemonProcess({ configFile, nodeArgs = [], args = [], env = process.env, cwd = undefined }) {
  const port = await freePort();
  const proc = startChild(
    process.execPath,
    [...nodeArgs, path.join(DIST, 'cli/main.js'), 'daemon', '--config', configFile, '--listen', `127.0.0.1:${port}`, '--log-level', 'warn', ...args],
    { env, cwd },
  );
  const url = `http://127.0.0.1:${port}`;
  const metricsText = async () => (await fetch(`${url}/metrics`)).text();
  const until = Date.now() + 15_000;
  for (;;) {
    if (proc.child.exitCode !== null) throw new Error(`the daemon exited (${proc.child.exitCode}): ${proc.output()}`);
    try {
      await metricsText();
      break;
    } catch {
      if (Date.now() > until) throw new Error(`the daemon did not serve ${url}/metrics within 15 s: ${proc.output()}`);
      await sleep(100);
    }
  }
  return {
    proc,
    pid: proc.pid,
    url,
    metricsText,
    /** utime+stime of the daemon process so far, in seconds. */
    cpuSeconds: () => procCpuSeconds(proc.pid),
    /** SIGHUP: the daemon reloads its config files. */
    reload: () => proc.child.kill('SIGHUP'),
    stop: () => proc.stop(),
  };
}
