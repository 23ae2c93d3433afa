import fs from 'node:fs';
import path from 'node:path';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { nextDue } from '../../src/daemon/scheduler.js';
import { DaemonProcess, LAB_URL_PROBE, metricValue, ROOT, tempDir, writeLabConfig } from '../helpers/cli.js';

/**
 * SIGTERM while runs are in flight: the daemon exits 0 within its grace period, leaves no child
 * process and no listening socket (its own or the lab's), and its log ends with every aborted run
 * and `stopped`.
 *
 * A kind joins with a row: lab probes of that kind that are mid-run when the signal comes (a lab
 * fault that makes them hang). All rows run in one daemon, so every kind is mid-run at once.
 */

interface ShutdownRow {
  kind: string;
  /** Lab probes (YAML list items) by name, each of which is still running when SIGTERM arrives. */
  probes: (name: string) => string;
  count: number;
  labFaults: string[];
}

const lab = (name: string) => `\${${name}}`;
const ROWS: ShutdownRow[] = [
  { kind: 'http', probes: (n) => LAB_URL_PROBE(n), count: 2, labFaults: ['slow-url'] },
  {
    kind: 'ssh',
    // device-slow: the device waits 30 s before it starts the session (its own limit, 14 s like the
    // other rows' steps, keeps it in flight until every row's run has started).
    probes: (n) => `  - name: ${n}
    kind: ssh
    sshProxy: 127.0.0.1:${lab('LAB_SSH_PROXY_PORT')}
    user: ${lab('LAB_SSH_USER')}
    sshKey: { file: "${lab('LAB_SSH_KEY_FILE')}" }
    hostKeys: ${lab('LAB_SSH_PROXY_FINGERPRINT')}
    device: ${lab('LAB_DEVICE_UUID')}
    command: cat /etc/os-release
    expect: { stdout: balenaOS }
    timeouts: { session: 14s }
`,
    count: 2,
    labFaults: ['device-slow'],
  },
  {
    kind: 'tunnel',
    // tunnel-slow-connect: the proxy waits 30 s before answering CONNECT.
    probes: (n) => `  - name: ${n}
    kind: tunnel
    tunnel: 127.0.0.1:${lab('LAB_TUNNEL_PORT')}
    tunnelTls: { caFile: "${lab('LAB_CA_FILE')}", serverName: "${lab('LAB_TUNNEL_HOST')}" }
    user: probe-bot
    token: { file: "${lab('LAB_TUNNEL_TOKEN_FILE')}" }
    device: ${lab('LAB_DEVICE_UUID')}
    port: 80
    stepTimeout: 14s
`,
    count: 2,
    labFaults: ['tunnel-slow-connect'],
  },
  {
    kind: 'build',
    // build-stall: the builder goes silent after the first log lines, holding the connection.
    probes: (n) => `  - name: ${n}
    kind: build
    fleet: lab/probe-fleet
    builder: ${lab('LAB_BUILDER_URL')}
    api: ${lab('LAB_API_URL')}
    token: { file: "${lab('LAB_BUILDER_TOKEN_FILE')}" }
    context: ${JSON.stringify(path.join(ROOT, 'probes', 'build-context'))}
    stallTimeout: 14s
    tls: { caFile: "${lab('LAB_CA_FILE')}" }
`,
    count: 2,
    labFaults: ['build-stall'],
  },
  {
    kind: 'device-status',
    // tunnel-slow-connect: its own tunnel check waits 30 s for the proxy's answer.
    probes: (n) => `  - name: ${n}
    kind: device-status
    api: ${lab('LAB_API_URL')}
    tls: { caFile: "${lab('LAB_CA_FILE')}" }
    token: { file: "${lab('LAB_BUILDER_TOKEN_FILE')}" }
    tunnel: 127.0.0.1:${lab('LAB_TUNNEL_PORT')}
    tunnelTls: { caFile: "${lab('LAB_CA_FILE')}", serverName: "${lab('LAB_TUNNEL_HOST')}" }
    device: ${lab('LAB_DEVICE3_UUID')}
    stepTimeout: 14s
`,
    count: 2,
    labFaults: ['tunnel-slow-connect'],
  },
];

