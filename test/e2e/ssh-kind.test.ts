import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { pino } from 'pino';
import type { ServerChannel } from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProbeSpec } from '../../src/core/kind.js';
import type { RunResult } from '../../src/core/result.js';
import { runProbe } from '../../src/core/run.js';
import { loadConfig } from '../../src/config/load.js';
import { resultToJson } from '../../src/core/result.js';
import { KINDS } from '../../src/kinds/index.js';
import { sshKind } from '../../src/kinds/ssh.js';
import { startLab, type Lab } from '../../src/lab/index.js';
import { generateLabKey } from '../../src/lab/ssh-server.js';
import { Metrics } from '../../src/metrics/metrics.js';
import { markerScript } from '../../src/net/ssh-session.js';
import { metricValue, runCli, tempDir } from '../helpers/cli.js';
import { expectPromtoolClean } from '../helpers/promtool.js';
import { readStdin, sshPeer, type SshPeer } from '../helpers/ssh-peers.js';

/**
 * The ssh kind through runProbe (what the daemon does) against the embedded lab's SSH proxy,
 * bastion and devices, and against scripted SSH peers for answers the lab never gives.
 */

const log = pino({ level: 'silent' });
type Fields = Record<string, unknown>;

function spec(fields: Fields, timeoutMs = 4000): ProbeSpec {
  return {
    name: 'ssh-e2e',
    kind: 'ssh',
    intervalMs: 60_000,
    timeoutMs,
    labels: {},
    source: { file: 'test' },
    config: sshKind.schema.parse(fields),
    digest: 't',
  };
}
const runSsh = (fields: Fields, timeoutMs?: number): Promise<RunResult> => runProbe(spec(fields, timeoutMs), sshKind as never, { log });

interface Outcome {
  success: boolean;
  reason: string | null;
  phase: string | null;
  message?: (string | RegExp)[];
}
const PASS: Outcome = { success: true, reason: null, phase: null };
const fail = (reason: string, phase: string, ...message: (string | RegExp)[]): Outcome => ({ success: false, reason, phase, message });

function expectOutcome(r: RunResult, want: Outcome): void {
  expect({ success: r.success, reason: r.reason, phase: r.phase }, JSON.stringify(r)).toEqual({
    success: want.success,
    reason: want.reason,
    phase: want.phase,
  });
  if (want.success) expect(r.message).toBeNull();
  for (const m of want.message ?? []) {
    if (typeof m === 'string') expect(r.message, r.message ?? '').toContain(m);
    else expect(r.message).toMatch(m);
  }
}

let lab: Lab;
beforeAll(async () => {
  lab = await startLab();
});
afterAll(async () => {
  await lab?.close();
});

const v = (name: string) => lab.vars[name];
const proxyProbe = (extra: Fields = {}): Fields => ({
  mode: 'proxy',
  sshProxy: `127.0.0.1:${v('LAB_SSH_PROXY_PORT')}`,
  user: v('LAB_SSH_USER'),
  sshKey: { file: v('LAB_SSH_KEY_FILE') },
  hostKeys: { file: v('LAB_SSH_KNOWN_HOSTS') },
  device: v('LAB_DEVICE_UUID'),
  expect: { stdout: 'balenaOS' },
  ...extra,
});
/** proxyProbe with a second path for a bare "host error": the lab's tunnel and/or API, one token for both. */
const corroborated = (paths: { tunnel?: boolean; api?: boolean }, extra: Fields = {}): Fields =>
  proxyProbe({
    token: { file: v('LAB_BUILDER_TOKEN_FILE') },
    ...(paths.tunnel ? { tunnel: `127.0.0.1:${v('LAB_TUNNEL_PORT')}`, tunnelTls: { caFile: v('LAB_CA_FILE'), serverName: v('LAB_TUNNEL_HOST') } } : {}),
    ...(paths.api ? { api: v('LAB_API_URL') } : {}),
    corroborate: { timeout: '2s', tls: { caFile: v('LAB_CA_FILE') } },
    ...extra,
  });
