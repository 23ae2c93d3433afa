import type net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { ProbeSpec } from '../../src/core/kind.js';
import type { Reason } from '../../src/core/reasons.js';
import type { RunResult } from '../../src/core/result.js';
import { runProbe } from '../../src/core/run.js';
import { KINDS } from '../../src/kinds/index.js';
import type { LabFault } from '../../src/lab/index.js';
import { PASS, startFaultProxy, type FaultMode, type FaultProxy } from '../helpers/fault-proxy.js';
import { closedPort, httpPeer, rawPeer, type Peer } from '../helpers/http-peers.js';

/**
 * The fault matrix: for every probe kind, how each way of breaking its path must end (the exact
 * reason and phase), and which degraded-but-working paths must still pass. One table serves the
 * matrix test, the leak test (as its mix of faults), the timeout test (its stall rows) and the
 * matrix in docs/reliability.md (`npm run docs:matrix`), so the documentation is what the tests prove.
 *
 * Adding a kind = one MatrixKind entry: `start` brings up what its probes talk to (the shared lab
 * is already running) and names those TCP endpoints as targets; `spec` builds a probe that reaches
 * a target through a given local port (the fault proxy's); `cases` are its rows.
 */

export type Expected = 'pass' | { reason: Reason; phase: string };

/** What rows need of the lab: the in-process Lab, or the lab in a child process (test/helpers/lab-process.ts). */
export interface MatrixLab {
  vars: Record<string, string>;
  caFile: string;
  controlUrl: string;
  faults: { set(name: string, on: boolean): unknown };
}

/** Timeout of matrix runs: long enough for a healthy run through a slow path, short for the stalls. */
export const MATRIX_TIMEOUT_MS = 1500;

export interface SpecOptions {
  /** Which of the kind's targets the probe addresses (its URL shape, names, credentials). */
  target: string;
  /** The local port the probe connects to (the fault proxy in front of the target, or another). */
  port: number;
  timeoutMs: number;
  /** The probe's host name does not resolve (and is not pinned to an address). */
  unresolvable?: boolean;
  name?: string;
}

export interface KindEnv {
  /** TCP endpoints on 127.0.0.1 by name; the first is the default target. */
  targets: Record<string, number>;
  spec(opts: SpecOptions): ProbeSpec;
  /**
   * Chunk sizes of one healthy exchange per target and direction, measured through a pass-through
   * proxy at start, so rows can place a fault at a protocol boundary ("after the TLS handshake")
   * without hard-coding byte counts that change with library versions.
   */
  flow: Record<string, { upstream: number[]; downstream: number[] }>;
  close(): Promise<void>;
}

export interface MatrixCase {
  kind: string;
  /** The fault as the docs' matrix names it. */
  fault: string;
  /** How the test injects it (a column of the docs' matrix). */
  how: string;
  target?: string;
  /** What the fault proxy does (default: pass-through). */
  proxy?: FaultMode | ((env: KindEnv) => FaultMode);
  /** The proxy forwards to this target instead (`closed`: a port nothing listens on). */
  proxyTo?: string;
  /** Connect straight to `proxyTo`, without the proxy. */
  direct?: boolean;
  labFaults?: LabFault[];
  unresolvable?: boolean;
  expect: Expected;
}

export interface MatrixKind {
  kind: string;
  start(lab: MatrixLab, log: Logger): Promise<KindEnv>;
  cases: MatrixCase[];
}

export const outcome = (e: Expected): string => (e === 'pass' ? 'pass' : `\`${e.reason}\` in \`${e.phase}\``);
const fails = (reason: Reason, phase: string): Expected => ({ reason, phase });
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

// ---------------------------------------------------------------------------------------------
// http
// ---------------------------------------------------------------------------------------------

/** A plain-HTTP peer with a body large enough to fault mid-transfer (TLS records of the lab are one chunk). */
const BIG_BODY_BYTES = 256 * 1024;

