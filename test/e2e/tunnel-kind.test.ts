import fs from 'node:fs';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import ssh2 from 'ssh2';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ProbeSpec } from '../../src/core/kind.js';
import type { RunResult } from '../../src/core/result.js';
import { runProbe } from '../../src/core/run.js';
import { tunnelKind } from '../../src/kinds/tunnel.js';
import { startLab, type Lab } from '../../src/lab/index.js';
import { connectPeer, rawPeer, type Peer } from '../helpers/http-peers.js';

/**
 * The tunnel kind through runProbe (what the daemon does) against the lab's TLS tunnel proxy and
 * against raw TCP "proxies" that answer the ways real ones do and the ways broken ones do.
 */

const log = pino({ level: 'silent' });
const CANARY = 'canary-tunnel-token-5f1d9e';
process.env.FP_TEST_TUNNEL_TOKEN = CANARY;
const UUID = 'c0ffee00000000000000000000000002';

type Fields = Record<string, unknown>;

function runTunnel(fields: Fields, timeoutMs = 3000): Promise<RunResult> {
  const spec: ProbeSpec = {
    name: 'tunnel-e2e',
    kind: 'tunnel',
    intervalMs: 60_000,
    timeoutMs,
    labels: {},
    source: { file: 'test/e2e/tunnel-kind.test.ts' },
    config: tunnelKind.schema.parse(fields),
    digest: 'test',
  };
  return runProbe(spec, tunnelKind, { log });
}

function expectOutcome(r: RunResult, success: boolean, reason: string | null, phase: string | null, ...message: (string | RegExp)[]): void {
  expect({ success: r.success, reason: r.reason, phase: r.phase }, JSON.stringify(r)).toEqual({ success, reason, phase });
  for (const m of message) {
    if (typeof m === 'string') expect(r.message).toContain(m);
    else expect(r.message).toMatch(m);
  }
  // The token never leaves the process, in any form.
  const text = JSON.stringify(r);
  expect(text).not.toContain(CANARY);
  expect(text).not.toContain(Buffer.from(CANARY).toString('base64'));
}

/** A server that says `banner` on connect and answers `ping` lines with `pong`. */
async function deviceService(banner?: string): Promise<Peer> {
  return rawPeer((s) => {
    if (banner) s.write(banner);
    s.on('data', (d) => {
      if (d.toString().includes('ping')) s.write('pong\n');
    });
  });
}