const jumpProbe = (extra: Fields = {}): Fields => ({
  mode: 'jump',
  bastion: `127.0.0.1:${v('LAB_SSH_PROXY_PORT')}`,
  host: `127.0.0.1:${v('LAB_SSH_DEVICE2_PORT')}`,
  user: v('LAB_SSH_USER'),
  sshKey: { file: v('LAB_SSH_KEY_FILE') },
  hostKeys: { file: v('LAB_SSH_KNOWN_HOSTS') },
  expect: { stdout: 'balenaOS' },
  ...extra,
});
const directProbe = (extra: Fields = {}): Fields => ({
  mode: 'direct',
  host: `127.0.0.1:${v('LAB_SSH_DEVICE_PORT')}`,
  user: 'root',
  sshKey: { file: v('LAB_SSH_KEY_FILE') },
  hostKeys: { file: v('LAB_SSH_KNOWN_HOSTS') },
  ...extra,
});

interface Case {
  name: string;
  faults?: string[];
  fields: () => Fields;
  timeoutMs?: number;
  want: Outcome;
}

const cases: Case[] = [
  // proxy mode
  { name: 'proxy: healthy device passes on markers and output', fields: () => proxyProbe(), want: PASS },
  {
    name: 'proxy: enter <uuid> main runs in the container',
    fields: () => proxyProbe({ container: 'main', command: 'uname -n && echo in-container', expect: { stdout: 'lab-device-1\nin-container' } }),
    want: PASS,
  },
  { name: 'proxy: pinned proxy fingerprint passes', fields: () => proxyProbe({ hostKeys: v('LAB_SSH_PROXY_FINGERPRINT') }), want: PASS },
  {
    name: 'proxy-agent-empty: "host error" with exit 0 is device_auth in session, never a pass',
    faults: ['proxy-agent-empty'],
    fields: () => proxyProbe(),
    want: fail('device_auth', 'session', 'could not authenticate to the device', 'host error', 'proxy exit status 0'),
  },
  // A bare "host error" (2026-02-26): the text cannot decide, a second path does (phase corroborate).
  {
    name: 'bare host error, device 1 reachable through the tunnel: device_auth, decided by its SSH banner',
    faults: ['proxy-host-error'],
    fields: () => corroborated({ tunnel: true }),
    want: fail('device_auth', 'session', 'bare host error', 'the device is up', 'its SSH banner came through the tunnel (SSH-2.0-', 'could not log in'),
  },
  {
    name: 'bare host error, the tunnel says the device is not connected: device_offline (the tunnel wins over an API that says online)',
    faults: ['proxy-host-error', 'tunnel-device-offline'],
    fields: () => corroborated({ tunnel: true, api: true }),
    want: fail('device_offline', 'session', 'the device is down', 'the tunnel says it is not reachable', '503', 'the API says it is online'),
  },
  {
    name: 'bare host error, tunnel refused and API failing: proxy, quoting what each path said',
    faults: ['proxy-host-error', 'tunnel-token-revoked', 'api-errors'],
    fields: () => corroborated({ tunnel: true, api: true }),
    want: fail('proxy', 'session', 'neither path could tell', 'the tunnel could not tell (auth', 'the API could not tell (proxy'),
  },
  {
    name: "bare host error, the tunnel hangs: the budget ends in proxy, given before the run's own deadline",
    faults: ['proxy-host-error', 'tunnel-slow-connect'],
    fields: () => corroborated({ tunnel: true }, { corroborate: { timeout: '20s' } }),
    timeoutMs: 1500,
    want: fail('proxy', 'session', 'neither path could tell', 'the tunnel could not tell (timeout'),
  },
  {
    name: 'bare host error, API only: device_auth because the API says online',
    faults: ['proxy-host-error'],
    fields: () => corroborated({ api: true }),
    want: fail('device_auth', 'session', 'the API says it is online'),
  },
  {
    name: 'bare host error, nothing to corroborate with: proxy, never device_auth',
    faults: ['proxy-host-error'],
    fields: () => proxyProbe(),
    want: fail('proxy', 'session', 'bare host error', 'nothing corroborated it'),
  },
  {
    name: 'bare host error, corroborate switched off although a tunnel is configured: proxy',
    faults: ['proxy-host-error'],
    fields: () => corroborated({ tunnel: true }, { corroborate: { tunnel: false } }),
    want: fail('proxy', 'session', 'nothing corroborated it'),
  },
  {
    name: 'proxy-device-refused: "Connection refused" towards the device is device_offline, whatever the tunnel says',
    faults: ['proxy-device-refused'],
    fields: () => corroborated({ tunnel: true }),
    want: fail('device_offline', 'session', 'the proxy could not connect to the device', 'Connection refused'),
  },
  {
    name: 'proxy-device-auth-failed: "unable to authenticate" towards the device is device_auth',
    faults: ['proxy-device-auth-failed'],
    fields: () => proxyProbe(),
    want: fail('device_auth', 'session', 'could not authenticate to the device', 'no supported methods remain'),
  },
  {
    name: 'proxy-reject-key: our key refused',
    faults: ['proxy-reject-key'],
    fields: () => proxyProbe(),
    want: fail('auth', 'auth', 'refused user "lab-user"'),
  },
  {
    name: 'proxy-hostkey-changed: known_hosts mismatch',
    faults: ['proxy-hostkey-changed'],
    fields: () => proxyProbe(),
    want: fail('hostkey', 'handshake', 'does not match', 'ssh_known_hosts'),
  },
  {
    name: 'proxy-hostkey-changed: pinned mismatch',
    faults: ['proxy-hostkey-changed'],
    fields: () => proxyProbe({ hostKeys: v('LAB_SSH_PROXY_FINGERPRINT') }),
    want: fail('hostkey', 'handshake', 'not a pinned key'),
  },
  {
    name: 'device-offline: the 503 host error is device_offline',
    faults: ['device-offline'],
    fields: () => proxyProbe(),
    want: fail('device_offline', 'session', 'device is offline', '503'),
  },
  {
    name: 'device-slow: times out in session',
    faults: ['device-slow'],
    fields: () => proxyProbe(),
    timeoutMs: 1000,
    want: fail('timeout', 'session', 'run timeout'),
  },
  {
    name: 'device-slow with a shorter session timeout: the step names itself',
    faults: ['device-slow'],
    fields: () => proxyProbe({ timeouts: { session: '300ms' } }),
    want: fail('timeout', 'session', 'within 300ms'),
  },
  {
    name: 'session-drop: begin marker then cut is connect in command',
    faults: ['session-drop'],
    fields: () => proxyProbe(),
    want: fail('connect', 'command', 'cut mid-command', 'no end marker'),
  },
  {
    name: 'proxy: unknown device is an assertion',
    fields: () => proxyProbe({ device: 'deadbeef'.repeat(4) }),
    want: fail('assertion', 'session', 'does not know that device', 'not found'),
  },
  {
    name: 'proxy: unknown container is an assertion',
    fields: () => proxyProbe({ container: 'nope' }),
    want: fail('assertion', 'session', 'No such container'),
  },
  {
    name: "proxy: the command's own exit status counts",
    fields: () => proxyProbe({ command: 'false', expect: {} }),
    want: fail('assertion', 'command', 'exited with status 1, expected 0'),
  },
  {
    name: 'proxy: an expected non-zero exit status passes',
    fields: () => proxyProbe({ command: 'echo bye && false', expect: { exitStatus: 1, stdout: 'bye' } }),
    want: PASS,
  },
  {
    name: 'proxy: output mismatch',
    fields: () => proxyProbe({ command: 'uname -s', expect: { stdoutRegex: '^Darwin' } }),
    want: fail('assertion', 'command', 'does not match /^Darwin/', 'Linux'),
  },
  {
    name: 'proxy: stderr of the command is shown on a status failure',
    fields: () => proxyProbe({ command: 'cat /nope', expect: {} }),
    want: fail('assertion', 'command', "can't open '/nope'"),
  },
  // jump mode
  { name: 'jump: healthy device passes', fields: () => jumpProbe(), want: PASS },
  { name: 'jump: proxy-agent-empty does not matter (our own key)', faults: ['proxy-agent-empty'], fields: () => jumpProbe(), want: PASS },
  { name: 'jump: bastion refuses our key', faults: ['proxy-reject-key'], fields: () => jumpProbe(), want: fail('auth', 'auth', 'bastion') },
  { name: 'jump: bastion host key changed', faults: ['proxy-hostkey-changed'], fields: () => jumpProbe(), want: fail('hostkey', 'handshake', 'bastion') },
  {
    name: 'jump: device-offline refuses the forward',
    faults: ['device-offline'],
    fields: () => jumpProbe(),
    want: fail('connect', 'connect', 'bastion could not connect'),
  },
  { name: 'jump: device-slow times out in session', faults: ['device-slow'], fields: () => jumpProbe(), timeoutMs: 1000, want: fail('timeout', 'session') },
  { name: 'jump: session-drop is connect in command', faults: ['session-drop'], fields: () => jumpProbe(), want: fail('connect', 'command', 'no exit status') },
  {
    name: "jump: the device's key is checked too",
    fields: () => jumpProbe({ deviceHostKeys: v('LAB_SSH_PROXY_FINGERPRINT') }),
    want: fail('hostkey', 'handshake', /device 127\.0\.0\.1:\d+: host key/),
  },
  { name: 'jump: exit status', fields: () => jumpProbe({ command: 'exit 7', expect: {} }), want: fail('assertion', 'command', 'status 7') },
  // direct mode
  { name: 'direct: passes', fields: () => directProbe({ command: 'uname -a', expect: { stdout: 'Linux lab-device-1' } }), want: PASS },
  {
    name: 'direct: unknown host in known_hosts',
    fields: () => directProbe({ host: `127.0.0.1:${v('LAB_SSH_PROXY_PORT')}`, hostKeys: { file: v('LAB_CA_FILE') } }),
    want: fail('hostkey', 'handshake', 'no known_hosts entry for [127.0.0.1]'),
  },
  { name: 'direct: insecureAcceptAnyHostKey skips the check', fields: () => directProbe({ hostKeys: undefined, insecureAcceptAnyHostKey: true }), want: PASS },
  { name: 'direct: nothing listening', fields: () => directProbe({ host: '127.0.0.1:1' }), want: fail('connect', 'connect') },
];

