// Shared pieces of the benchmarks: free ports, child processes, CPU readings, statistics and the
// results file. Plain ESM run by node against the compiled dist/ (run `npm run build` first).
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// FLEETPROBE_DIST points the benchmarks at another build (e.g. of an older commit, for before/after).
export const DIST = process.env.FLEETPROBE_DIST ? path.resolve(process.env.FLEETPROBE_DIST) : path.join(ROOT, 'dist');
export const BENCH = path.join(ROOT, 'bench');

/** Imports a compiled module of fleetprobe (dist/...). */
export function dist(rel) {
  return import(path.join(DIST, rel));
}

export function tempDir(prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `fleetprobe-bench-${prefix}-`));
}

export async function freePort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', () => r(undefined)));
  const { port } = /** @type {import('node:net').AddressInfo} */ (s.address());
  await new Promise((r) => s.close(r));
  return port;
}

/** Resolves once something accepts TCP connections on 127.0.0.1:port. */
export async function waitForPort(port, timeoutMs = 10_000) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs}ms`);
    await sleep(50);
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

/** utime+stime of a process in seconds, from /proc/<pid>/stat (fields 14 and 15, in clock ticks). */
export function procCpuSeconds(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}
export const CPU_TICK_SECONDS = 1 / CLK_TCK;

/** Starts a long-lived child; `stop()` ends exactly that process (and waits for it). */
export function startChild(cmd, args, opts = {}) {
  const child = spawn(cmd, args, { stdio: opts.stdio ?? ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env, cwd: opts.cwd ?? ROOT });
  let output = '';
  child.stdout?.on('data', (d) => (output = (output + d).slice(-20_000)));
  child.stderr?.on('data', (d) => (output = (output + d).slice(-20_000)));
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return {
    child,
    pid: child.pid,
    output: () => output,
    exited,
    /** @param {NodeJS.Signals} [signal] */
    async stop(signal = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** A node child with an IPC channel; `call(msg)` sends a request and resolves with its answer. */
export function startWorker(script, args = [], opts = {}) {
  const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), script, ...args], {
    stdio: ['ignore', opts.stdout ?? 'ignore', 'inherit', 'ipc'],
    cwd: ROOT,
    env: opts.env ?? process.env,
  });
  const pending = new Map();
  let seq = 0;
  child.on('message', (/** @type {any} */ m) => {
    const p = pending.get(m.id);
    if (!p) return;
    pending.delete(m.id);
    if (m.error) p.reject(new Error(m.error));
    else p.resolve(m.result);
  });
  const exited = new Promise((resolve) =>
    child.once('exit', (code, signal) => {
      for (const p of pending.values()) p.reject(new Error(`worker ${path.basename(script)} exited (${code ?? signal})`));
      pending.clear();
      resolve({ code, signal });
    }),
  );
  return {
    child,
    pid: child.pid,
    call(msg) {
      const id = ++seq;
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject });
        child.send({ ...msg, id });
      });
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** The worker side of startWorker: `handlers[msg.op](msg)` answers each request. */
export function serveWorker(handlers) {
  process.on('message', async (/** @type {any} */ msg) => {
    try {
      const result = await handlers[msg.op](msg);
      process.send({ id: msg.id, result });
    } catch (err) {
      process.send({ id: msg.id, error: String(err?.stack ?? err) });
    }
  });
  process.on('SIGTERM', async () => {
    await handlers.close?.();
    process.exit(0);
  });
  process.on('disconnect', () => process.exit(0));
}

/** Runs `task(i)` for i in [0, n) with at most `concurrency` at once. */
export async function pool(n, concurrency, task) {
  let next = 0;
  const lane = async () => {
    while (next < n) await task(next++);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, lane));
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Nearest-rank percentile (p in 0..100). */
export function percentile(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  if (!s.length) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

/** Sum of a family's samples in /metrics text, every label set (e.g. a counter over all probes). */
export function sumSamples(text, family) {
  let sum = 0;
  for (const line of text.split('\n')) if (line.startsWith(`${family}{`) || line.startsWith(`${family} `)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  return sum;
}

export const fmt = (x, digits = 2) => (Number.isFinite(x) ? x.toFixed(digits) : String(x));

/** What the machine is and what else is running on it, for the results file. */
export function machine() {
  const cpu = os.cpus()[0]?.model?.trim() ?? 'unknown';
  return { nproc: os.availableParallelism?.() ?? os.cpus().length, cpu, node: process.version, kernel: os.release() };
}

/** Load average and the busiest other processes right now: the noise a run shared the machine with. */
export function neighbours() {
  let top = [];
  try {
    top = execFileSync('ps', ['-eo', 'pcpu,comm,args', '--sort=-pcpu', '--no-headers'], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.trim() && !l.includes(' ps -eo'))
      .slice(0, 6)
      .map((l) => l.trim().replace(/\s+/g, ' ').slice(0, 110));
  } catch {
    /* ps missing: report the load average alone */
  }
  return {
    loadavg: os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' '),
    top,
  };
}

/** Every benchmark's latest result lives in results.json; RESULTS.md is rendered from it. */
const RESULTS_JSON = path.join(BENCH, 'results.json');
export function saveResult(name, result) {
  const all = fs.existsSync(RESULTS_JSON) ? JSON.parse(fs.readFileSync(RESULTS_JSON, 'utf8')) : {};
  all[name] = { ...result, date: new Date().toISOString(), machine: machine() };
  fs.writeFileSync(RESULTS_JSON, JSON.stringify(all, null, 2) + '\n');
  return all;
}
export function loadResults() {
  return fs.existsSync(RESULTS_JSON) ? JSON.parse(fs.readFileSync(RESULTS_JSON, 'utf8')) : {};
}

/** A silent logger shaped like the daemon's (same hooks and serializers), so per-run costs are real. */
export async function quietLogger(level = 'info') {
  const { createLogger } = await dist('core/log.js');
  return createLogger({ level, pretty: false, fd: 1 });
}
