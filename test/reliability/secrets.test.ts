import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { utils } from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DaemonProcess, failedRuns, ROOT, runCli, tempDir } from '../helpers/cli.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { closedPort, connectPeer, httpPeer, httpsPeer, rawPeer, selfSignedCert, type Peer } from '../helpers/http-peers.js';
import { sshPeer } from '../helpers/ssh-peers.js';
import { generateLabKey } from '../../src/lab/ssh-server.js';
import type { LabServer } from '../../src/lab/listen.js';

/**
 * Canary secrets in config ({env} and {file}), sent by probes that fail in every way a message could
 * carry them: peers echoing our headers in bodies, headers and raw bytes, redirects carrying the
 * token in the Location, credentials in URLs, plus DNS, TLS, timeout and lab failures. Afterwards no
 * canary, in any encoding it is sent in, appears in the daemon's log, /metrics, /probes, or the
 * CLI's text and JSON output.
 *
 * Peers also echo what is derived from a secret (issue 19): the token alone of a `Bearer <token>`
 * header, in other case (a redirect's host, lowercased by URL parsing), base64 at any alignment
 * inside a longer encoded text, and the tunnel's `base64(user:token)` without its `Basic ` prefix
 * in a proxy's non-HTTP answer, a device banner and SSH output; a builder quotes it in the build
 * log (the target-output lines `fleetprobe run` prints). Every comparison ignores case.
 *
 * A kind joins by adding rows to SECRET_PROBES (its secret fields: key passphrases, private keys,
 * tokens) pointing at its lab endpoints and peers. The ssh rows carry a passphrase-protected private
 * key: neither the passphrase nor any line of the key may appear.
 */

const ENV_CANARY = 'fpcanary-env-7Hq2Zk9wQx';
const FILE_CANARY = 'fpcanary-file-Lm4Rt8Vb2N';
const URL_CANARY = 'fpcanary-url-Pz6Jd3Kc1S';
const PASSPHRASE_CANARY = 'fpcanary-pass-Qw7Ey2Ui5O';
const CANARIES = [ENV_CANARY, FILE_CANARY, URL_CANARY, PASSPHRASE_CANARY];
// A private key protected by the passphrase canary: none of its lines may appear anywhere either.
const KEY = encryptedKey(PASSPHRASE_CANARY);
const KEY_LINES = KEY.split('\n').filter((l) => l.length >= 20 && !l.startsWith('-----'));

/** ssh2 makes an ed25519 key it cannot parse back about 1 time in 280 (see src/lab): retry those. */
function encryptedKey(passphrase: string): string {
  for (;;) {
    // One KDF round: every CLI run and config load decrypts it, and the test is not about bcrypt's cost.
    const key = utils.generateKeyPairSync('ed25519', { passphrase, cipher: 'aes256-cbc', rounds: 1 }).private;
    if (!(utils.parseKey(key, passphrase) instanceof Error)) return key;
  }
}

const b64 = (t: string) => Buffer.from(t).toString('base64');
/**
 * The base64 characters of `s` alone at each alignment inside a longer encoded text (1 or 2 bytes
 * before it shift its groups): what survives of a secret in a base64-encoded echo of a request.
 */
const shifted = (s: string) => [0, 1, 2].map((k) => b64('\0'.repeat(k) + s).slice(k ? 4 : 0, Math.floor((k + s.length) / 3) * 4));

/** Every form a canary may travel in: as is, base64 (alone, shifted, as a Bearer value, as Basic user:token), URL-encoded. */
function forms(s: string): string[] {
  return [s, b64(s), ...shifted(s), b64(`Bearer ${s}`), b64(`probe-bot:${s}`), `probe-bot:${s}`, encodeURIComponent(`Bearer ${s}`)];
}
function leaks(text: string): string[] {
  const lower = text.toLowerCase();
  return [...CANARIES.flatMap(forms), ...KEY_LINES].filter((f) => lower.includes(f.toLowerCase()));
}

interface SecretProbe {
  name: string;
  /** YAML of the probe, indented for a `probes:` list. */
  yaml: string;
  /** Needs the embedded lab (file marked lab: true, runs with --lab). */
  lab?: boolean;
}