describe('ssh kind against the embedded lab', () => {
  for (const c of cases) {
    it(c.name, async () => {
      for (const f of c.faults ?? []) lab.faults.set(f, true);
      try {
        expectOutcome(await runSsh(c.fields(), c.timeoutMs), c.want);
      } finally {
        for (const f of c.faults ?? []) lab.faults.set(f, false);
      }
    });
  }

  it('corroboration shows as its own phase, between session and the verdict charged to session', async () => {
    lab.faults.set('proxy-host-error', true);
    try {
      const r = await runSsh(corroborated({ tunnel: true }));
      expect(Object.keys(r.phases)).toEqual(['resolve', 'connect', 'handshake', 'auth', 'session', 'corroborate']);
      expect(r.phases.corroborate).toBeGreaterThan(0);
    } finally {
      lab.faults.set('proxy-host-error', false);
    }
  });

  it('a batch of sessions that all meet a bare host error corroborates once: one tunnel, the same verdict for each', async () => {
    lab.faults.set('proxy-host-error', true);
    try {
      const before = lab.tunnelProxy.accepted();
      const r = await runSsh(corroborated({ tunnel: true }, { sessions: 3 }));
      expect(r.success).toBe(false);
      expect(r.reason).toBe('device_auth');
      expect(r.message).toContain('3 of 3 sessions failed');
      expect(r.message).toContain('device_auth x3');
      expect(lab.tunnelProxy.accepted() - before).toBe(1);
    } finally {
      lab.faults.set('proxy-host-error', false);
    }
  });

  it('a healthy run with corroboration configured never enters corroborate', async () => {
    const r = await runSsh(corroborated({ tunnel: true, api: true }));
    expectOutcome(r, PASS);
    expect(Object.keys(r.phases)).not.toContain('corroborate');
  });

  it("corroboration is on by default where the file's platform block gives a tunnel, off where it gives none", async () => {
    const dir = tempDir();
    const probe = `  - name: s\n    kind: ssh\n    sshProxy: 127.0.0.1:${v('LAB_SSH_PROXY_PORT')}\n    device: ${v('LAB_DEVICE_UUID')}\n`;
    const common = `  user: ${v('LAB_SSH_USER')}\n  sshKey: { file: "${v('LAB_SSH_KEY_FILE')}" }\n  hostKeys: { file: "${v('LAB_SSH_KNOWN_HOSTS')}" }\n`;
    const tunnel = `  tunnel: 127.0.0.1:${v('LAB_TUNNEL_PORT')}\n  tunnelTls: { caFile: "${v('LAB_CA_FILE')}", serverName: "${v('LAB_TUNNEL_HOST')}" }\n  token: { file: "${v('LAB_BUILDER_TOKEN_FILE')}" }\n`;
    fs.writeFileSync(path.join(dir, 'with.yaml'), `platform:\n${common}${tunnel}probes:\n${probe}`);
    fs.writeFileSync(path.join(dir, 'without.yaml'), `platform:\n${common}probes:\n${probe.replace('name: s', 'name: s2')}`);
    const { probes } = loadConfig({ paths: [path.join(dir, 'with.yaml'), path.join(dir, 'without.yaml')] });
    lab.faults.set('proxy-host-error', true);
    try {
      const on = await runProbe(probes[0], sshKind as never, { log });
      expectOutcome(on, fail('device_auth', 'session', 'its SSH banner came through the tunnel'));
      expect(JSON.stringify(resultToJson(on))).not.toContain(v('LAB_BUILDER_TOKEN'));
      expectOutcome(await runProbe(probes[1], sshKind as never, { log }), fail('proxy', 'session', 'nothing corroborated it'));
    } finally {
      lab.faults.set('proxy-host-error', false);
    }
  });

  it('phases are the declared ones, in order, and the run is fast', async () => {
    const r = await runSsh(proxyProbe());
    expect(Object.keys(r.phases)).toEqual(['resolve', 'connect', 'handshake', 'auth', 'session', 'command']);
    expect(r.durationSeconds).toBeLessThan(1);
  });
});

