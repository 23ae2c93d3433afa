import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { ConfigError, formatConfigIssue } from '../../src/core/errors.js';
import { parseHostPort } from '../../src/kinds/shared/host-port.js';

/**
 * The fields several kinds share (src/kinds/shared) check the same way in every kind, as a user
 * sees it: the problem line `fleetprobe check` prints for a probe file, or a clean load.
 */

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fleetprobe-fields-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
beforeEach(() => {
  vi.stubEnv('FP_FIELDS_TOKEN', 'fields-test-token');
  // Lets an ssh probe load without a key file (the agent is only looked at when a run starts).
  vi.stubEnv('SSH_AUTH_SOCK', '/nonexistent/agent.sock');
});
afterEach(() => vi.unstubAllEnvs());

/** The problem lines for one probe (flow-style YAML fields), or [] when it loads. */
function problems(kind: string, fields: string): string[] {
  const file = path.join(dir, 'probes.yaml');
  fs.writeFileSync(file, `probes:\n  - { name: p, kind: ${kind}, ${fields} }\n`);
  try {
    loadConfig({ paths: [file] });
    return [];
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return err.issues.map((i) => formatConfigIssue(i).replace(`${dir}/`, ''));
  }
}

const TOKEN = 'token: { env: FP_FIELDS_TOKEN }';
const KINDS_WITH_DEVICE: [string, string][] = [
  ['ssh', 'user: u, insecureAcceptAnyHostKey: true'],
  ['tunnel', `${TOKEN}, expect: { banner: "^SSH" }`],
  ['device-status', TOKEN],
];

describe('device uuid: one rule in every kind', () => {
  it.each(KINDS_WITH_DEVICE)('%s: 7 to 64 hexadecimal digits', (kind, rest) => {
    for (const ok of ['c0ffee0', 'C0FFEE01', 'a'.repeat(32), 'f'.repeat(64)]) expect(problems(kind, `device: "${ok}", ${rest}`), ok).toEqual([]);
    for (const bad of ['c0ffee', 'f'.repeat(65), 'c0ffee0g', '../c0ffee0']) {
      expect(problems(kind, `device: "${bad}", ${rest}`), bad).toEqual(['probes.yaml:2: probes[0].device: a device uuid is 7 to 64 hexadecimal digits']);
    }
  });
});

describe('host:port: one parser, with the port range checked everywhere', () => {
  it('parses names, IPv4 and bracketed IPv6, with or without a default port', () => {
    expect(parseHostPort('tunnel.example:443')).toEqual({ host: 'tunnel.example', port: 443 });
    expect(parseHostPort('[2001:db8::1]:3128')).toEqual({ host: '2001:db8::1', port: 3128 });
    expect(parseHostPort('ssh.example', 22)).toEqual({ host: 'ssh.example', port: 22 });
    expect(parseHostPort('ssh.example')).toBeUndefined();
    for (const bad of ['h:0', 'h:65536', 'h:123456', 'h:', ':80', 'a b:80', 'a/b:80', '[::1:80', '']) expect(parseHostPort(bad, 22), bad).toBeUndefined();
  });

  it('a tunnel target with a port out of range is refused at load (it used to pass and fail at CONNECT)', () => {
    expect(problems('tunnel', `${TOKEN}, target: "dev.example:70000", expect: { banner: x }`)).toEqual([
      'probes.yaml:2: probes[0].target: a target is host:port',
    ]);
    expect(problems('tunnel', `${TOKEN}, target: "[::1]:8080", expect: { banner: x }`)).toEqual([]);
  });

  it('each kind names the field and what it wanted', () => {
    expect(problems('tunnel', `${TOKEN}, device: c0ffee01, tunnel: "proxy:0", expect: { banner: x }`)).toEqual([
      'probes.yaml:2: probes[0].tunnel: "proxy:0" is not host:port (e.g. tunnel.balena-cloud.com:443)',
    ]);
    expect(problems('device-status', `${TOKEN}, device: c0ffee01, tunnel: proxy`)).toEqual([
      'probes.yaml:2: probes[0].tunnel: "proxy" is not host:port (e.g. tunnel.balena-cloud.com:443)',
    ]);
    expect(problems('ssh', `device: c0ffee01, user: u, insecureAcceptAnyHostKey: true, sshProxy: "proxy:99999"`)).toEqual([
      'probes.yaml:2: probes[0].sshProxy: "proxy:99999" is not host or host:port',
    ]);
    expect(problems('ssh', `device: c0ffee01, user: u, insecureAcceptAnyHostKey: true, sshProxy: "[::1]"`)).toEqual([]);
    expect(problems('build', `target: docker, docker: "tcp://engine:99999"`)).toEqual([
      'probes.yaml:2: probes[0].docker: a Docker endpoint is unix:///path/to/docker.sock, tcp://HOST:PORT or http://HOST:PORT',
    ]);
    expect(problems('build', `target: docker, docker: "tcp://[::1]:2375/"`)).toEqual([]);
  });
});