async function startHttpEnv(lab: MatrixLab, log: Logger): Promise<KindEnv> {
  const body = Buffer.alloc(BIG_BODY_BYTES, 'x');
  const big = await httpPeer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
    res.end(body);
  });
  // A body with no length (it ends when the connection does) that stalls: the run's abort must end
  // it without undici taking our close for the end of the message (which once crashed the process).
  const unbounded = await rawPeer((sock) => sock.once('data', () => sock.write('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\npartial ')));
  const hostile = await hostileHttpPeers();
  const env: KindEnv = {
    targets: {
      front: Number(lab.vars.LAB_URL_FRONT_PORT),
      big: big.port,
      unbounded: unbounded.port,
      ...Object.fromEntries(Object.entries(hostile).map(([k, p]) => [k, p.port])),
    },
    flow: {},
    spec({ target, port, timeoutMs, unresolvable, name = 'matrix-http' }) {
      const host = unresolvable ? 'no-such-device.invalid' : `${lab.vars.LAB_DEVICE_UUID}.${lab.vars.LAB_URL_DOMAIN}`;
      const pin = unresolvable ? {} : { resolve: '127.0.0.1' };
      const fields =
        target === 'big' || target === 'unbounded'
          ? { url: `http://${host}:${port}/big`, ...pin, maxBodyBytes: 2 * BIG_BODY_BYTES, expect: { status: [200] } }
          : target in hostile
            ? { url: `http://${host}:${port}/`, ...pin, expect: { status: [200] } }
            : { url: `https://${host}:${port}/health`, ...pin, tls: { caFile: lab.caFile }, expect: { status: [200], body: `ok ${lab.vars.LAB_DEVICE_UUID}` } };
      return makeSpec('http', name, fields, timeoutMs);
    },
    close: async () => {
      await big.close();
      await unbounded.close();
      for (const p of Object.values(hostile)) await p.close();
    },
  };
  await measureFlow(env, log, ['front', 'big']);
  return env;
}

/** Writes `chunk` to `socket` for as long as the socket takes it: a peer that never stops. */
function pump(socket: net.Socket, chunk: string): void {
  socket.on('error', () => undefined);
  const more = () => {
    while (!socket.destroyed && socket.writable) if (!socket.write(chunk)) return void socket.once('drain', more);
  };
  more();
}

/** http peers that answer to hurt (issue 19), by target name. */
async function hostileHttpPeers(): Promise<Record<string, Peer>> {
  const redirect = (location: string) =>
    httpPeer((req, res) => {
      req.resume();
      res.writeHead(302, { location }).end();
    });
  const answer = (head: string, chunk: string) =>
    rawPeer((sock) =>
      sock.once('data', () => {
        sock.write(head);
        pump(sock, chunk);
      }),
    );
  return {
    'redirect-file': await redirect('file:///etc/passwd'),
    'redirect-garbage': await redirect('http://[::1/'),
    'endless-headers': await answer('HTTP/1.1 200 OK\r\n', `x-junk: ${'j'.repeat(1000)}\r\n`),
    'endless-body': await answer('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n', 'x'.repeat(64 * 1024)),
  };
}

/** Bytes the server sends before its answer to the request (TLS handshake and session tickets). */
const beforeResponse = (env: KindEnv, target = 'front') => sum(env.flow[target].downstream.slice(0, -1));
/**
 * All the client sends but its last byte: the request is the client's last record, so a fault here
 * hits a client that is surely past its handshake (its Finished and the request may arrive in one
 * chunk, so the ClientHello alone is not a safe boundary).
 */
const lastByte = (env: KindEnv, target = 'front') => sum(env.flow[target].upstream) - 1;