describe('tunnel kind against the lab tunnel proxy', () => {
  let lab: Lab;
  let sshLike: Peer;
  let quiet: Peer;

  beforeAll(async () => {
    lab = await startLab();
    sshLike = await deviceService('SSH-2.0-OpenSSH_9.2p1 fleetprobe-lab\r\n');
    quiet = await deviceService();
    // Any lab part (or test) can give a device a port: the proxy routes by one table.
    lab.tunnelRoutes.add(UUID, 22222, { port: sshLike.port });
    lab.tunnelRoutes.add(UUID, 7, { port: quiet.port });
  });
  afterAll(async () => {
    await sshLike?.close();
    await quiet?.close();
    await lab?.close();
  });
  afterEach(() => {
    for (const f of lab.faults.active()) lab.faults.set(f, false);
  });

  const viaLab = (extra: Fields = {}): Fields => ({
    tunnel: `127.0.0.1:${lab.vars.LAB_TUNNEL_PORT}`,
    tunnelTls: { caFile: lab.caFile, serverName: lab.vars.LAB_TUNNEL_HOST },
    user: 'probe-bot',
    token: { file: lab.vars.LAB_TUNNEL_TOKEN_FILE },
    device: UUID,
    ...extra,
  });
  const sshTo = (over: Fields = {}): Fields => ({
    device: lab.vars.LAB_DEVICE3_UUID,
    port: 22222,
    ssh: {
      sshKey: { file: lab.vars.LAB_SSH_KEY_FILE },
      hostKeys: { file: lab.vars.LAB_SSH_KNOWN_HOSTS },
      hostKeyAlias: `127.0.0.1:${lab.vars.LAB_SSH_DEVICE3_PORT}`,
      command: 'cat /etc/os-release',
      expect: { stdout: 'balenaOS' },
      ...over,
    },
  });
  const http = { port: 80, http: { path: '/health', expect: { status: [200], body: `ok ${UUID}` } } };
  const banner = { port: 22222, expect: { banner: '^SSH-2\\.0-' } };

  interface Case {
    name: string;
    faults?: string[];
    fields: () => Fields;
    timeoutMs?: number;
    want: [boolean, string | null, string | null, ...(string | RegExp)[]];
  }
  const cases: Case[] = [
    { name: 'HTTP through the tunnel to the device', fields: () => viaLab(http), want: [true, null, null] },
    { name: 'SSH banner through the tunnel', fields: () => viaLab(banner), want: [true, null, null] },
    {
      name: 'send/expect steps',
      fields: () =>
        viaLab({
          port: 7,
          steps: [
            { send: 'ping\n', expect: '^pong' },
            { send: 'ping\n', expect: 'pong' },
          ],
        }),
      want: [true, null, null],
    },
    { name: "a whole SSH session through the tunnel (the ssh kind's code)", fields: () => viaLab(sshTo()), want: [true, null, null] },
    {
      name: 'SSH: a device host key that is not the pinned one',
      fields: () => viaLab(sshTo({ hostKeys: ['SHA256:' + 'A'.repeat(43)], hostKeyAlias: undefined })),
      want: [false, 'hostkey', 'target'],
    },
    {
      name: 'SSH: output not as expected',
      fields: () => viaLab(sshTo({ expect: { stdout: 'Windows' } })),
      want: [false, 'assertion', 'target', 'does not contain "Windows"'],
    },
    {
      name: 'a banner that does not match',
      fields: () => viaLab({ port: 22222, expect: { banner: '^HTTP/' } }),
      want: [false, 'assertion', 'target', 'SSH-2.0-OpenSSH_9.2p1', '/^HTTP\\//'],
    },
    {
      name: 'HTTP status not expected',
      fields: () => viaLab({ port: 80, http: { path: '/nope', expect: { status: [200] } } }),
      want: [false, 'assertion', 'target', 'status 404'],
    },
    {
      name: 'a device that never speaks',
      fields: () => viaLab({ port: 7, stepTimeout: '300ms', expect: { banner: '.' } }),
      want: [false, 'timeout', 'target', 'no answer within 300ms'],
    },
    {
      name: 'a step whose answer never matches',
      fields: () => viaLab({ port: 7, stepTimeout: '300ms', steps: [{ send: 'ping\n', expect: '^PONG' }] }),
      want: [false, 'timeout', 'target', 'received: "pong'],
    },
    {
      name: 'tunnel-token-revoked: 407',
      faults: ['tunnel-token-revoked'],
      fields: () => viaLab(http),
      want: [false, 'auth', 'proxy_connect', 'HTTP 407 Proxy Authentication Required', `c0ffee00000000000000000000000002.balena:80`],
    },
    {
      name: 'a wrong token: 407',
      fields: () => viaLab({ ...http, token: { env: 'FP_TEST_TUNNEL_TOKEN' } }),
      want: [false, 'auth', 'proxy_connect', 'HTTP 407'],
    },
    { name: 'an unknown device: 407 (no access)', fields: () => viaLab({ ...http, device: 'deadbeef' }), want: [false, 'auth', 'proxy_connect', 'HTTP 407'] },
    {
      name: 'tunnel-device-offline: 503',
      faults: ['tunnel-device-offline'],
      fields: () => viaLab(http),
      want: [false, 'device_offline', 'proxy_connect', 'HTTP 503', 'not connected to the VPN'],
    },
    {
      name: 'tunnel-port-closed: 500',
      faults: ['tunnel-port-closed'],
      fields: () => viaLab(banner),
      want: [false, 'device_offline', 'proxy_connect', 'HTTP 500', 'port refused or device unreachable'],
    },
    { name: 'a port nothing listens on: 500', fields: () => viaLab({ port: 8080 }), want: [false, 'device_offline', 'proxy_connect', 'HTTP 500'] },
    {
      name: 'a bad host name: 403',
      fields: () => viaLab({ device: undefined, target: 'not-a-device.example:80' }),
      want: [false, 'denied', 'proxy_connect', 'HTTP 403'],
    },
    {
      name: 'tunnel-nonstandard alone: odd HTTP/1.1 answers still pass',
      faults: ['tunnel-nonstandard'],
      fields: () => viaLab(banner),
      want: [true, null, null],
    },
    {
      name: 'tunnel-nonstandard refusing: 401 is auth',
      faults: ['tunnel-nonstandard', 'tunnel-token-revoked'],
      fields: () => viaLab(http),
      want: [false, 'auth', 'proxy_connect', 'HTTP 401 Unauthorized, Who Are You'],
    },
    {
      name: 'tunnel-slow-connect: timeout waiting for the answer',
      faults: ['tunnel-slow-connect'],
      fields: () => viaLab(http),
      timeoutMs: 500,
      want: [false, 'timeout', 'proxy_connect', 'proxy_connect did not finish within the run timeout of 500ms'],
    },
    {
      name: 'tunnel-slow-connect under the step timeout',
      faults: ['tunnel-slow-connect'],
      fields: () => viaLab({ ...http, stepTimeout: '300ms' }),
      want: [false, 'timeout', 'proxy_connect', "the proxy's answer: no answer within 300ms"],
    },
    {
      name: 'the proxy certificate from an unknown CA',
      fields: () => viaLab({ ...http, tunnelTls: { serverName: lab.vars.LAB_TUNNEL_HOST } }),
      want: [false, 'tls', 'tls'],
    },
    {
      name: 'the proxy certificate for another name',
      fields: () => viaLab({ ...http, tunnelTls: { caFile: lab.caFile, serverName: 'tunnel.example.com' } }),
      want: [false, 'tls', 'tls', /altnames|ERR_TLS_CERT_ALTNAME_INVALID/i],
    },
  ];

  for (const c of cases) {
    it(c.name, async () => {
      for (const f of c.faults ?? []) lab.faults.set(f, true);
      const r = await runTunnel(c.fields(), c.timeoutMs);
      expectOutcome(r, ...c.want);
      if (c.want[0]) expect(Object.keys(r.phases)).toEqual(['resolve', 'connect', 'tls', 'proxy_connect', 'target']);
    });
  }
});