describe('ssh kind against non-standard proxies', () => {
  const userKey = generateLabKey('test-user');
  let keyFile: string;
  const peers: SshPeer[] = [];
  beforeAll(() => {
    keyFile = path.join(tempDir(), 'id');
    fs.writeFileSync(keyFile, userKey.private, { mode: 0o600 });
  });
  afterAll(async () => {
    for (const p of peers) await p.close();
  });
  const viaPeer = async (onExec: Parameters<typeof sshPeer>[1], extra: Fields = {}) => {
    const p = await sshPeer(userKey, onExec);
    peers.push(p);
    return runSsh({ sshProxy: `127.0.0.1:${p.port}`, user: 'u', sshKey: { file: keyFile }, hostKeys: p.fingerprint, device: 'abc1234', ...extra }, 2000);
  };
  const exit0 = (stream: ServerChannel, stdout = '', stderr = '') => {
    if (stdout) stream.write(stdout);
    if (stderr) stream.stderr.write(stderr);
    stream.exit(0);
    stream.end();
  };

  it('unknown stderr and no markers: proxy, with the stderr in the message', async () => {
    const r = await viaPeer((_c, s) => exit0(s, '', 'the frobnicator is on fire\n'));
    expectOutcome(r, fail('proxy', 'session', 'without the begin marker', 'the frobnicator is on fire', 'exit status 0'));
  });
  it('a proxy that refuses the session with no description: the message ends with the RFC 4254 reason, not an empty "failure:"', async () => {
    const p = await sshPeer(userKey, () => undefined, { rejectSessions: true });
    peers.push(p);
    const r = await runSsh({ sshProxy: `127.0.0.1:${p.port}`, user: 'u', sshKey: { file: keyFile }, hostKeys: p.fingerprint, device: 'abc1234' }, 2000);
    expect(r.success).toBe(false);
    expect(r.message).toBe('device abc1234 refused to run "host abc1234": (SSH) Channel open failure: connect failed (reason 2), no description given');
    expect(r.message).not.toMatch(/:\s*$/);
  });

  // What a proxy says about its own connection to the device, exit 0 each time (issue 13 item 1).
  const wordings: [string, string, string][] = [
    ['error: host error: ssh: connect to host abc1234.vpn port 22222: Connection refused', 'device_offline', 'could not connect to the device'],
    ['error: host error: ssh: connect to host abc1234.vpn port 22222: Connection timed out', 'device_offline', 'could not connect to the device'],
    ['error: host error: dial tcp 10.240.3.7:22222: i/o timeout', 'device_offline', 'could not connect to the device'],
    ['error: host error: ssh: connect to host abc1234.vpn port 22222: No route to host', 'device_offline', 'could not connect to the device'],
    ['error: host error: read tcp 10.0.0.2:51000->10.240.3.7:22222: read: connection reset by peer', 'device_offline', 'could not connect to the device'],
    ['error: host error: root@abc1234.vpn: Permission denied (publickey).', 'device_auth', 'could not authenticate to the device'],
    [
      'error: host error: ssh: handshake failed: ssh: unable to authenticate, attempted methods [none], no supported methods remain',
      'device_auth',
      'could not authenticate',
    ],
    ['error: host error', 'proxy', 'nothing corroborated it'],
    ['error: host error: something odd happened', 'proxy', 'nothing corroborated it'],
  ];
  for (const [stderr, reason, meaning] of wordings) {
    it(`"${stderr.slice(18)}" → ${reason}`, async () => {
      expectOutcome(await viaPeer((_c, s) => exit0(s, '', `${stderr}\n`)), fail(reason, 'session', meaning, stderr));
    });
  }
  it('silence and exit 0: proxy, never a pass', async () => {
    expectOutcome(await viaPeer((_c, s) => exit0(s)), fail('proxy', 'session', 'nothing on stderr'));
  });
  it('a proxy that echoes our stdin back cannot fake the markers', async () => {
    const r = await viaPeer((_c, s) => void readStdin(s).then((script) => exit0(s, script)));
    expectOutcome(r, fail('proxy', 'session', 'without the begin marker'));
  });
  it('markers with another nonce (stale output) do not pass', async () => {
    const stale = 'FPBEGIN-0000000000000000\nNAME=balenaOS\n\nFPEND-0000000000000000:0\n';
    expectOutcome(await viaPeer((_c, s) => exit0(s, stale)), fail('proxy', 'session'));
  });
  it('begin marker, then the proxy exits 0 without the end marker: cut', async () => {
    const r = await viaPeer((_c, s) => void readStdin(s).then((script) => exit0(s, `FPBEGIN-${/FPBEGIN (\w+)/.exec(script)![1]}\npartial`)));
    expectOutcome(r, fail('connect', 'command', 'cut mid-command', 'partial'));
  });
  it('a well-behaved custom proxy passes and the exec line is `host <uuid>`', async () => {
    let exec = '';
    const r = await viaPeer(
      (command, s) => {
        exec = command;
        void readStdin(s).then((script) => {
          const nonce = /FPBEGIN (\w+)/.exec(script)![1];
          exit0(s, `motd noise\nFPBEGIN-${nonce}\nhello\nFPEND-${nonce}:0\n`.replace('hello\n', 'hello\n\n'));
        });
      },
      { command: 'echo hello', expect: { stdout: 'hello' } },
    );
    expectOutcome(r, PASS);
    expect(exec).toBe('host abc1234');
  });
  it('the marker script puts the command between markers that echoed input cannot match', () => {
    const s = markerScript('cat /etc/os-release', 'n1');
    expect(s).toBe("printf '%s-%s\\n' FPBEGIN n1\ncat /etc/os-release\nprintf '\\n%s-%s:%s\\n' FPEND n1 \"$?\"\nexit\n");
    expect(s).not.toContain('FPBEGIN-n1');
    expect(s).not.toContain('FPEND-n1');
  });
});

