import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * The command line of the built CLI: node itself, or under `ulimit -n fdLimit` (a shell that
 * execs node, so the child's pid is node's) to try the process with few file descriptors.
 */
function cliCommand(args: string[], fdLimit?: number): [string, string[]] {
  if (fdLimit === undefined) return [process.execPath, [CLI, ...args]];
  return ['/bin/sh', ['-c', `ulimit -n ${fdLimit} && exec "$@"`, 'sh', process.execPath, CLI, ...args]];
}

/**
 * Runs a command to completion, killing it after timeoutMs (then the error quotes the end of its
 * output). A command that cannot be started rejects at once.
 */
export function runCommand(
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number; label?: string } = {},
): Promise<CliResult> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      const label = opts.label ?? `${path.basename(cmd)} ${args.join(' ')}`;
      reject(new Error(`${label} did not end within ${timeoutMs}ms\n${stdout.slice(-2000)}\n${stderr.slice(-2000)}`));
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Runs the built CLI to completion, as a user would (the tests run after `npm run build`). */
export function runCli(args: string[], opts: { env?: Record<string, string>; cwd?: string; timeoutMs?: number; fdLimit?: number } = {}): Promise<CliResult> {
  return runCommand(...cliCommand(args, opts.fdLimit), {
    cwd: opts.cwd ?? ROOT,
    env: { ...process.env, FLEETPROBE_LOG_LEVEL: '', ...opts.env },
    timeoutMs: opts.timeoutMs ?? 20_000,
    label: `fleetprobe ${args.join(' ')}`,
  });
}

/** A daemon child process whose JSON log lines are collected as they arrive. */
export class DaemonProcess {
  readonly child: ChildProcess;
  lines: Record<string, unknown>[] = [];
  raw = '';
  private waiters: Array<() => void> = [];
  exit: Promise<number | null>;

  constructor(args: string[], env: Record<string, string> = {}, opts: { fdLimit?: number } = {}) {
    this.child = spawn(...cliCommand(['daemon', '--listen', '127.0.0.1:0', ...args], opts.fdLimit), {
      cwd: ROOT,
      env: { ...process.env, FLEETPROBE_LOG_LEVEL: '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let buf = '';
    const onData = (d: Buffer) => {
      this.raw += d;
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        try {
          this.lines.push(JSON.parse(line));
        } catch {
          /* not a log line (e.g. a crash trace); kept in raw */
        }
      }
      for (const w of this.waiters.splice(0)) w();
    };
    this.child.stdout!.on('data', onData);
    this.child.stderr!.on('data', onData);
    this.exit = new Promise((resolve) =>
      this.child.on('close', (code) => {
        for (const w of this.waiters.splice(0)) w();
        resolve(code);
      }),
    );
  }

  /** Waits for a log line matching the predicate. */
  async waitForLog(pred: (l: Record<string, any>) => boolean, timeoutMs = 15_000): Promise<Record<string, any>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.lines.find(pred);
      if (found) return found;
      if (Date.now() > deadline || this.child.exitCode !== null) throw new Error(`log line not seen within ${timeoutMs}ms; log so far:\n${this.raw}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, 200);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  async url(): Promise<string> {
    const l = await this.waitForLog((l) => typeof l.listen === 'string');
    return `http://${l.listen}`;
  }

  async controlUrl(): Promise<string> {
    const l = await this.waitForLog((l) => l.endpoints?.control);
    return l.endpoints.control as string;
  }

  async metrics(): Promise<string> {
    return (await fetch(`${await this.url()}/metrics`)).text();
  }

  /** Polls /metrics until `pred` holds. */
  async waitForMetrics(pred: (text: string) => boolean, timeoutMs = 15_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const text = await this.metrics();
      if (pred(text)) return text;
      if (Date.now() > deadline)
        throw new Error(
          `metrics condition not met within ${timeoutMs}ms:\n${text
            .split('\n')
            .filter((l) => l.startsWith('probe_') || l.startsWith('fleetprobe_'))
            .join('\n')}`,
        );
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  async stop(): Promise<number | null> {
    if (this.child.exitCode === null) this.child.kill('SIGTERM');
    return this.exit;
  }
}

/** The value of one series in exposition text, e.g. metricValue(text, 'probe_success', {probe: 'x'}). */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  return samples(text, name, labels).next().value;
}

/** The sum of every sample of `name` with these labels (e.g. a probe's failures over all reasons). */
export function metricSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const x of samples(text, name, labels)) sum += x;
  return sum;
}

/** The values of the samples of `name` whose lines carry these labels, in order. */
function* samples(text: string, name: string, labels: Record<string, string>): Generator<number, undefined> {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') && !line.startsWith(name + ' ')) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) yield Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

/** A probe's failed runs: every failure counts under one reason. */
export const failedRuns = (text: string, probe: string): number => metricSum(text, 'probe_failures_total', { probe });

/** A probe's passed runs: its completed runs (the latency histogram's count) less the failed ones. */
export const passedRuns = (text: string, probe: string): number => metricSum(text, 'probe_latency_seconds_count', { probe }) - failedRuns(text, probe);

export function tempDir(prefix = 'fleetprobe-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** A lab config with short intervals for tests. */
export function writeLabConfig(dir: string, probes: string, name = 'lab.yaml', defaults = 'interval: 1s\n  timeout: 800ms'): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, `lab: true\ndefaults:\n  ${defaults}\n  labels: { location: test }\nprobes:\n${probes}`);
  return file;
}

export const LAB_URL_PROBE = (name: string, extra = '') => `  - name: ${name}
    kind: http
    url: https://\${LAB_DEVICE_UUID}.\${LAB_URL_DOMAIN}:\${LAB_URL_FRONT_PORT}/health
    resolve: 127.0.0.1
    tls:
      caFile: \${LAB_CA_FILE}
    expect: { status: [200], body: ok }
${extra}`;

/** A tool on PATH (or /usr/sbin), when installed; under CI=true its absence is a failure, not a skip. */
export function toolPath(names: string | string[], debianPackage: string): string | undefined {
  // Some tools have another name in Debian (alertmanager is /usr/bin/prometheus-alertmanager).
  const list = typeof names === 'string' ? [names] : names;
  for (const name of list) {
    for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/sbin']) {
      const p = path.join(dir, name);
      if (dir && fs.existsSync(p)) return p;
    }
  }
  if (process.env.CI === 'true') throw new Error(`${list.join(' or ')} is required under CI=true (Debian package ${debianPackage})`);
  return undefined;
}

/** promtool, when installed; under CI=true its absence is a failure, not a skip. */
export function promtoolPath(): string | undefined {
  return toolPath('promtool', 'prometheus');
}

/** A port free on 127.0.0.1 right now, for servers that cannot listen on port 0 and report it (prometheus, alertmanager). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}