const HTTP_CASES: MatrixCase[] = [
  // Paths that are slow or odd but work: never failed for our own reasons.
  { kind: 'http', fault: 'healthy path', how: 'pass-through proxy', expect: 'pass' },
  { kind: 'http', fault: 'latency within the timeout', how: 'proxy: +20 ms per chunk', proxy: { type: 'latency', ms: 20 }, expect: 'pass' },
  { kind: 'http', fault: 'narrow link', how: 'proxy: 64 KiB/s', proxy: { type: 'bandwidth', bytesPerSecond: 64 * 1024 }, expect: 'pass' },
  { kind: 'http', fault: 'server closes late', how: 'proxy: FIN held 2 s', proxy: { type: 'slow-close', ms: 2000 }, expect: 'pass' },
  { kind: 'http', fault: 'healthy large body', how: 'pass-through proxy, 256 KiB body', target: 'big', expect: 'pass' },
  {
    kind: 'http',
    fault: 'large body, server closes late',
    how: 'proxy: FIN held 2 s, 256 KiB body',
    target: 'big',
    proxy: { type: 'slow-close', ms: 2000 },
    expect: 'pass',
  },
  // Name and connection.
  { kind: 'http', fault: 'name does not resolve', how: 'host `no-such-device.invalid`', unresolvable: true, expect: fails('dns', 'resolve') },
  { kind: 'http', fault: 'nothing listens', how: 'a closed port, no proxy', proxyTo: 'closed', direct: true, expect: fails('connect', 'connect') },
  {
    kind: 'http',
    fault: 'target down behind a proxy',
    how: 'proxy to a closed port: accepted, then reset',
    proxyTo: 'closed',
    expect: fails('connect', 'tls'),
  },
  { kind: 'http', fault: 'accepted, never answers', how: 'proxy: blackhole', proxy: { type: 'blackhole' }, expect: fails('timeout', 'tls') },
  {
    kind: 'http',
    fault: 'accepted, target reached late',
    how: 'proxy: 10 s before connecting on',
    proxy: { type: 'latency', ms: 10_000, at: 'connect' },
    expect: fails('timeout', 'tls'),
  },
  { kind: 'http', fault: 'latency beyond the timeout', how: 'proxy: +10 s per chunk', proxy: { type: 'latency', ms: 10_000 }, expect: fails('timeout', 'tls') },
  {
    kind: 'http',
    fault: 'link too narrow for the handshake',
    how: 'proxy: 200 B/s',
    proxy: { type: 'bandwidth', bytesPerSecond: 200 },
    expect: fails('timeout', 'tls'),
  },
  // TLS.
  {
    kind: 'http',
    fault: 'reset on the ClientHello',
    how: 'proxy: reset after 0 B upstream',
    proxy: { type: 'reset', afterBytes: 0, direction: 'upstream' },
    expect: fails('connect', 'tls'),
  },
  {
    kind: 'http',
    fault: 'reset inside the ServerHello',
    how: 'proxy: reset after 1 B downstream',
    proxy: { type: 'reset', afterBytes: 1, direction: 'downstream' },
    expect: fails('connect', 'tls'),
  },
  {
    kind: 'http',
    fault: 'server hangs in the handshake',
    how: 'proxy: half-open after 0 B downstream',
    proxy: { type: 'half-open', afterBytes: 0, direction: 'downstream' },
    expect: fails('timeout', 'tls'),
  },
  { kind: 'http', fault: 'plain HTTP on the TLS port', how: 'proxy to a plain-HTTP server', proxyTo: 'big', expect: fails('tls', 'tls') },
  { kind: 'http', fault: 'expired certificate', how: 'lab fault `expired-cert`', labFaults: ['expired-cert'], expect: fails('tls', 'tls') },
  // Request: the handshake is done, the answer never (fully) comes.
  {
    kind: 'http',
    fault: 'request cut short',
    how: 'proxy: reset on the last byte of the request',
    proxy: (env) => ({ type: 'reset', afterBytes: lastByte(env), direction: 'upstream' }),
    expect: fails('connect', 'request'),
  },
  {
    kind: 'http',
    fault: 'reset before the response',
    how: 'proxy: reset after the handshake bytes downstream',
    proxy: (env) => ({ type: 'reset', afterBytes: beforeResponse(env), direction: 'downstream' }),
    expect: fails('connect', 'request'),
  },
  {
    kind: 'http',
    fault: 'request swallowed',
    how: 'proxy: half-open before the last byte of the request',
    proxy: (env) => ({ type: 'half-open', afterBytes: lastByte(env), direction: 'upstream' }),
    expect: fails('timeout', 'request'),
  },
  {
    kind: 'http',
    fault: 'response never comes',
    how: 'proxy: half-open after the handshake bytes downstream',
    proxy: (env) => ({ type: 'half-open', afterBytes: beforeResponse(env), direction: 'downstream' }),
    expect: fails('timeout', 'request'),
  },
  {
    kind: 'http',
    fault: 'status line cut off',
    how: 'proxy: reset after 1 B downstream, plain HTTP',
    target: 'big',
    proxy: { type: 'reset', afterBytes: 1, direction: 'downstream' },
    expect: fails('connect', 'request'),
  },
  { kind: 'http', fault: 'device answers too slowly', how: 'lab fault `slow-url`', labFaults: ['slow-url'], expect: fails('timeout', 'request') },
  // Transfer.
  // undici reports a body cut short by a reset as shorter than its content-length: the answer is malformed.
  {
    kind: 'http',
    fault: 'reset mid-body',
    how: 'proxy: reset after 64 KiB downstream',
    target: 'big',
    proxy: { type: 'reset', afterBytes: 64 * 1024, direction: 'downstream' },
    expect: fails('protocol', 'transfer'),
  },
  {
    kind: 'http',
    fault: 'body stalls',
    how: 'proxy: half-open after 64 KiB downstream',
    target: 'big',
    proxy: { type: 'half-open', afterBytes: 64 * 1024, direction: 'downstream' },
    expect: fails('timeout', 'transfer'),
  },
  {
    kind: 'http',
    fault: 'body too slow',
    how: 'proxy: 16 KiB/s, 256 KiB body',
    target: 'big',
    proxy: { type: 'bandwidth', bytesPerSecond: 16 * 1024 },
    expect: fails('timeout', 'transfer'),
  },
  {
    kind: 'http',
    fault: 'body without a length stalls',
    how: 'a peer: no content-length, then silence',
    target: 'unbounded',
    direct: true,
    proxyTo: 'unbounded',
    expect: fails('timeout', 'transfer'),
  },
  {
    kind: 'http',
    fault: 'device offline',
    how: 'lab fault `device-offline` (platform error page)',
    labFaults: ['device-offline'],
    expect: fails('device_offline', 'transfer'),
  },
  // Hostile peers: bounded reads, and redirects that are never followed.
  { kind: 'http', fault: 'endless body', how: 'a peer: 200 without a length, then bytes without end', target: 'endless-body', expect: 'pass' },
  {
    kind: 'http',
    fault: 'endless response head',
    how: 'a peer: 200, then header lines without end',
    target: 'endless-headers',
    expect: fails('protocol', 'request'),
  },
  {
    kind: 'http',
    fault: 'redirect to a non-HTTP URL',
    how: 'a peer: 302 to `file:///etc/passwd`',
    target: 'redirect-file',
    expect: fails('assertion', 'transfer'),
  },
  {
    kind: 'http',
    fault: 'redirect to a Location that is not a URL',
    how: 'a peer: 302 to `http://[::1/`',
    target: 'redirect-garbage',
    expect: fails('protocol', 'transfer'),
  },
];