let dir: string;
let peers: Peer[] = [];
let proxies: FaultProxy[] = [];
let servers: LabServer[] = [];
let SECRET_PROBES: SecretProbe[] = [];
let daemon: DaemonProcess | undefined;
const env = { FP_CANARY_TOKEN: `Bearer ${ENV_CANARY}`, FP_URL_CANARY: URL_CANARY, FP_KEY_PASSPHRASE: PASSPHRASE_CANARY };

const http = (name: string, url: string, extra = '') =>
  `  - name: ${name}\n    kind: http\n    url: ${url}\n    headers:\n      authorization: { env: FP_CANARY_TOKEN }\n      x-api-key: { file: token.txt }\n${extra}`;

const ssh = (name: string, proxy: string) =>
  `  - name: ${name}\n    kind: ssh\n    sshProxy: ${proxy}\n    user: lab-user\n    sshKey: { file: key }\n    sshKeyPassphrase: { env: FP_KEY_PASSPHRASE }\n    hostKeys: "${FAKE_FINGERPRINT}"\n    device: c0ffee00000000000000000000000001\n    command: uname\n`;
const tunnel = (name: string, proxy: string, tls: string) =>
  `  - name: ${name}\n    kind: tunnel\n    tunnel: ${proxy}\n    tunnelTls: ${tls}\n    user: probe-bot\n    token: { file: token.txt }\n    device: c0ffee00000000000000000000000001\n    port: 80\n`;
const build = (name: string, builder: string, extra = '') =>
  `  - name: ${name}\n    kind: build\n    interval: 5s\n    timeout: 4s\n    fleet: lab/probe-fleet\n    builder: ${builder}\n    api: ${builder}\n    token: { file: token.txt }\n    context: ${JSON.stringify(path.join(ROOT, 'probes', 'build-context'))}\n${extra}`;
const deviceStatus = (name: string, api: string, extra = '') =>
  `  - name: ${name}\n    kind: device-status\n    api: ${api}\n    token: { file: token.txt }\n    tunnel: 127.0.0.1:1\n    tunnelTls: false\n    device: c0ffee00000000000000000000000003\n${extra}`;
// Not the lab proxy's key: the run fails on the host key at the latest, having used the private key setup.
const FAKE_FINGERPRINT = 'SHA256:' + 'A'.repeat(43);