describe('concurrency mode', () => {
  it('sessions: 6 open at once and all pass; the ratio and quantiles are exported', async () => {
    const r = await runSsh(proxyProbe({ sessions: 6 }));
    expectOutcome(r, PASS);
    expect(r.observations.ssh_sessions_success_ratio).toBe(1);
    expect(r.observations['ssh_session_latency_seconds.100']).toBeGreaterThan(0);
    expect(r.observations['ssh_session_latency_seconds.50']).toBeLessThanOrEqual(r.observations['ssh_session_latency_seconds.100'] as number);
    expect(Object.keys(r.phases)).toEqual(['resolve', 'connect', 'handshake', 'auth', 'session', 'command']);
  });
  it('every session failing fails the run with their reason and phase, each counted', async () => {
    lab.faults.set('session-drop', true);
    try {
      const r = await runSsh(proxyProbe({ sessions: 4 }));
      expectOutcome(r, fail('connect', 'command', '4 of 4 sessions failed', 'connect x4'));
      expect(r.observations['ssh_session_failures.connect']).toBe(4);
      expect(r.observations.ssh_sessions_success_ratio).toBe(0);
    } finally {
      lab.faults.set('session-drop', false);
    }
  });
  it('minSuccessRatio lets a partly failing batch pass, still counting the failures', async () => {
    // Half the sessions go to a device that does not exist.
    lab.faults.set('session-drop', true);
    try {
      const r = await runSsh(proxyProbe({ sessions: 3, minSuccessRatio: 0 }));
      expectOutcome(r, PASS);
      expect(r.observations['ssh_session_failures.connect']).toBe(3);
    } finally {
      lab.faults.set('session-drop', false);
    }
  });
  it('kind metrics render with reason and percentile labels, promtool-clean', async () => {
    const m = new Metrics('test', KINDS);
    const s = spec(proxyProbe({ sessions: 2 }));
    m.configure([s]);
    lab.faults.set('proxy-agent-empty', true);
    let r: RunResult;
    try {
      r = await runProbe(s, sshKind as never, { log });
    } finally {
      lab.faults.set('proxy-agent-empty', false);
    }
    m.record(r);
    const { body } = await m.render();
    expect(metricValue(body, 'probe_ssh_session_failures_total', { probe: 'ssh-e2e', reason: 'device_auth' })).toBe(2);
    expect(metricValue(body, 'probe_ssh_session_failures_total', { probe: 'ssh-e2e', reason: 'auth' })).toBe(0);
    expect(metricValue(body, 'probe_ssh_sessions_success_ratio', { probe: 'ssh-e2e' })).toBe(0);
    expectPromtoolClean(body);
  });
});