describe('tunnel kind against raw proxies (plain TCP)', () => {
  const peers: Peer[] = [];
  afterEach(async () => {
    for (const p of peers.splice(0)) {
      // Whatever happened, the probe left nothing open.
      await p.idle(2000);
      await p.close();
    }
  });

  /** A "proxy" that reads the CONNECT head, then does what `answer` says. */
  async function proxy(answer: (s: net.Socket, request: string) => void): Promise<Peer> {
    const p = await connectPeer(answer);
    peers.push(p);
    return p;
  }
  const viaRaw = (p: Peer, extra: Fields = {}): Fields => ({
    tunnel: `127.0.0.1:${p.port}`,
    tunnelTls: false,
    user: 'probe-bot',
    token: { env: 'FP_TEST_TUNNEL_TOKEN' },
    device: UUID,
    port: 22222,
    ...extra,
  });

  it('sends the platform request: CONNECT <uuid>.balena:<port> HTTP/1.0 with Basic user:token', async () => {
    let seen = '';
    const p = await proxy((s, req) => {
      seen = req;
      s.end('HTTP/1.0 200 Connection Established\r\n\r\n');
    });
    expectOutcome(await runTunnel(viaRaw(p)), true, null, null);
    const lines = seen.split('\r\n');
    expect(lines[0]).toBe(`CONNECT ${UUID}.balena:22222 HTTP/1.0`);
    expect(lines).toContain(`Proxy-Authorization: Basic ${Buffer.from(`probe-bot:${CANARY}`).toString('base64')}`);
  });

  it.each([
    [407, 'Proxy Authentication Required', 'auth'],
    [401, 'Unauthorized', 'auth'],
    [403, 'Forbidden', 'denied'],
    [503, 'Service Unavailable', 'device_offline'],
    [500, 'Internal Server Error', 'device_offline'],
    [502, 'Bad Gateway', 'device_offline'],
    [400, 'Bad Request', 'proxy'],
    [405, 'Method Not Allowed', 'proxy'],
    [429, 'Too Many Requests', 'proxy'],
  ])('HTTP %i %s → %s in proxy_connect', async (status, text, reason) => {
    const p = await proxy((s) => s.end(`HTTP/1.1 ${status} ${text}\r\nContent-Length: 0\r\n\r\n`));
    expectOutcome(await runTunnel(viaRaw(p)), false, reason, 'proxy_connect', `HTTP ${status} ${text}`);
  });

  it('the 200 and the device banner in one packet: the banner is not lost', async () => {
    const p = await proxy((s) => s.write('HTTP/1.0 200 Connection Established\r\nProxy-agent: balena-io/node-tunnel\r\n\r\nSSH-2.0-Early_Bird\r\n'));
    expectOutcome(await runTunnel(viaRaw(p, { expect: { banner: '^SSH-2\\.0-Early_Bird$' } })), true, null, null);
  });

  it('an answer dribbled one byte per packet, then the banner', async () => {
    const p = await proxy(async (s) => {
      s.setNoDelay(true);
      for (const ch of 'HTTP/1.0 200 Connection Established\r\nProxy-agent: balena-io/node-tunnel\r\n\r\nSSH-2.0-Slow\r\n') {
        if (s.destroyed) return;
        s.write(ch);
        await new Promise((r) => setTimeout(r, 1));
      }
    });
    expectOutcome(await runTunnel(viaRaw(p, { expect: { banner: '^SSH-2\\.0-Slow$' } })), true, null, null);
  });

  it('a proxy that never answers: timeout in proxy_connect', async () => {
    const p = await proxy(() => undefined);
    expectOutcome(await runTunnel(viaRaw(p), 400), false, 'timeout', 'proxy_connect', 'within the run timeout of 400ms');
  });

  it('a proxy that closes after the status line keeps the status meaning', async () => {
    const p = await proxy((s) => s.end('HTTP/1.0 503 Service Unavailable\r\n'));
    expectOutcome(await runTunnel(viaRaw(p)), false, 'device_offline', 'proxy_connect', 'HTTP 503', 'closed the connection before the end of its answer');
  });

  it('a proxy that closes after a 200 status line: protocol', async () => {
    const p = await proxy((s) => s.end('HTTP/1.0 200 Connection Established\r\n'));
    expectOutcome(await runTunnel(viaRaw(p)), false, 'protocol', 'proxy_connect', 'in the middle of its answer');
  });

  it('a proxy that closes without a word: proxy', async () => {
    const p = await proxy((s) => s.end());
    expectOutcome(await runTunnel(viaRaw(p)), false, 'proxy', 'proxy_connect', 'closed the connection without answering');
  });

  it('a peer that is not an HTTP proxy: protocol, at once', async () => {
    const p = await proxy((s) => s.write('SSH-2.0-OpenSSH_9.2\r\n'));
    const t0 = Date.now();
    expectOutcome(await runTunnel(viaRaw(p)), false, 'protocol', 'proxy_connect', 'not HTTP', 'SSH-2.0-OpenSSH_9.2');
    expect(Date.now() - t0).toBeLessThan(1000);
  });

  describe('an SSH server that refuses at the identification stage (sshd at MaxStartups)', () => {
    let keyFile: string;
    beforeAll(() => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fp-maxstartups-'));
      keyFile = path.join(dir, 'id_ed25519');
      fs.writeFileSync(keyFile, ssh2.utils.generateKeyPairSync('ed25519').private, { mode: 0o600 });
    });
    const sshCheck = () => ({ ssh: { sshKey: { file: keyFile }, insecureAcceptAnyHostKey: true, command: 'true' } });

    it("quotes the server's line, redacted", async () => {
      // What sshd writes before closing; this one echoes a secret it has seen, which never shows.
      const p = await proxy((s) => s.end(`HTTP/1.0 200 Connection Established\r\n\r\nExceeded MaxStartups (${CANARY})\r\n`));
      const r = await runTunnel(viaRaw(p, sshCheck()));
      expectOutcome(r, false, 'protocol', 'target', 'the server said: "Exceeded MaxStartups ([redacted])"');
    });

    it('bounds what it quotes', async () => {
      const p = await proxy((s) => s.end(`HTTP/1.0 200 Connection Established\r\n\r\nExceeded MaxStartups ${'x'.repeat(5000)}\r\n`));
      const r = await runTunnel(viaRaw(p, sshCheck()));
      expectOutcome(r, false, 'protocol', 'target', 'the server said: "Exceeded MaxStartups xxx');
      expect(r.message).toMatch(/x…"/);
      expect(r.message!.length).toBeLessThan(500);
    });
  });

  it('the tunnel closes right after the 200: connect in target', async () => {
    const p = await proxy((s) => s.end('HTTP/1.0 200 OK\r\n\r\n'));
    expectOutcome(await runTunnel(viaRaw(p, { expect: { banner: '.' } })), false, 'connect', 'target', 'closed by the far end before anything arrived');
  });

  it('plain TCP to a TLS proxy: the answer is not HTTP', async () => {
    const p = await proxy((s) => s.write(Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46])));
    expectOutcome(await runTunnel(viaRaw(p)), false, 'protocol', 'proxy_connect');
  });
});