beforeAll(async () => {
  dir = tempDir('fleetprobe-secrets-');
  fs.writeFileSync(path.join(dir, 'token.txt'), FILE_CANARY + '\n');
  fs.writeFileSync(path.join(dir, 'key'), KEY, { mode: 0o600 });
  const echoHeaders = (h: Record<string, unknown>) => JSON.stringify(h);
  // 500 with every request header in the body: the failure message quotes the body.
  const echoBody = await httpPeer((req, res) => {
    req.resume();
    res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(`you sent: ${echoHeaders(req.headers)} to ${req.url}`);
  });
  // 200 with our headers in its own headers: the header check quotes the value.
  const echoHeader = await httpPeer((req, res) => {
    req.resume();
    res.writeHead(200, { 'x-echo': String(req.headers.authorization), 'x-key': String(req.headers['x-api-key']) });
    res.end('ok');
  });
  const closed = await closedPort();
  // A redirect carrying the token in the query, to an origin that refuses; and one to itself forever.
  const redirect = await httpPeer((req, res) => {
    req.resume();
    const token = encodeURIComponent(String(req.headers.authorization));
    const loop = req.url?.startsWith('/loop');
    res.writeHead(302, { location: loop ? `/loop?token=${token}&key=${req.headers['x-api-key']}` : `http://127.0.0.1:${closed}/cb?token=${token}` });
    res.end();
  });
  // Not HTTP at all: our request bytes, verbatim, as the answer.
  const rawEcho = await rawPeer((s) => s.once('data', (d) => s.end(Buffer.concat([Buffer.from('HTTP/1.1 2x0 '), d]))));
  const tlsSelfSigned = await httpsPeer(selfSignedCert(), (_req, res) => res.end('ok'));
  // A CONNECT proxy that refuses with our request (and its Proxy-Authorization) quoted back.
  const echoProxy = await rawPeer((s) =>
    s.once('data', (d) => s.end(Buffer.concat([Buffer.from('HTTP/1.0 502 Bad Gateway\r\ncontent-type: text/plain\r\n\r\nyou sent: '), d]))),
  );
  // A builder that refuses with our Authorization header quoted back, in its body and a header.
  const echoBuilder = await httpPeer((req, res) => {
    req.resume();
    res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': String(req.headers.authorization) });
    res.end(JSON.stringify({ error: `bad token ${req.headers.authorization}`, headers: req.headers }));
  });
  const echoes = await derivedFormEchoes();
  const blackhole = await startFaultProxy({ port: echoBody.port }, { type: 'blackhole' });
  const resetter = await startFaultProxy({ port: echoBody.port }, { type: 'reset', afterBytes: 10, direction: 'upstream' });
  peers = [echoBody, echoHeader, redirect, rawEcho, tlsSelfSigned, echoProxy, echoBuilder, ...echoes.peers];
  servers = [echoes.ssh];
  fs.writeFileSync(path.join(dir, 'tunnel-ssh-key'), echoes.userKey, { mode: 0o600 });
  proxies = [blackhole, resetter];

  SECRET_PROBES = [
    { name: 'http-echo-body', yaml: http('http-echo-body', `${echoBody.url}/?q=${'$'}{FP_URL_CANARY}`) },
    { name: 'http-echo-header', yaml: http('http-echo-header', echoHeader.url, '    expect:\n      headers: { x-echo: "^nope$" }\n') },
    { name: 'http-echo-key', yaml: http('http-echo-key', echoHeader.url, '    expect:\n      headers: { x-key: "^nope$" }\n') },
    { name: 'http-redirect-token', yaml: http('http-redirect-token', redirect.url) },
    { name: 'http-redirect-loop', yaml: http('http-redirect-loop', `${redirect.url}/loop`) },
    { name: 'http-raw-echo', yaml: http('http-raw-echo', rawEcho.url) },
    { name: 'http-userinfo', yaml: http('http-userinfo', `http://fleet:${'$'}{FP_URL_CANARY}@127.0.0.1:${echoBody.port}/`) },
    { name: 'http-userinfo-dns', yaml: http('http-userinfo-dns', `https://fleet:${'$'}{FP_URL_CANARY}@no-such-host.invalid/?token=${'$'}{FP_URL_CANARY}`) },
    { name: 'http-tls', yaml: http('http-tls', tlsSelfSigned.url) },
    { name: 'http-timeout', yaml: http('http-timeout', `http://127.0.0.1:${blackhole.port}/`) },
    { name: 'http-reset', yaml: http('http-reset', `http://127.0.0.1:${resetter.port}/`) },
    // ssh: a passphrase-protected key (both secrets) the lab proxy does not know, and a proxy that does not resolve.
    { name: 'ssh-refused-key', lab: true, yaml: ssh('ssh-refused-key', '127.0.0.1:${LAB_SSH_PROXY_PORT}') },
    { name: 'ssh-no-such-proxy', yaml: ssh('ssh-no-such-proxy', 'no-such-host.invalid:22') },
    // tunnel: a wrong token (the file canary) at the lab proxy, and a proxy quoting our request back.
    {
      name: 'tunnel-wrong-token',
      lab: true,
      yaml: tunnel('tunnel-wrong-token', '127.0.0.1:${LAB_TUNNEL_PORT}', '{ caFile: "${LAB_CA_FILE}", serverName: "${LAB_TUNNEL_HOST}" }'),
    },
    { name: 'tunnel-echo-proxy', yaml: tunnel('tunnel-echo-proxy', `127.0.0.1:${echoProxy.port}`, 'false') },
    // build: a wrong token at the lab builder, and a builder quoting our token back.
    { name: 'build-wrong-token', lab: true, yaml: build('build-wrong-token', '${LAB_BUILDER_URL}', '    tls: { caFile: "${LAB_CA_FILE}" }\n') },
    { name: 'build-echo-builder', yaml: build('build-echo-builder', echoBuilder.url) },
    // device-status: a wrong token at the lab API, and an API quoting our token back (the builder peer answers any path).
    { name: 'status-wrong-token', lab: true, yaml: deviceStatus('status-wrong-token', '${LAB_API_URL}', '    tls: { caFile: "${LAB_CA_FILE}" }\n') },
    { name: 'status-echo-api', yaml: deviceStatus('status-echo-api', echoBuilder.url) },
    // Derived forms: the token alone, in other case, base64 at any alignment, user:token bare.
    { name: 'http-echo-token', yaml: http('http-echo-token', echoes.token.url) },
    { name: 'http-redirect-host', yaml: http('http-redirect-host', echoes.redirectHost.url) },
    { name: 'tunnel-bare-basic-answer', yaml: bareBasic('tunnel-bare-basic-answer', echoes.proxy.port, 'port: 1') },
    { name: 'tunnel-bare-basic-banner', yaml: bareBasic('tunnel-bare-basic-banner', echoes.proxy.port, 'port: 2\n    expect: { banner: "^SSH-2\\\\.0-" }') },
    {
      name: 'tunnel-bare-basic-ssh',
      yaml: bareBasic(
        'tunnel-bare-basic-ssh',
        echoes.proxy.port,
        `port: 22\n    ssh: { sshKey: { file: tunnel-ssh-key }, hostKeys: "${echoes.ssh.fingerprint}", command: uname }`,
      ),
    },
    { name: 'build-echo-log', yaml: build('build-echo-log', echoes.builder.url) },
    {
      name: 'lab-offline',
      lab: true,
      yaml: http(
        'lab-offline',
        'https://${LAB_DEVICE_UUID}.${LAB_URL_DOMAIN}:${LAB_URL_FRONT_PORT}/health',
        '    resolve: 127.0.0.1\n    tls: { caFile: "${LAB_CA_FILE}" }\n',
      ),
    },
  ];
  const file = (lab: boolean) =>
    `${lab ? 'lab: true\n' : ''}defaults:\n  interval: 1s\n  timeout: 800ms\nprobes:\n${SECRET_PROBES.filter((p) => Boolean(p.lab) === lab)
      .map((p) => p.yaml)
      .join('')}`;
  fs.writeFileSync(path.join(dir, 'peers.yaml'), file(false));
  fs.writeFileSync(path.join(dir, 'lab.yaml'), file(true));
}, 30_000);