// ---------------------------------------------------------------------------------------------
// Rows every TCP-based kind shares: the path to its first target, broken in the same ways. The
// kind says only where each lands (the phase its protocol is in when the fault hits).
// ---------------------------------------------------------------------------------------------

interface CommonPhases {
  kind: string;
  /** The phase of the first bytes exchanged (`tls`, `handshake`). */
  first: string;
  /** The reason when the target speaks another protocol (plain HTTP) on the port. */
  wrongProtocol: Expected;
  /** Target name of a plain-HTTP server the kind's env offers. */
  plainHttp: string;
}

function commonRows({ kind, first, wrongProtocol, plainHttp }: CommonPhases): MatrixCase[] {
  return [
    { kind, fault: 'healthy path', how: 'pass-through proxy', expect: 'pass' },
    { kind, fault: 'latency within the timeout', how: 'proxy: +20 ms per chunk', proxy: { type: 'latency', ms: 20 }, expect: 'pass' },
    { kind, fault: 'narrow link', how: 'proxy: 64 KiB/s', proxy: { type: 'bandwidth', bytesPerSecond: 64 * 1024 }, expect: 'pass' },
    { kind, fault: 'name does not resolve', how: 'host `no-such-host.invalid`', unresolvable: true, expect: fails('dns', 'resolve') },
    { kind, fault: 'nothing listens', how: 'a closed port, no proxy', proxyTo: 'closed', direct: true, expect: fails('connect', 'connect') },
    { kind, fault: 'target down behind a proxy', how: 'proxy to a closed port: accepted, then reset', proxyTo: 'closed', expect: fails('connect', first) },
    { kind, fault: 'accepted, never answers', how: 'proxy: blackhole', proxy: { type: 'blackhole' }, expect: fails('timeout', first) },
    {
      kind,
      fault: 'accepted, target reached late',
      how: 'proxy: 10 s before connecting on',
      proxy: { type: 'latency', ms: 10_000, at: 'connect' },
      expect: fails('timeout', first),
    },
    { kind, fault: 'latency beyond the timeout', how: 'proxy: +10 s per chunk', proxy: { type: 'latency', ms: 10_000 }, expect: fails('timeout', first) },
    {
      kind,
      fault: 'reset on the first client bytes',
      how: 'proxy: reset after 0 B upstream',
      proxy: { type: 'reset', afterBytes: 0, direction: 'upstream' },
      expect: fails('connect', first),
    },
    {
      kind,
      fault: "reset inside the server's first answer",
      how: 'proxy: reset after 1 B downstream',
      proxy: { type: 'reset', afterBytes: 1, direction: 'downstream' },
      expect: fails('connect', first),
    },
    {
      kind,
      fault: 'server hangs in the handshake',
      how: 'proxy: half-open after 0 B downstream',
      proxy: { type: 'half-open', afterBytes: 0, direction: 'downstream' },
      expect: fails('timeout', first),
    },
    { kind, fault: 'another protocol on the port', how: 'proxy to a plain-HTTP server', proxyTo: plainHttp, expect: wrongProtocol },
  ];
}

/** Targets every env can offer: a plain-HTTP server (the lab's control server answers anything). */
const plainHttpTarget = (lab: MatrixLab) => ({ 'plain-http': Number(new URL(lab.controlUrl).port) });

/**
 * The env of a kind whose probe reaches one lab endpoint by host and port: `probe` gives the kind's
 * fields for a host and port (the host is a name that does not resolve for the dns row).
 */
async function labPortEnv(
  lab: MatrixLab,
  log: Logger,
  target: string,
  port: number,
  probe: (host: string, port: number, target: string) => { kind: string; fields: Record<string, unknown> },
  peers: Record<string, Peer> = {},
): Promise<KindEnv> {
  const env: KindEnv = {
    targets: { [target]: port, ...plainHttpTarget(lab), ...Object.fromEntries(Object.entries(peers).map(([k, p]) => [k, p.port])) },
    flow: {},
    spec({ target: to, port: via, timeoutMs, unresolvable, name }) {
      const { kind, fields } = probe(unresolvable ? 'no-such-host.invalid' : '127.0.0.1', via, to);
      return makeSpec(kind, name ?? `matrix-${kind}`, fields, timeoutMs);
    },
    close: async () => {
      for (const p of Object.values(peers)) await p.close();
    },
  };
  await measureFlow(env, log, [target]);
  return env;
}

