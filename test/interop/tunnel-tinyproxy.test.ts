import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunResult } from '../../src/core/result.js';
import { tunnelKind } from '../../src/kinds/tunnel.js';
import { startLab, type Lab } from '../../src/lab/index.js';
import { tempDir } from '../helpers/cli.js';
import { closedPort, freePort } from '../helpers/http-peers.js';
import { runKindOnce } from '../helpers/run-kind.js';

/**
 * The tunnel kind against stock Debian tinyproxy (BasicAuth, ConnectPort), plain TCP on loopback,
 * reaching the lab's devices: a generic CONNECT proxy answers differently from the platform's
 * (401 for bad credentials, "Connection established", 500 "Unable to connect"), and the probe must
 * read it by meaning.
 */

function tinyproxyPath(): string | undefined {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/bin', '/usr/sbin']) {
    const p = path.join(dir, 'tinyproxy');
    if (dir && fs.existsSync(p)) return p;
  }
  if (process.env.CI === 'true') throw new Error('tinyproxy is required under CI=true (Debian package tinyproxy)');
  return undefined;
}

const TINYPROXY = tinyproxyPath();
const USER = 'probe-bot';
const PASSWORD = 'tinyproxy-pass-7c1e0b';
process.env.FP_INTEROP_TINYPROXY_GOOD = PASSWORD;
process.env.FP_INTEROP_TINYPROXY_BAD = 'not-the-password';