afterAll(async () => {
  await daemon?.stop();
  for (const p of [...peers, ...proxies, ...servers]) await p.close();
});

const bareBasic = (name: string, port: number, extra: string) =>
  `  - name: ${name}\n    kind: tunnel\n    tunnel: 127.0.0.1:${port}\n    tunnelTls: false\n    user: probe-bot\n    token: { file: token.txt }\n    device: c0ffee00000000000000000000000001\n    ${extra}\n`;

/**
 * Peers that echo what is derived from our secrets rather than the secrets as configured: the
 * token part of `Authorization: Bearer <token>` (as is, upper-cased, and base64 of the request at
 * two alignments), a redirect to a host made of the token (lowercased by URL parsing, then a DNS
 * failure quoting it), a CONNECT proxy quoting `base64(user:token)` and `user:token` without the
 * `Basic ` prefix (by the device port asked for: 1 a non-HTTP answer, 2 a device banner, 22 an SSH
 * device whose command prints them), and a builder quoting the token in its build log.
 */
async function derivedFormEchoes() {
  const tokenOf = (auth: unknown) => String(auth).replace(/^\S+\s+/, '');
  const token = await httpPeer((req, res) => {
    req.resume();
    const t = tokenOf(req.headers.authorization);
    const all = `${req.method} ${req.url} ${JSON.stringify(req.headers)}`;
    res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(`token ${t}; TOKEN ${t.toUpperCase()}; key ${req.headers['x-api-key']}; request ${b64('x' + all)} ${b64('yz' + all)}`);
  });
  const redirectHost = await httpPeer((req, res) => {
    req.resume();
    res.writeHead(302, { location: `http://${tokenOf(req.headers.authorization).toUpperCase()}.${String(req.headers['x-api-key'])}.invalid/` });
    res.end();
  });
  const userKey = generateLabKey('tunnel-user');
  const ssh = await sshPeer(userKey, (_command, stream) => {
    stream.write(`${lastBasic}\n${Buffer.from(lastBasic, 'base64').toString()}\n`);
    stream.exit(1);
    stream.end();
  });
  let lastBasic = '';
  const proxy = await connectPeer((s, head) => {
    const basic = /Proxy-Authorization: Basic (\S+)/i.exec(head)?.[1] ?? '';
    const userToken = Buffer.from(basic, 'base64').toString();
    lastBasic = basic;
    const port = /^CONNECT \S+:(\d+)/.exec(head)?.[1];
    if (port === '1') return void s.end(`ERR ${basic} ${userToken}\r\n`);
    if (port === '2') return void s.end(`HTTP/1.0 200 OK\r\n\r\nHELLO ${basic} ${userToken}\r\n`);
    s.write('HTTP/1.0 200 Connection established\r\n\r\n');
    const device = net.connect(ssh.port, '127.0.0.1');
    device.on('error', () => s.destroy());
    s.on('error', () => device.destroy());
    s.pipe(device).pipe(s);
  });
  const builder = await httpPeer((req, res) => {
    req.resume();
    const t = tokenOf(req.headers.authorization);
    res.writeHead(200, { 'content-type': 'application/json' });
    const lines = [`Step 1/2 with ${t.toLowerCase()}`, `auth ${b64('q' + String(req.headers.authorization))}`, `Step 2/2 ${t.toUpperCase()}`];
    res.end(JSON.stringify([...lines.map((message) => ({ message })), { message: `failed: ${t}`, isError: true }]));
  });
  return { token, redirectHost, proxy, ssh, userKey: userKey.private, builder, peers: [token, redirectHost, proxy, builder] };
}

