import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { tunnelKind } from '../../src/kinds/tunnel.js';
import { startLab, type Lab } from '../../src/lab/index.js';
import { hostsMatch, knownHostsName, parseKnownHosts } from '../../src/net/known-hosts.js';
import { runCli, tempDir, type CliResult } from '../helpers/cli.js';
import { closedPort, rawPeer, type Peer } from '../helpers/http-peers.js';
import { runKindOnce } from '../helpers/run-kind.js';

/**
 * `fleetprobe hostkey` as a user runs it (the CLI as a child process): through the lab's TLS tunnel
 * proxy to a device's own SSH server (port 22222, as the platform routes it), directly to the lab's
 * SSH proxy, and against peers that fail: a refused token, an offline device, an unverifiable proxy
 * certificate, a peer that is not SSH, one that says nothing, a closed port. Stock sshd:
 * test/interop/hostkey-openssh.test.ts.
 */

const TOKEN_ENV = 'FP_TEST_HOSTKEY_TOKEN';

describe('fleetprobe hostkey against the lab', () => {
  let lab: Lab;
  let v: Record<string, string>;
  let token: string;
  const peers: Peer[] = [];

  beforeAll(async () => {
    lab = await startLab();
    v = lab.vars;
    token = fs.readFileSync(v.LAB_TUNNEL_TOKEN_FILE, 'utf8').trim();
  });
  afterEach(() => {
    for (const f of lab.faults.active()) lab.faults.set(f, false);
  });
  afterAll(async () => {
    for (const p of peers) await p.close();
    await lab?.close();
  });

  const viaTunnel = (extra: string[] = [], target = v.LAB_DEVICE3_UUID) =>
    runCli(
      [
        'hostkey',
        '--via-tunnel',
        `127.0.0.1:${v.LAB_TUNNEL_PORT}`,
        '--tunnel-ca',
        v.LAB_CA_FILE,
        '--tunnel-server-name',
        v.LAB_TUNNEL_HOST,
        '--token-env',
        TOKEN_ENV,
        ...extra,
        target,
      ],
      { env: { [TOKEN_ENV]: token } },
    );
  /** The token never reaches the output, in any form it was sent in. */
  const noToken = (r: CliResult) => {
    for (const text of [r.stdout, r.stderr]) {
      expect(text).not.toContain(token);
      expect(text).not.toContain(Buffer.from(`root:${token}`).toString('base64'));
    }
  };
  /** The lab's own record of a server's key (its known_hosts, written when the lab started). */
  const labKey = (host: string, port: number) => {
    const entries = parseKnownHosts(fs.readFileSync(v.LAB_SSH_KNOWN_HOSTS, 'utf8')).filter((e) => hostsMatch(e.hosts, knownHostsName(host, port)));
    expect(entries).toHaveLength(1);
    return `${entries[0].keyType} ${entries[0].key.toString('base64')}`;
  };

  it("--via-tunnel: a device's own sshd through the tunnel proxy; the line names <uuid>.balena:22222 and the tunnel kind pins the device with it", async () => {
    const r = await viaTunnel();
    expect(r.code, r.stderr).toBe(0);
    // TLS to the proxy, its certificate verified: no warning to look elsewhere.
    expect(r.stderr).toBe('');
    noToken(r);
    const name = `[${v.LAB_DEVICE3_UUID}.balena]:22222`;
    expect(r.stdout).toMatch(
      new RegExp(
        `^# \\[${v.LAB_DEVICE3_UUID}\\.balena\\]:22222: 1 host key, fetched through the tunnel proxy 127\\.0\\.0\\.1:${v.LAB_TUNNEL_PORT} over TLS, its certificate verified\n`,
      ),
    );
    const lines = r.stdout.split('\n').filter((l) => l && !l.startsWith('#'));
    expect(lines).toEqual([`${name} ${labKey('127.0.0.1', Number(v.LAB_SSH_DEVICE3_PORT))}`]);

    // The output as the probe's known_hosts, no hostKeyAlias: a whole session through the tunnel.
    const knownHosts = path.join(tempDir(), 'known_hosts');
    fs.writeFileSync(knownHosts, r.stdout);
    const run = await runKindOnce(tunnelKind as never, {
      tunnel: `127.0.0.1:${v.LAB_TUNNEL_PORT}`,
      tunnelTls: { caFile: v.LAB_CA_FILE, serverName: v.LAB_TUNNEL_HOST },
      token: { file: v.LAB_TUNNEL_TOKEN_FILE },
      device: v.LAB_DEVICE3_UUID,
      port: 22222,
      ssh: { sshKey: { file: v.LAB_SSH_KEY_FILE }, hostKeys: { file: knownHosts }, command: 'cat /etc/os-release', expect: { stdout: 'balenaOS' } },
    });
    expect({ success: run.success, message: run.message }).toEqual({ success: true, message: null });
  });

  it("directly: the platform's SSH proxy address; the fingerprint is the one the lab pins", async () => {
    const r = await runCli(['hostkey', `127.0.0.1:${v.LAB_SSH_PROXY_PORT}`]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`#   ssh-ed25519 ${v.LAB_SSH_PROXY_FINGERPRINT}\n`);
    expect(r.stdout.split('\n').filter((l) => l && !l.startsWith('#'))).toEqual([
      `[127.0.0.1]:${v.LAB_SSH_PROXY_PORT} ${labKey('127.0.0.1', Number(v.LAB_SSH_PROXY_PORT))}`,
    ]);
    // Plain TCP: nothing vouches for the key, and the user is told so.
    expect(r.stderr).toMatch(/^fleetprobe: hostkey: nothing authenticated this connection: .*compare the fingerprints/);
  });

  it.each([
    ['tunnel-token-revoked', 'auth', /HTTP 407/],
    ['tunnel-device-offline', 'device_offline', /HTTP 503.*not connected/],
  ])('--via-tunnel under %s: exit 1, the reason and the proxy answer, no key, no token', async (fault, reason, message) => {
    lab.faults.set(fault, true);
    const r = await viaTunnel();
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(
      new RegExp(
        `^fleetprobe: hostkey: no host key of ${v.LAB_DEVICE3_UUID}\\.balena:22222 \\(asked through the tunnel proxy 127\\.0\\.0\\.1:${v.LAB_TUNNEL_PORT} over TLS, its certificate verified\\): ${reason}: `,
      ),
    );
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    noToken(r);
  });

  it("--via-tunnel with the system CAs: the lab proxy's certificate is not trusted, so no key is printed (tls)", async () => {
    const r = await runCli(
      ['hostkey', '--via-tunnel', `127.0.0.1:${v.LAB_TUNNEL_PORT}`, '--tunnel-server-name', v.LAB_TUNNEL_HOST, '--token-env', TOKEN_ENV, v.LAB_DEVICE3_UUID],
      { env: { [TOKEN_ENV]: token } },
    );
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/: tls: TLS handshake with .* failed/);
  });

  it('a peer that is not SSH is protocol; one that says nothing is timeout within --timeout; a closed port is connect', async () => {
    const http = await rawPeer((s) => s.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
    // Reads (so it sees our close) and never answers.
    const silent = await rawPeer((s) => s.resume());
    peers.push(http, silent);
    const cases: [number, string, string[]][] = [
      [http.port, 'protocol', []],
      [silent.port, 'timeout', ['--timeout', '500ms']],
      [await closedPort(), 'connect', []],
    ];
    for (const [port, reason, extra] of cases) {
      const started = Date.now();
      const r = await runCli(['hostkey', ...extra, `127.0.0.1:${port}`]);
      expect({ code: r.code, stdout: r.stdout }, r.stderr).toEqual({ code: 1, stdout: '' });
      expect(r.stderr).toMatch(new RegExp(`^fleetprobe: hostkey: no host key of 127\\.0\\.0\\.1:${port} \\(asked directly over plain TCP\\): ${reason}: `));
      if (reason === 'timeout') expect(Date.now() - started).toBeLessThan(5000);
    }
    await silent.idle();
  });

  it.each([
    [[], /hostkey takes one server/],
    [['a', 'b'], /hostkey takes one server/],
    [['--via-tunnel', 'tunnel.example:443', 'c0ffee'], /--via-tunnel needs a token in \$BALENA_TOKEN/],
    [['--tunnel-ca', '/x', 'host'], /--tunnel-ca is an option of --via-tunnel/],
    [['--timeout', 'soon', 'host'], /--timeout must be a duration/],
    [['--via-tunnel', 'a:b:c', 'host'], /--via-tunnel must be HOST or HOST:PORT/],
    [['--bogus', 'host'], /hostkey: Unknown option '--bogus'/],
  ])('usage error %j: exit 2 before any connection', async (args, message) => {
    const r = await runCli(['hostkey', ...args], { env: { BALENA_TOKEN: '' } });
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(message);
  });

  it('--help prints its usage; the main usage names the command', async () => {
    const help = await runCli(['hostkey', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: fleetprobe hostkey HOST\[:PORT\]/);
    const main = await runCli(['--help']);
    expect(main.stdout).toContain('fleetprobe hostkey HOST[:PORT]');
  });
});