describe('the TLS block', () => {
  it('is the same block in every kind that has one; the builder verifies the URL host only', () => {
    expect(problems('http', 'url: "https://x.example", tls: { serverName: y.example, insecureSkipVerify: true }')).toEqual([]);
    expect(problems('device-status', `${TOKEN}, device: c0ffee01, tls: { serverName: y.example }, tunnelTls: { serverName: t.example }`)).toEqual([]);
    expect(problems('http', 'url: "https://x.example", tls: { verify: false }')).toEqual(['probes.yaml:2: probes[0].tls.verify: unknown field']);
    expect(problems('build', `fleet: o/f, ${TOKEN}, tls: { serverName: y.example }`)).toEqual(['probes.yaml:2: probes[0].tls.serverName: unknown field']);
  });
});

describe('the sessions mode: one set of fields in ssh and tunnel', () => {
  const SSH = 'device: c0ffee01, user: u, insecureAcceptAnyHostKey: true';
  const TUNNEL = `${TOKEN}, device: c0ffee01, expect: { banner: x }`;
  const line = (path: string, message: string) => [`probes.yaml:2: probes[0].${path}: ${message}`];

  it('loads in both kinds, each bounding its own phases', () => {
    expect(problems('tunnel', `${TUNNEL}, sessions: 8, minSuccessRatio: 0.5, maxLatency: { proxy_connect: 1s, total: 2s, percentile: 99 }`)).toEqual([]);
    expect(problems('ssh', `${SSH}, sessions: 4, maxLatency: { handshake: 2s, total: 5s }`)).toEqual([]);
  });

  it('bad values name the file, the field and the problem', () => {
    expect(problems('tunnel', `${TUNNEL}, sessions: 0`)).toEqual(line('sessions', 'Too small: expected number to be >=1'));
    expect(problems('tunnel', `${TUNNEL}, sessions: 300`)).toEqual(line('sessions', 'Too big: expected number to be <=256'));
    expect(problems('tunnel', `${TUNNEL}, sessions: 2.5`)).toEqual(line('sessions', 'expected int, received number'));
    expect(problems('tunnel', `${TUNNEL}, minSuccessRatio: 1.5`)).toEqual(line('minSuccessRatio', 'Too big: expected number to be <=1'));
    expect(problems('tunnel', `${TUNNEL}, maxLatency: { proxy_connect: 0s }`)).toEqual(line('maxLatency.proxy_connect', 'must be more than 0'));
    expect(problems('tunnel', `${TUNNEL}, maxLatency: { proxy_connect: soon }`)).toEqual(
      line('maxLatency.proxy_connect', '"soon" is not a duration (use e.g. 500ms, 30s, 5m, 1h)'),
    );
    expect(problems('tunnel', `${TUNNEL}, maxLatency: { proxy_connect: 1s, percentile: 0 }`)).toEqual(
      line('maxLatency.percentile', 'Too small: expected number to be >0'),
    );
    expect(problems('tunnel', `${TUNNEL}, maxLatency: { percentile: 95 }`)).toEqual(
      line('maxLatency', 'names no bound: give a phase or `total` with a duration'),
    );
  });

  it("a phase the kind does not have (a typo, another kind's phase, a held tunnel's) is named with the ones it has", () => {
    const tunnelPhases = 'use resolve, connect, tls, proxy_connect, target or `total`';
    expect(problems('tunnel', `${TUNNEL}, maxLatency: { proxy_conect: 1s }`)).toEqual(
      line('maxLatency.proxy_conect', `is not a phase maxLatency can bound here: ${tunnelPhases}`),
    );
    expect(problems('tunnel', `${TUNNEL}, maxLatency: { hold: 1s }`)).toEqual(
      line('maxLatency.hold', `is not a phase maxLatency can bound here: ${tunnelPhases}`),
    );
    expect(problems('ssh', `${SSH}, maxLatency: { proxy_connect: 1s }`)).toEqual(
      line(
        'maxLatency.proxy_connect',
        'is not a phase maxLatency can bound here: use resolve, connect, handshake, auth, session, corroborate, command or `total`',
      ),
    );
  });

  it('a held tunnel is one tunnel: no sessions or latency bounds with hold', () => {
    expect(problems('tunnel', `${TOKEN}, device: c0ffee01, http: { path: / }, hold: 1h, sessions: 4, maxLatency: { total: 1s }`)).toEqual([
      'probes.yaml:2: probes[0].sessions: is for tunnels opened per run, not with `hold` (a held tunnel is one tunnel)',
      'probes.yaml:2: probes[0].maxLatency: is for tunnels opened per run, not with `hold` (a held tunnel is one tunnel)',
    ]);
  });

  it('a held tunnel keeps an interval, not a cron schedule (its keepalive period, which alerts compare with)', () => {
    expect(problems('tunnel', `${TOKEN}, device: c0ffee01, http: { path: / }, hold: 1h, cron: "*/5 * * * *"`)).toEqual([
      'probes.yaml:2: probes[0].hold: a held probe checks its connection every `interval`: set an interval, not cron',
    ]);
    expect(problems('tunnel', `${TOKEN}, device: c0ffee01, http: { path: / }, hold: 1h, interval: 30s`)).toEqual([]);
  });
});