// ---------------------------------------------------------------------------------------------
// ssh
// ---------------------------------------------------------------------------------------------

/** Pinned by fingerprint: known_hosts names the proxy by its own port, the probe dials the fault proxy's. */
const startSshEnv = (lab: MatrixLab, log: Logger) =>
  labPortEnv(lab, log, 'ssh-proxy', Number(lab.vars.LAB_SSH_PROXY_PORT), (host, port) => ({
    kind: 'ssh',
    fields: {
      mode: 'proxy',
      sshProxy: `${host}:${port}`,
      user: lab.vars.LAB_SSH_USER,
      sshKey: { file: lab.vars.LAB_SSH_KEY_FILE },
      hostKeys: lab.vars.LAB_SSH_PROXY_FINGERPRINT,
      device: lab.vars.LAB_DEVICE_UUID,
      command: 'cat /etc/os-release',
      expect: { stdout: 'balenaOS' },
      // A bare "host error" is corroborated through the lab's tunnel and API (as lab-ssh does).
      tunnel: `127.0.0.1:${lab.vars.LAB_TUNNEL_PORT}`,
      tunnelTls: { caFile: lab.vars.LAB_CA_FILE, serverName: lab.vars.LAB_TUNNEL_HOST },
      api: lab.vars.LAB_API_URL,
      token: { file: lab.vars.LAB_BUILDER_TOKEN_FILE },
      corroborate: { timeout: '2s', tls: { caFile: lab.vars.LAB_CA_FILE } },
    },
  }));

const SSH_CASES: MatrixCase[] = [
  ...commonRows({ kind: 'ssh', first: 'handshake', wrongProtocol: fails('protocol', 'handshake'), plainHttp: 'plain-http' }),
  {
    kind: 'ssh',
    fault: 'banner, then silence',
    how: "proxy: half-open after the server's banner",
    proxy: (env) => ({ type: 'half-open', afterBytes: env.flow['ssh-proxy'].downstream[0], direction: 'downstream' }),
    expect: fails('timeout', 'handshake'),
  },
  {
    kind: 'ssh',
    fault: 'host key changed',
    how: 'lab fault `proxy-hostkey-changed`',
    labFaults: ['proxy-hostkey-changed'],
    expect: fails('hostkey', 'handshake'),
  },
  { kind: 'ssh', fault: 'our key refused', how: 'lab fault `proxy-reject-key`', labFaults: ['proxy-reject-key'], expect: fails('auth', 'auth') },
  {
    kind: 'ssh',
    fault: 'proxy cannot authenticate to the device',
    how: 'lab fault `proxy-agent-empty`',
    labFaults: ['proxy-agent-empty'],
    expect: fails('device_auth', 'session'),
  },
  { kind: 'ssh', fault: 'device offline', how: 'lab fault `device-offline`', labFaults: ['device-offline'], expect: fails('device_offline', 'session') },
  {
    kind: 'ssh',
    fault: 'proxy refused by the device',
    how: 'lab fault `proxy-device-refused` ("Connection refused")',
    labFaults: ['proxy-device-refused'],
    expect: fails('device_offline', 'session'),
  },
  {
    kind: 'ssh',
    fault: 'proxy cannot authenticate, said in words',
    how: 'lab fault `proxy-device-auth-failed` ("unable to authenticate")',
    labFaults: ['proxy-device-auth-failed'],
    expect: fails('device_auth', 'session'),
  },
  {
    kind: 'ssh',
    fault: 'bare host error, device up through the tunnel',
    how: 'lab fault `proxy-host-error`',
    labFaults: ['proxy-host-error'],
    expect: fails('device_auth', 'session'),
  },
  {
    kind: 'ssh',
    fault: 'bare host error, device off the VPN',
    how: 'lab faults `proxy-host-error`, `tunnel-device-offline`',
    labFaults: ['proxy-host-error', 'tunnel-device-offline'],
    expect: fails('device_offline', 'session'),
  },
  {
    kind: 'ssh',
    fault: 'bare host error, no second path can tell',
    how: 'lab faults `proxy-host-error`, `tunnel-token-revoked`, `api-errors`',
    labFaults: ['proxy-host-error', 'tunnel-token-revoked', 'api-errors'],
    expect: fails('proxy', 'session'),
  },
  { kind: 'ssh', fault: 'device too slow to start a session', how: 'lab fault `device-slow`', labFaults: ['device-slow'], expect: fails('timeout', 'session') },
  { kind: 'ssh', fault: 'session cut mid-output', how: 'lab fault `session-drop`', labFaults: ['session-drop'], expect: fails('connect', 'command') },
];