const INTERVAL_MS = 20_000;

/**
 * Probe names whose first run comes 8-13 s from now: runs start at hash-staggered points of their
 * interval, so names are picked for a start soon after the daemon is up (its lab takes seconds on a
 * loaded machine) rather than waiting up to a whole interval; the 5 s spread is well inside the
 * 14 s the stuck runs last, so all are in flight together.
 */
function namesStartingSoon(prefix: string, count: number): string[] {
  const names: string[] = [];
  const now = Date.now();
  for (let i = 0; names.length < count; i++) {
    const name = `${prefix}-${i}`;
    const due = nextDue({ name, intervalMs: INTERVAL_MS }, now + 8000);
    if (due - now < 13_000) names.push(name);
  }
  return names;
}

const GRACE_MS = 3000;

let daemon: DaemonProcess | undefined;
afterEach(async () => {
  if (daemon?.child.exitCode === null) daemon.child.kill('SIGKILL');
  daemon = undefined;
});

/** Pids whose parent is `pid` (Linux /proc). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      // The command may hold spaces and parens: the fields after the last ')' are fixed.
      const stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(e));
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
}

describe('SIGTERM during runs', () => {
  it(`${ROWS.map((r) => r.kind).join(', ')} runs in flight: exits 0 within the grace period, leaves nothing behind, logs the aborted runs`, async () => {
    // One daemon for every row: the runs of all kinds are in flight together when the signal comes.
    const dir = tempDir();
    const names = namesStartingSoon(
      'stuck',
      ROWS.reduce((n, r) => n + r.count, 0),
    );
    let at = 0;
    const yaml = ROWS.flatMap((r) => names.slice(at, (at += r.count)).map(r.probes)).join('');
    writeLabConfig(dir, yaml, 'lab.yaml', `interval: ${INTERVAL_MS / 1000}s\n  timeout: 15s`);
    const faults = ROWS.flatMap((r) => r.labFaults).join(',');
    daemon = new DaemonProcess(['--lab', '--lab-fault', faults, '--config', dir, '--grace', `${GRACE_MS}ms`, '--log-level', 'debug']);
    const base = await daemon.url();
    const endpoints = (await daemon.waitForLog((l) => l.endpoints?.control)).endpoints as Record<string, string>;
    // Every probe's first run comes within a few seconds (names picked for it) and then hangs.
    await daemon.waitForMetrics((t) => metricValue(t, 'fleetprobe_runs_in_flight') === names.length, 25_000);

    const pid = daemon.child.pid!;
    const children = childrenOf(pid);
    const ports = [new URL(base).port, ...Object.values(endpoints).map((u) => new URL(u).port)].map(Number);

    const t0 = Date.now();
    daemon.child.kill('SIGTERM');
    expect(await daemon.exit).toBe(0);
    expect(Date.now() - t0).toBeLessThan(GRACE_MS);

    for (const c of children) expect(alive(c), `child ${c} of the daemon`).toBe(false);
    for (const p of ports) expect(await refused(p), `port ${p} still accepts connections`).toBe(true);

    // The last results are in the log: one aborted line per run in flight, then `stopped`.
    const aborted = daemon.lines.filter((l: any) => /aborted by shutdown/.test(String(l.msg)) && l.result?.aborted === true).map((l: any) => l.probe);
    expect(aborted.sort()).toEqual([...names].sort());
    expect(daemon.lines.at(-1)?.msg).toBe('stopped');
    // No run was counted as a failure on the way out.
    expect(daemon.lines.filter((l: any) => l.result && l.result.success === false && !l.result.aborted)).toEqual([]);
  }, 60_000);
});