describe('secrets', () => {
  const CANARY = 'canary-passphrase-7f3c9e1d';
  it('an encrypted key works with its passphrase; neither the passphrase nor the key reaches any output', async () => {
    const dir = tempDir();
    const keyFile = path.join(dir, 'id_enc');
    fs.copyFileSync(v('LAB_SSH_KEY_FILE'), keyFile);
    fs.chmodSync(keyFile, 0o600);
    try {
      execFileSync('ssh-keygen', ['-q', '-p', '-N', CANARY, '-f', keyFile], { stdio: 'ignore' });
    } catch {
      if (process.env.CI === 'true') throw new Error('ssh-keygen is required under CI=true (Debian openssh-client)');
      return;
    }
    const keyText = fs.readFileSync(keyFile, 'utf8');
    const keyBody = keyText.split('\n')[2];
    process.env.FP_TEST_SSH_PASSPHRASE = CANARY;
    const probe = (name: string, extra: string) => `  - name: ${name}
    kind: ssh
    sshProxy: 127.0.0.1:${v('LAB_SSH_PROXY_PORT')}
    user: ${v('LAB_SSH_USER')}
    sshKey: { file: ${keyFile} }
    sshKeyPassphrase: { env: FP_TEST_SSH_PASSPHRASE }
    hostKeys: { file: ${v('LAB_SSH_KNOWN_HOSTS')} }
    device: ${v('LAB_DEVICE_UUID')}
${extra}`;
    const cfg = path.join(dir, 'p.yaml');
    fs.writeFileSync(cfg, 'probes:\n' + probe('enc-ok', '') + probe('enc-fail', `    command: "echo ${CANARY}; false"\n`));
    // Everything a user can see: the run result as JSON, and every log line at trace level.
    let logged = '';
    const sink = pino({ level: 'trace' }, { write: (s: string) => void (logged += s) });
    const { probes } = loadConfig({ paths: [cfg] });
    const ok = await runProbe(probes[0], sshKind as never, { log: sink });
    expect(ok.success, JSON.stringify(ok)).toBe(true);
    const bad = await runProbe(probes[1], sshKind as never, { log: sink });
    expect(bad.reason).toBe('assertion');
    expect(bad.message).toContain('[redacted]');
    const seen = [JSON.stringify(resultToJson(ok)), JSON.stringify(resultToJson(bad)), logged, JSON.stringify(probes[0])].join('\n');
    const at = seen.indexOf(CANARY);
    expect(at, seen.slice(Math.max(0, at - 300), at + 100)).toBe(-1);
    expect(seen).not.toContain(keyBody);
    // A wrong passphrase is a config error naming the field, never the value.
    process.env.FP_TEST_SSH_PASSPHRASE = 'wrong-passphrase-123';
    const wrong = await runCli(['check', '--config', cfg], { env: { FP_TEST_SSH_PASSPHRASE: 'wrong-passphrase-123' } });
    expect(wrong.code).toBe(2);
    expect(wrong.stdout + wrong.stderr).toContain('sshKeyPassphrase: the private key cannot be decrypted with this passphrase');
    expect(wrong.stdout + wrong.stderr).not.toContain('wrong-passphrase-123');
    delete process.env.FP_TEST_SSH_PASSPHRASE;
  });
});