// ---------------------------------------------------------------------------------------------
// tunnel
// ---------------------------------------------------------------------------------------------

/** A CONNECT proxy that lets the tunnel open, then the device writes without end (no newline). */
const floodingDevice = () =>
  rawPeer((sock) =>
    sock.once('data', () => {
      sock.write('HTTP/1.0 200 Connection established\r\n\r\n');
      pump(sock, 'x'.repeat(64 * 1024));
    }),
  );

const startTunnelEnv = async (lab: MatrixLab, log: Logger) =>
  labPortEnv(
    lab,
    log,
    'tunnel-proxy',
    Number(lab.vars.LAB_TUNNEL_PORT),
    (host, port, target) => ({
      kind: 'tunnel',
      fields: {
        tunnel: `${host}:${port}`,
        tunnelTls: target === 'flooding-device' ? false : { caFile: lab.caFile, serverName: lab.vars.LAB_TUNNEL_HOST },
        user: 'probe-bot',
        token: { file: lab.vars.LAB_TUNNEL_TOKEN_FILE },
        device: lab.vars.LAB_DEVICE_UUID,
        ...(target === 'flooding-device'
          ? { port: 22222, steps: [{ send: 'ping\n', expect: 'pong' }] }
          : { port: 80, http: { path: '/health', expect: { status: [200], body: `ok ${lab.vars.LAB_DEVICE_UUID}` } } }),
      },
    }),
    { 'flooding-device': await floodingDevice() },
  );

const TUNNEL_CASES: MatrixCase[] = [
  ...commonRows({ kind: 'tunnel', first: 'tls', wrongProtocol: fails('protocol', 'tls'), plainHttp: 'plain-http' }),
  {
    kind: 'tunnel',
    fault: 'CONNECT swallowed',
    how: "proxy: half-open after the server's TLS handshake",
    proxy: (env) => ({ type: 'half-open', afterBytes: env.flow['tunnel-proxy'].downstream[0], direction: 'downstream' }),
    expect: fails('timeout', 'proxy_connect'),
  },
  {
    kind: 'tunnel',
    fault: 'token refused',
    how: 'lab fault `tunnel-token-revoked` (407)',
    labFaults: ['tunnel-token-revoked'],
    expect: fails('auth', 'proxy_connect'),
  },
  {
    kind: 'tunnel',
    fault: 'device not on the VPN',
    how: 'lab fault `tunnel-device-offline` (503)',
    labFaults: ['tunnel-device-offline'],
    expect: fails('device_offline', 'proxy_connect'),
  },
  {
    kind: 'tunnel',
    fault: 'device port closed',
    how: 'lab fault `tunnel-port-closed` (500)',
    labFaults: ['tunnel-port-closed'],
    expect: fails('device_offline', 'proxy_connect'),
  },
  {
    kind: 'tunnel',
    fault: 'proxy slow to answer CONNECT',
    how: 'lab fault `tunnel-slow-connect`',
    labFaults: ['tunnel-slow-connect'],
    expect: fails('timeout', 'proxy_connect'),
  },
  {
    // One tunnel cannot see a queue: `sessions: N` with `maxLatency` does (test/e2e/tunnel-sessions.test.ts).
    kind: 'tunnel',
    fault: 'proxy queues CONNECTs instead of refusing',
    how: 'lab fault `tunnel-queue` (one tunnel waits its 250 ms turn)',
    labFaults: ['tunnel-queue'],
    expect: 'pass',
  },
  {
    kind: 'tunnel',
    fault: 'generic proxy dialect',
    how: 'lab fault `tunnel-nonstandard` (HTTP/1.1, odd reasons)',
    labFaults: ['tunnel-nonstandard'],
    expect: 'pass',
  },
  {
    kind: 'tunnel',
    fault: 'device answers too slowly',
    how: 'lab fault `slow-url` (device HTTP)',
    labFaults: ['slow-url'],
    expect: fails('timeout', 'target'),
  },
  {
    kind: 'tunnel',
    fault: 'device floods the tunnel',
    how: 'a proxy: 200, then bytes without end; `steps` wait for `pong`',
    target: 'flooding-device',
    expect: fails('assertion', 'target'),
  },
];

// ---------------------------------------------------------------------------------------------
// build
// ---------------------------------------------------------------------------------------------

const BUILD_CONTEXT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'probes', 'build-context');

const startBuildEnv = (lab: MatrixLab, log: Logger) =>
  labPortEnv(lab, log, 'builder', Number(new URL(lab.vars.LAB_BUILDER_URL).port), (host, port) => ({
    kind: 'build',
    fields: {
      fleet: 'lab/probe-fleet',
      // The lab's certificates name 127.0.0.1, so the builder may be dialled by address.
      builder: `https://${host}:${port}`,
      api: lab.vars.LAB_API_URL,
      token: { file: lab.vars.LAB_BUILDER_TOKEN_FILE },
      context: BUILD_CONTEXT,
      tls: { caFile: lab.caFile },
    },
  }));

