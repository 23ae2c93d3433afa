import type { Logger } from 'pino';
import type { ProbeSpec } from '../../src/core/kind.js';
import type { Reason } from '../../src/core/reasons.js';
import type { RunResult } from '../../src/core/result.js';
import { runProbe } from '../../src/core/run.js';
import { KINDS } from '../../src/kinds/index.js';
import type { Lab, LabFault } from '../../src/lab/index.js';
import { PASS, startFaultProxy, type FaultMode, type FaultProxy } from '../helpers/fault-proxy.js';
import { closedPort, httpPeer } from '../helpers/http-peers.js';

/**
 * The fault matrix: for every probe kind, how each way of breaking its path must end (the exact
 * reason and phase), and which degraded-but-working paths must still pass. One table serves the
 * matrix test, the leak test (as its mix of faults), the timeout test (its stall rows) and the
 * README's matrix (`npm run docs:matrix`), so the documentation is what the tests prove.
 *
 * Adding a kind = one MatrixKind entry: `start` brings up what its probes talk to (the shared lab
 * is already running) and names those TCP endpoints as targets; `spec` builds a probe that reaches
 * a target through a given local port (the fault proxy's); `cases` are its rows.
 */

export type Expected = 'pass' | { reason: Reason; phase: string };

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
  /** The fault as the README names it. */
  fault: string;
  /** How the test injects it (README column). */
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
  start(lab: Lab, log: Logger): Promise<KindEnv>;
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

async function startHttpEnv(lab: Lab, log: Logger): Promise<KindEnv> {
  const body = Buffer.alloc(BIG_BODY_BYTES, 'x');
  const big = await httpPeer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
    res.end(body);
  });
  const env: KindEnv = {
    targets: { front: Number(lab.vars.LAB_URL_FRONT_PORT), big: big.port },
    flow: {},
    spec({ target, port, timeoutMs, unresolvable, name = 'matrix-http' }) {
      const host = unresolvable ? 'no-such-device.invalid' : `${lab.vars.LAB_DEVICE_UUID}.${lab.vars.LAB_URL_DOMAIN}`;
      const pin = unresolvable ? {} : { resolve: '127.0.0.1' };
      const fields =
        target === 'big'
          ? { url: `http://${host}:${port}/big`, ...pin, maxBodyBytes: 2 * BIG_BODY_BYTES, expect: { status: [200] } }
          : { url: `https://${host}:${port}/health`, ...pin, tls: { caFile: lab.caFile }, expect: { status: [200], body: `ok ${lab.vars.LAB_DEVICE_UUID}` } };
      return makeSpec('http', name, fields, timeoutMs);
    },
    close: () => big.close(),
  };
  await measureFlow(env, log);
  return env;
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
  { kind: 'http', fault: 'large body, server closes late', how: 'proxy: FIN held 2 s, 256 KiB body', target: 'big', proxy: { type: 'slow-close', ms: 2000 }, expect: 'pass' },
  // Name and connection.
  { kind: 'http', fault: 'name does not resolve', how: 'host `no-such-device.invalid`', unresolvable: true, expect: fails('dns', 'resolve') },
  { kind: 'http', fault: 'nothing listens', how: 'a closed port, no proxy', proxyTo: 'closed', direct: true, expect: fails('connect', 'connect') },
  { kind: 'http', fault: 'target down behind a proxy', how: 'proxy to a closed port: accepted, then reset', proxyTo: 'closed', expect: fails('connect', 'tls') },
  { kind: 'http', fault: 'accepted, never answers', how: 'proxy: blackhole', proxy: { type: 'blackhole' }, expect: fails('timeout', 'tls') },
  { kind: 'http', fault: 'accepted, target reached late', how: 'proxy: 10 s before connecting on', proxy: { type: 'latency', ms: 10_000, at: 'connect' }, expect: fails('timeout', 'tls') },
  { kind: 'http', fault: 'latency beyond the timeout', how: 'proxy: +10 s per chunk', proxy: { type: 'latency', ms: 10_000 }, expect: fails('timeout', 'tls') },
  { kind: 'http', fault: 'link too narrow for the handshake', how: 'proxy: 200 B/s', proxy: { type: 'bandwidth', bytesPerSecond: 200 }, expect: fails('timeout', 'tls') },
  // TLS.
  { kind: 'http', fault: 'reset on the ClientHello', how: 'proxy: reset after 0 B upstream', proxy: { type: 'reset', afterBytes: 0, direction: 'upstream' }, expect: fails('connect', 'tls') },
  { kind: 'http', fault: 'reset inside the ServerHello', how: 'proxy: reset after 1 B downstream', proxy: { type: 'reset', afterBytes: 1, direction: 'downstream' }, expect: fails('connect', 'tls') },
  { kind: 'http', fault: 'server hangs in the handshake', how: 'proxy: half-open after 0 B downstream', proxy: { type: 'half-open', afterBytes: 0, direction: 'downstream' }, expect: fails('timeout', 'tls') },
  { kind: 'http', fault: 'plain HTTP on the TLS port', how: 'proxy to a plain-HTTP server', proxyTo: 'big', expect: fails('tls', 'tls') },
  { kind: 'http', fault: 'expired certificate', how: 'lab fault `expired-cert`', labFaults: ['expired-cert'], expect: fails('tls', 'tls') },
  // Request: the handshake is done, the answer never (fully) comes.
  { kind: 'http', fault: 'request cut short', how: 'proxy: reset on the last byte of the request', proxy: (env) => ({ type: 'reset', afterBytes: lastByte(env), direction: 'upstream' }), expect: fails('connect', 'request') },
  { kind: 'http', fault: 'reset before the response', how: 'proxy: reset after the handshake bytes downstream', proxy: (env) => ({ type: 'reset', afterBytes: beforeResponse(env), direction: 'downstream' }), expect: fails('connect', 'request') },
  { kind: 'http', fault: 'request swallowed', how: 'proxy: half-open before the last byte of the request', proxy: (env) => ({ type: 'half-open', afterBytes: lastByte(env), direction: 'upstream' }), expect: fails('timeout', 'request') },
  { kind: 'http', fault: 'response never comes', how: 'proxy: half-open after the handshake bytes downstream', proxy: (env) => ({ type: 'half-open', afterBytes: beforeResponse(env), direction: 'downstream' }), expect: fails('timeout', 'request') },
  { kind: 'http', fault: 'status line cut off', how: 'proxy: reset after 1 B downstream, plain HTTP', target: 'big', proxy: { type: 'reset', afterBytes: 1, direction: 'downstream' }, expect: fails('connect', 'request') },
  { kind: 'http', fault: 'device answers too slowly', how: 'lab fault `slow-url`', labFaults: ['slow-url'], expect: fails('timeout', 'request') },
  // Transfer.
  // undici reports a body cut short by a reset as shorter than its content-length: the answer is malformed.
  { kind: 'http', fault: 'reset mid-body', how: 'proxy: reset after 64 KiB downstream', target: 'big', proxy: { type: 'reset', afterBytes: 64 * 1024, direction: 'downstream' }, expect: fails('protocol', 'transfer') },
  { kind: 'http', fault: 'body stalls', how: 'proxy: half-open after 64 KiB downstream', target: 'big', proxy: { type: 'half-open', afterBytes: 64 * 1024, direction: 'downstream' }, expect: fails('timeout', 'transfer') },
  { kind: 'http', fault: 'body too slow', how: 'proxy: 16 KiB/s, 256 KiB body', target: 'big', proxy: { type: 'bandwidth', bytesPerSecond: 16 * 1024 }, expect: fails('timeout', 'transfer') },
  { kind: 'http', fault: 'device offline', how: 'lab fault `device-offline` (platform error page)', labFaults: ['device-offline'], expect: fails('device_offline', 'transfer') },
];