describe('CLI', () => {
  it('the lab probes pass in each mode: fleetprobe run <name> --lab --json', async () => {
    for (const name of ['lab-ssh', 'lab-ssh-container', 'lab-ssh-jump']) {
      const r = await runCli(['run', name, '--lab', '--json']);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ name, kind: 'ssh', success: true });
    }
  });
  it('--fault proxy-agent-empty fails lab-ssh with device_auth in session (exit 1)', async () => {
    const r = await runCli(['run', 'lab-ssh', '--lab', '--json', '--lab-fault', 'proxy-agent-empty']);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ success: false, reason: 'device_auth', phase: 'session' });
  });
  it('--fault proxy-host-error: lab-ssh corroborates through the lab tunnel and fails device_auth, the phase in the timeline', async () => {
    const r = await runCli(['run', 'lab-ssh', '--lab', '--json', '--lab-fault', 'proxy-host-error']);
    expect(r.code).toBe(1);
    const out = JSON.parse(r.stdout) as { reason: string; phase: string; message: string; phases: Record<string, number> };
    expect(out).toMatchObject({ success: false, reason: 'device_auth', phase: 'session' });
    expect(out.message).toContain('its SSH banner came through the tunnel');
    expect(out.message).toContain('the API says it is online');
    expect(Object.keys(out.phases)).toContain('corroborate');
    const offline = await runCli(['run', 'lab-ssh', '--lab', '--json', '--lab-fault', 'proxy-host-error,tunnel-device-offline']);
    expect(JSON.parse(offline.stdout)).toMatchObject({ success: false, reason: 'device_offline', phase: 'session' });
  });
  it('cross-field rules are config errors at load', async () => {
    const dir = tempDir();
    const cfg = path.join(dir, 'p.yaml');
    fs.writeFileSync(
      cfg,
      'probes:\n  - name: s\n    kind: ssh\n    user: u\n    sshKey: { env: NOPE_UNSET_FP }\n    hostKeys: SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n  - name: t\n    kind: ssh\n    mode: jump\n    user: u\n    insecureAcceptAnyHostKey: true\n' +
        '  - name: c\n    kind: ssh\n    device: abc1234\n    user: u\n    insecureAcceptAnyHostKey: true\n    corroborate: { tunnel: true, api: true }\n',
    );
    const r = await runCli(['check', '--config', cfg], { env: { SSH_AUTH_SOCK: '' } });
    expect(r.code).not.toBe(0);
    const out = r.stdout + r.stderr;
    expect(out).toContain('NOPE_UNSET_FP');
    expect(out).toContain('probes[1].host: is required in jump mode');
    expect(out).toContain('probes[1].bastion: is required in jump mode');
    expect(out).toContain('probes[2].corroborate.tunnel: needs `tunnel` and `token`');
    expect(out).toContain('probes[2].corroborate.api: needs `api` and `token`');
  });
});