const BUILD_CASES: MatrixCase[] = [
  ...commonRows({ kind: 'build', first: 'tls', wrongProtocol: fails('tls', 'tls'), plainHttp: 'plain-http' }),
  {
    kind: 'build',
    fault: 'upload swallowed',
    how: "proxy: half-open after the server's TLS handshake",
    proxy: (env) => ({ type: 'half-open', afterBytes: env.flow.builder.downstream[0], direction: 'downstream' }),
    expect: fails('timeout', 'upload'),
  },
  {
    kind: 'build',
    fault: 'token refused',
    how: 'lab fault `builder-unauthorized` (401)',
    labFaults: ['builder-unauthorized'],
    expect: fails('auth', 'upload'),
  },
  { kind: 'build', fault: 'build fails', how: 'lab fault `build-fails`', labFaults: ['build-fails'], expect: fails('build_failed', 'build') },
  { kind: 'build', fault: 'builder goes silent', how: 'lab fault `build-stall`', labFaults: ['build-stall'], expect: fails('timeout', 'build') },
  { kind: 'build', fault: 'stream cut mid-item', how: 'lab fault `build-cut`', labFaults: ['build-cut'], expect: fails('protocol', 'build') },
  { kind: 'build', fault: 'upload too slow', how: 'lab fault `build-slow-upload`', labFaults: ['build-slow-upload'], expect: fails('timeout', 'upload') },
];

// ---------------------------------------------------------------------------------------------
// device-status: the fault proxy sits in front of the API (its requests are all phase `api`); the
// tunnel check goes to the lab's tunnel proxy directly, where the lab faults act.
// ---------------------------------------------------------------------------------------------

/** An API whose fleet listing holds a "device" nested 100,000 arrays deep. */
const deepJsonApi = () =>
  httpPeer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json' }).end(`{"d":[${'['.repeat(100_000)}${']'.repeat(100_000)}]}`);
  });

const startDeviceStatusEnv = async (lab: MatrixLab, log: Logger) =>
  labPortEnv(
    lab,
    log,
    'api',
    Number(new URL(lab.vars.LAB_API_URL).port),
    (host, port, target) => ({
      kind: 'device-status',
      fields: {
        // The lab's certificates name 127.0.0.1, so the API may be dialled by address.
        ...(target === 'deep-json'
          ? { api: `http://${host}:${port}`, fleet: 'lab/deep' }
          : { api: `https://${host}:${port}`, device: lab.vars.LAB_DEVICE3_UUID }),
        tls: { caFile: lab.caFile },
        token: { file: lab.vars.LAB_BUILDER_TOKEN_FILE },
        tunnel: `127.0.0.1:${lab.vars.LAB_TUNNEL_PORT}`,
        tunnelTls: { caFile: lab.caFile, serverName: lab.vars.LAB_TUNNEL_HOST },
        // Any disagreement is drift at once: one run shows it.
        maxDrift: '0s',
        offlineGrace: '0s',
      },
    }),
    { 'deep-json': await deepJsonApi() },
  );

const DEVICE_STATUS_CASES: MatrixCase[] = [
  // One request per run: every fault on the way to the API lands in `api`.
  ...commonRows({ kind: 'device-status', first: 'api', wrongProtocol: fails('tls', 'api'), plainHttp: 'plain-http' }).map((c) =>
    c.expect === 'pass' ? c : { ...c, expect: fails(c.expect.reason, 'api') },
  ),
  {
    kind: 'device-status',
    fault: 'API unavailable',
    how: 'lab fault `api-errors` (its first answer: 503)',
    labFaults: ['api-errors'],
    expect: fails('proxy', 'api'),
  },
  {
    kind: 'device-status',
    fault: 'API says online, proxy says not connected',
    how: 'lab fault `tunnel-device-offline` (503), `maxDrift: 0s`',
    labFaults: ['tunnel-device-offline'],
    expect: fails('status_drift', 'reachability'),
  },
  { kind: 'device-status', fault: 'device offline and the API says so', how: 'lab fault `device-3-offline`', labFaults: ['device-3-offline'], expect: 'pass' },
  {
    kind: 'device-status',
    fault: 'stale API status',
    how: 'lab faults `status-stale` + `device-3-offline`, `maxDrift: 0s`',
    labFaults: ['status-stale', 'device-3-offline'],
    expect: fails('status_drift', 'reachability'),
  },
  {
    kind: 'device-status',
    fault: 'tunnel token refused',
    how: 'lab fault `tunnel-token-revoked` (407)',
    labFaults: ['tunnel-token-revoked'],
    expect: fails('auth', 'reachability'),
  },
  {
    kind: 'device-status',
    fault: 'tunnel proxy slow to answer',
    how: 'lab fault `tunnel-slow-connect`',
    labFaults: ['tunnel-slow-connect'],
    expect: fails('timeout', 'reachability'),
  },
  {
    kind: 'device-status',
    fault: 'API JSON nested 100,000 deep',
    how: 'a peer: a fleet listing whose device is `[[[…]]]`',
    target: 'deep-json',
    expect: fails('protocol', 'api'),
  },
];

