import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProbeSpec } from '../../src/core/kind.js';
import type { RunResult } from '../../src/core/result.js';
import { runProbe } from '../../src/core/run.js';
import { tunnelKind } from '../../src/kinds/tunnel.js';
import { startLab, type Lab } from '../../src/lab/index.js';
import { tempDir } from '../helpers/cli.js';
import { closedPort } from '../helpers/http-peers.js';

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
const log = pino({ level: 'silent' });
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

describe.skipIf(!TINYPROXY)('tunnel kind through stock tinyproxy', () => {
  let lab: Lab;
  let proxy: ChildProcess;
  let proxyPort: number;
  let sshPort: number;
  let httpPort: number;
  let refusedPort: number;

  beforeAll(async () => {
    lab = await startLab();
    sshPort = Number(lab.vars.LAB_SSH_DEVICE3_PORT);
    httpPort = lab.devices[0].httpPort;
    refusedPort = await closedPort();
    proxyPort = await closedPort();
    const dir = tempDir('fleetprobe-tinyproxy-');
    const conf = path.join(dir, 'tinyproxy.conf');
    fs.writeFileSync(
      conf,
      [
        `Port ${proxyPort}`,
        'Listen 127.0.0.1',
        `PidFile "${path.join(dir, 'tp.pid')}"`,
        'LogLevel Critical',
        'Timeout 10',
        `BasicAuth ${USER} ${PASSWORD}`,
        `ConnectPort ${sshPort}`,
        `ConnectPort ${httpPort}`,
        `ConnectPort ${refusedPort}`,
        '',
      ].join('\n'),
    );
    proxy = spawn(TINYPROXY!, ['-d', '-c', conf], { stdio: 'ignore' });
    await waitForPort(proxyPort, proxy);
  });

  afterAll(async () => {
    if (proxy && proxy.exitCode === null) {
      proxy.kill('SIGTERM');
      await new Promise((r) => proxy.once('exit', r));
    }
    await lab?.close();
  });

  function run(fields: Record<string, unknown>): Promise<RunResult> {
    const spec: ProbeSpec = {
      name: 'tinyproxy-interop',
      kind: 'tunnel',
      intervalMs: 60_000,
      timeoutMs: 5000,
      labels: {},
      source: { file: 'test/interop/tunnel-tinyproxy.test.ts' },
      config: tunnelKind.schema.parse({
        tunnel: `127.0.0.1:${proxyPort}`,
        tunnelTls: false,
        user: USER,
        token: { env: 'FP_INTEROP_TINYPROXY_GOOD' },
        ...fields,
      }),
      digest: 'test',
    };
    return runProbe(spec, tunnelKind, { log });
  }

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