describe('secrets never leave the process', () => {
  it('daemon: log lines, /metrics, /probes and the status page after every probe failed', async () => {
    daemon = new DaemonProcess(['--lab', '--lab-fault', 'device-offline', '--config', dir, '--log-level', 'debug'], env);
    const base = await daemon.url();
    const failedOnce = (t: string) => SECRET_PROBES.every((p) => failedRuns(t, p.name) >= 1);
    const metrics = await daemon.waitForMetrics(failedOnce, 20_000);
    const probes = await (await fetch(`${base}/probes`)).text();
    // The run history and the status page: every probe's JSON and page (its config as loaded).
    const pages: Record<string, string> = {};
    for (const target of ['/', '/?failing=1', ...SECRET_PROBES.flatMap((p) => [`/probes/${p.name}`, `/probe/${p.name}`])]) {
      pages[target] = await (await fetch(`${base}${target}`)).text();
    }
    expect(await daemon.stop()).toBe(0);

    // Every probe really failed, with a message (the place a secret would show up).
    const parsed = JSON.parse(probes) as { name: string; lastRun: { success: boolean; reason: string; message: string } }[];
    for (const p of parsed) {
      expect(p.lastRun.success, p.name).toBe(false);
      expect(p.lastRun.reason, p.name).not.toBe('internal');
      expect(p.lastRun.message, p.name).toBeTruthy();
    }
    expect(daemon.lines.filter((l) => l.level === 'warn' && /failed in/.test(String(l.msg))).length).toBeGreaterThanOrEqual(SECRET_PROBES.length);
    expect(leaks(daemon.raw), 'daemon log').toEqual([]);
    expect(leaks(metrics), '/metrics').toEqual([]);
    expect(leaks(probes), '/probes').toEqual([]);
    for (const [target, text] of Object.entries(pages)) expect(leaks(text), target).toEqual([]);
    expect(JSON.parse(pages[`/probes/${SECRET_PROBES[0].name}`]).failures.length, 'failures kept').toBeGreaterThan(0);
    // The derived-form peers were reached and answered as meant (their failures carry the echo).
    const byName = new Map(parsed.map((p) => [p.name, p.lastRun]));
    expect(byName.get('http-redirect-host')?.reason).toBe('dns');
    expect(byName.get('tunnel-bare-basic-answer')?.reason).toBe('protocol');
    expect(byName.get('tunnel-bare-basic-banner')?.message).toMatch(/first line "HELLO \[redacted\]/);
    expect(byName.get('tunnel-bare-basic-ssh')?.message).toMatch(/exited with status 1.*stdout: \[redacted\]/);
    expect(byName.get('build-echo-log')?.reason).toBe('build_failed');
  }, 40_000);

  it('CLI: run (text and --json), list and check', async () => {
    // Every probe in both forms; lab probes (each `run --lab` starts a whole lab) in one form each,
    // alternating, so both forms still see every kind's lab failures.
    let alternate = false;
    const runs = SECRET_PROBES.flatMap((p) => {
      const common = ['--config', dir, ...(p.lab ? ['--lab', '--lab-fault', 'device-offline'] : [])];
      alternate = p.lab ? !alternate : alternate;
      if (p.lab) return [alternate ? ['run', p.name, ...common] : ['run', p.name, '--json', ...common]];
      return [
        ['run', p.name, ...common],
        ['run', p.name, '--json', ...common],
      ];
    });
    runs.push(['list', '--config', dir, '--lab', '--json'], ['list', '--config', dir, '--lab'], ['check', '--config', dir, '--lab']);
    // A few at a time: each is a Node process (and a lab for lab probes).
    const results: Awaited<ReturnType<typeof runCli>>[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (next < runs.length) {
          const i = next++;
          results[i] = await runCli(runs[i], { env: { ...env, FLEETPROBE_LOG_LEVEL: 'debug' }, timeoutMs: 30_000 });
        }
      }),
    );
    results.forEach((r, i) => {
      const args = runs[i];
      if (args[0] === 'run') expect(r.code, `${args.join(' ')}\n${r.stdout}${r.stderr}`).toBe(1);
      else expect(r.code, `${args.join(' ')}\n${r.stderr}`).toBe(0);
      if (args.includes('--json') && args[0] === 'run') expect(JSON.parse(r.stdout).message).toBeTruthy();
      expect(leaks(r.stdout + r.stderr), args.join(' ')).toEqual([]);
    });
  }, 90_000);

  it('CLI: run with many probes and gate (lines, table, --json Lines, --junit reports)', async () => {
    const common = ['--config', dir, '--lab', '--lab-fault', 'device-offline'];
    // The gates stop at the period's end (no probe fails 3 times in 1 s), not at the first probe's failures.
    const gate = ['gate', '--for', '1s', '--every', '1s', '--fail-after', '3'];
    const cases: [string[], number][] = [
      [['run', '--all', '--repeat', '2', ...common], 1],
      [['run', '--all', '--json', ...common], 1],
      [[...gate, ...common], 0],
      [[...gate, '--json', ...common], 0],
    ];
    await Promise.all(
      cases.map(async ([args, code]) => {
        const junit = path.join(tempDir(), 'report.xml');
        const r = await runCli([...args, '--junit', junit], { env: { ...env, FLEETPROBE_LOG_LEVEL: 'debug' }, timeoutMs: 40_000 });
        expect(r.code, `${args.join(' ')}\n${r.stdout}${r.stderr}`).toBe(code);
        const report = fs.readFileSync(junit, 'utf8');
        // Every probe failed, each run with its message in the report (where a secret would show up).
        const runs = args.includes('--repeat') ? 2 : 1;
        for (const p of SECRET_PROBES) {
          const testcase = new RegExp(`<testcase name="${p.name}"[\\s\\S]*?</testcase>`).exec(report)?.[0] ?? '';
          expect(testcase.match(/\] \S+ FAIL \w+ in \w+ [\d.]+m?s: ./g)?.length, `${args.join(' ')}: ${p.name}`).toBeGreaterThanOrEqual(runs);
        }
        expect(leaks(r.stdout + r.stderr), args.join(' ')).toEqual([]);
        expect(leaks(report), `${args.join(' ')}: JUnit report`).toEqual([]);
      }),
    );
  }, 60_000);
});