// ---------------------------------------------------------------------------------------------
// The table. Add a kind here.
// ---------------------------------------------------------------------------------------------

export const MATRIX: MatrixKind[] = [
  { kind: 'http', start: startHttpEnv, cases: HTTP_CASES },
  { kind: 'ssh', start: startSshEnv, cases: SSH_CASES },
  { kind: 'tunnel', start: startTunnelEnv, cases: TUNNEL_CASES },
  { kind: 'build', start: startBuildEnv, cases: BUILD_CASES },
  { kind: 'device-status', start: startDeviceStatusEnv, cases: DEVICE_STATUS_CASES },
];
export const MATRIX_CASES: MatrixCase[] = MATRIX.flatMap((k) => k.cases);

// ---------------------------------------------------------------------------------------------
// Running a case
// ---------------------------------------------------------------------------------------------

export function makeSpec(kind: string, name: string, fields: Record<string, unknown>, timeoutMs: number): ProbeSpec {
  return {
    name,
    kind,
    intervalMs: 60_000,
    timeoutMs,
    labels: {},
    source: { file: 'test/reliability/matrix-cases.ts' },
    config: KINDS[kind].schema.parse(fields),
    digest: name,
  };
}

/** Runs one healthy probe per target through a pass-through proxy and records its chunk sizes. */
async function measureFlow(env: KindEnv, log: Logger, only = Object.keys(env.targets)): Promise<void> {
  for (const target of only) {
    const port = env.targets[target];
    const proxy = await startFaultProxy({ port });
    try {
      const spec = env.spec({ target, port: proxy.port, timeoutMs: 5000, name: 'matrix-calibration' });
      const r = await runProbe(spec, KINDS[spec.kind], { log });
      if (!r.success) throw new Error(`calibration run of ${spec.kind} against ${target} failed: ${r.reason} in ${r.phase}: ${r.message}`);
      await proxy.idle(5000);
      const [conn] = proxy.connections;
      env.flow[target] = { upstream: [...conn.chunks.upstream], downstream: [...conn.chunks.downstream] };
    } finally {
      await proxy.close();
    }
  }
}

export interface CaseRun {
  result: RunResult;
  /** Wall-clock time of the run, ms. */
  elapsedMs: number;
  proxy?: FaultProxy;
}

/**
 * Runs a case once. Each case gets its own fault proxy, so cases without lab faults may run
 * concurrently; lab faults are lab-wide, so the caller runs those cases one at a time.
 */
export async function runCase(c: MatrixCase, env: KindEnv, lab: MatrixLab, opts: { log: Logger; timeoutMs?: number; name?: string }): Promise<CaseRun> {
  const target = c.target ?? Object.keys(env.targets)[0];
  const forwardTo = c.proxyTo === 'closed' ? await closedPort() : env.targets[c.proxyTo ?? target];
  const mode = typeof c.proxy === 'function' ? c.proxy(env) : (c.proxy ?? PASS);
  const proxy = c.direct ? undefined : await startFaultProxy({ port: forwardTo }, mode);
  const spec = env.spec({
    target,
    port: proxy?.port ?? forwardTo,
    timeoutMs: opts.timeoutMs ?? MATRIX_TIMEOUT_MS,
    unresolvable: c.unresolvable,
    name: opts.name,
  });
  for (const f of c.labFaults ?? []) await lab.faults.set(f, true);
  try {
    const t0 = performance.now();
    const result = await runProbe(spec, KINDS[c.kind], { log: opts.log });
    return { result, elapsedMs: performance.now() - t0, proxy };
  } finally {
    for (const f of c.labFaults ?? []) await lab.faults.set(f, false);
  }
}

/** Every kind's env against one lab, and a function that closes them all. */
export async function startMatrixEnvs(lab: MatrixLab, log: Logger): Promise<{ envs: Map<string, KindEnv>; close(): Promise<void> }> {
  const envs = new Map<string, KindEnv>();
  for (const k of MATRIX) envs.set(k.kind, await k.start(lab, log));
  return {
    envs,
    close: async () => {
      for (const e of envs.values()) await e.close();
    },
  };
}

export function caseTitle(c: MatrixCase): string {
  return `${c.kind}: ${c.fault} (${c.how}) → ${c.expect === 'pass' ? 'pass' : `${c.expect.reason} in ${c.expect.phase}`}`;
}