// ---------------------------------------------------------------------------------------------
// The table. Add a kind here.
// ---------------------------------------------------------------------------------------------

export const MATRIX: MatrixKind[] = [{ kind: 'http', start: startHttpEnv, cases: HTTP_CASES }];
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
async function measureFlow(env: KindEnv, log: Logger): Promise<void> {
  for (const [target, port] of Object.entries(env.targets)) {
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
export async function runCase(c: MatrixCase, env: KindEnv, lab: Lab, opts: { log: Logger; timeoutMs?: number; name?: string }): Promise<CaseRun> {
  const target = c.target ?? Object.keys(env.targets)[0];
  const forwardTo = c.proxyTo === 'closed' ? await closedPort() : env.targets[c.proxyTo ?? target];
  const mode = typeof c.proxy === 'function' ? c.proxy(env) : c.proxy ?? PASS;
  const proxy = c.direct ? undefined : await startFaultProxy({ port: forwardTo }, mode);
  const spec = env.spec({ target, port: proxy?.port ?? forwardTo, timeoutMs: opts.timeoutMs ?? MATRIX_TIMEOUT_MS, unresolvable: c.unresolvable, name: opts.name });
  for (const f of c.labFaults ?? []) lab.faults.set(f, true);
  try {
    const t0 = performance.now();
    const result = await runProbe(spec, KINDS[c.kind], { log: opts.log });
    return { result, elapsedMs: performance.now() - t0, proxy };
  } finally {
    for (const f of c.labFaults ?? []) lab.faults.set(f, false);
  }
}

export function caseTitle(c: MatrixCase): string {
  return `${c.kind}: ${c.fault} (${c.how}) → ${c.expect === 'pass' ? 'pass' : `${c.expect.reason} in ${c.expect.phase}`}`;
}