async function waitForPort(port: number, child: ChildProcess, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  const net = await import('node:net');
  for (;;) {
    if (child.exitCode !== null) throw new Error(`tinyproxy exited with ${child.exitCode}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`tinyproxy did not listen on ${port} within ${ms}ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Stock tinyproxy on a free port with BasicAuth and these extra config lines; stop() ends it. */
async function startTinyproxy(extra: string[]): Promise<{ port: number; stop(): Promise<void> }> {
  const port = await freePort();
  const dir = tempDir('fleetprobe-tinyproxy-');
  const conf = path.join(dir, 'tinyproxy.conf');
  fs.writeFileSync(
    conf,
    [
      `Port ${port}`,
      'Listen 127.0.0.1',
      `PidFile "${path.join(dir, 'tp.pid')}"`,
      'LogLevel Critical',
      'Timeout 10',
      `BasicAuth ${USER} ${PASSWORD}`,
      ...extra,
      '',
    ].join('\n'),
  );
  const child = spawn(TINYPROXY!, ['-d', '-c', conf], { stdio: 'ignore' });
  await waitForPort(port, child);
  return {
    port,
    stop: async () => {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}

/** One tunnel probe run through tinyproxy on `port`, with the good password unless `fields` say otherwise. */
function runVia(port: number, fields: Record<string, unknown>, timeoutMs = 5000): Promise<RunResult> {
  const proxy = { tunnel: `127.0.0.1:${port}`, tunnelTls: false, user: USER, token: { env: 'FP_INTEROP_TINYPROXY_GOOD' } };
  return runKindOnce(tunnelKind, { ...proxy, ...fields }, { name: 'tinyproxy-interop', timeoutMs });
}

describe.skipIf(!TINYPROXY)('tunnel kind through stock tinyproxy', () => {
  let lab: Lab;
  let proxy: Awaited<ReturnType<typeof startTinyproxy>>;
  let sshPort: number;
  let httpPort: number;
  let refusedPort: number;

  beforeAll(async () => {
    lab = await startLab();
    sshPort = Number(lab.vars.LAB_SSH_DEVICE3_PORT);
    httpPort = lab.devices[0].httpPort;
    refusedPort = await closedPort();
    proxy = await startTinyproxy([`ConnectPort ${sshPort}`, `ConnectPort ${httpPort}`, `ConnectPort ${refusedPort}`]);
  });

  afterAll(async () => {
    await proxy?.stop();
    await lab?.close();
  });

  const run = (fields: Record<string, unknown>): Promise<RunResult> => runVia(proxy.port, fields);

  it('a good token reaches the lab device SSH server: its banner', async () => {
    const r = await run({ target: `127.0.0.1:${sshPort}`, expect: { banner: '^SSH-2\\.0-' } });
    expect({ success: r.success, reason: r.reason, phase: r.phase }, JSON.stringify(r)).toEqual({ success: true, reason: null, phase: null });
    expect(Object.keys(r.phases)).toEqual(['resolve', 'connect', 'proxy_connect', 'target']);
  });

  it('a good token carries an HTTP request to the lab device', async () => {
    const r = await run({ target: `127.0.0.1:${httpPort}`, http: { path: '/health', expect: { status: [200], body: 'ok ' } } });
    expect(r.success, JSON.stringify(r)).toBe(true);
  });

  it('a bad token fails as auth: tinyproxy answers 401, not 407', async () => {
    const r = await run({ target: `127.0.0.1:${sshPort}`, token: { env: 'FP_INTEROP_TINYPROXY_BAD' } });
    expect({ success: r.success, reason: r.reason, phase: r.phase }).toEqual({ success: false, reason: 'auth', phase: 'proxy_connect' });
    expect(r.message).toContain('HTTP 401');
    expect(r.message).not.toContain(PASSWORD);
  });

  it('an allowed port nothing listens on: tinyproxy 500 is device_offline', async () => {
    const r = await run({ target: `127.0.0.1:${refusedPort}`, expect: { banner: '.' } });
    expect({ success: r.success, reason: r.reason, phase: r.phase }).toEqual({ success: false, reason: 'device_offline', phase: 'proxy_connect' });
    expect(r.message).toContain('HTTP 500');
    expect(r.message).toContain('port refused or device unreachable');
  });
});

describe.skipIf(!TINYPROXY)('tunnel sessions through stock tinyproxy with MaxClients 2: it queues the rest', () => {
  let lab: Lab;
  let proxy: Awaited<ReturnType<typeof startTinyproxy>>;
  let sshPort: number;

  beforeAll(async () => {
    lab = await startLab();
    sshPort = Number(lab.vars.LAB_SSH_DEVICE3_PORT);
    // Past MaxClients tinyproxy stops accepting: the kernel completes the TCP handshake, the
    // CONNECT waits unanswered until a slot frees. Nothing is refused; only the wait tells.
    proxy = await startTinyproxy([`ConnectPort ${sshPort}`, 'MaxClients 2']);
  });
  afterAll(async () => {
    await proxy?.stop();
    await lab?.close();
  });

  const probe = (extra: Record<string, unknown>) => ({
    target: `127.0.0.1:${sshPort}`,
    expect: { banner: '^SSH-2\\.0-' },
    stepTimeout: '1s',
    maxLatency: { proxy_connect: '500ms' },
    ...extra,
  });

  it('sessions: 1 passes', async () => {
    const r = await runVia(proxy.port, probe({ sessions: 1 }));
    expect({ success: r.success, reason: r.reason, phase: r.phase }, JSON.stringify(r)).toEqual({ success: true, reason: null, phase: null });
  });

  it('sessions: 8 fails: two tunnels open, six wait out their step limit; the count and the proxy_connect p95 are in the message', async () => {
    const r = await runVia(proxy.port, probe({ sessions: 8 }));
    expect({ success: r.success, reason: r.reason, phase: r.phase }, JSON.stringify(r)).toEqual({ success: false, reason: 'timeout', phase: 'proxy_connect' });
    expect(r.message).toContain('6 of 8 sessions failed (success ratio 0.25 < 1; timeout x6)');
    expect(r.message).toMatch(/proxy_connect p95 1\.\d+s > maxLatency 500ms \(8 sessions: /);
    expect(r.observations['tunnel_session_failures.timeout']).toBe(6);
    expect(r.observations.tunnel_sessions_success_ratio).toBe(0.25);
  });

  it('sessions: 8 with minSuccessRatio 0 still fails on latency: a queue is a latency failure', async () => {
    const r = await runVia(proxy.port, probe({ sessions: 8, minSuccessRatio: 0 }));
    expect({ success: r.success, reason: r.reason, phase: r.phase }, JSON.stringify(r)).toEqual({ success: false, reason: 'timeout', phase: 'proxy_connect' });
    expect(r.message).toMatch(/^proxy_connect p95 1\.\d+s > maxLatency 500ms \(8 sessions: p50 /);
  });
});
