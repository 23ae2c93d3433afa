import dns from 'node:dns/promises';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import type { ProbeContext } from '../core/kind.js';
import { ProbeError } from '../core/errors.js';
import { describeError } from '../core/classify.js';
import { InputFileError, MAX_BUNDLE_FILE_BYTES, readInputFile } from '../config/files.js';

/**
 * Shared dialers. Each step is its own phase so a run shows where time went: `resolve` (DNS),
 * `connect` (TCP), `tls` (handshake and verification). Every socket is destroyed when the run's
 * signal aborts, so nothing outlives its run.
 */

export interface ResolveOptions {
  /** Connect to this address instead of resolving (like curl --resolve); SNI and Host keep the name. */
  address?: string;
  family?: 4 | 6;
}

export async function resolveHost(ctx: ProbeContext, host: string, opts: ResolveOptions = {}): Promise<string> {
  return ctx.phase('resolve', async () => {
    if (opts.address) return opts.address;
    const bare = host.replace(/^\[(.*)\]$/, '$1');
    if (net.isIP(bare)) return bare;
    const { address } = await dns.lookup(bare, { family: opts.family ?? 0, verbatim: true });
    return address;
  });
}

/** Resolves when `emitter` emits `ok`, rejects on `error`/`close` or when the signal aborts. */
function waitFor(socket: net.Socket, ok: string, signal: AbortSignal, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      socket.off(ok, onOk);
      socket.off('error', onError);
      socket.off('close', onClose);
      signal.removeEventListener('abort', onAbort);
    };
    const onOk = () => {
      cleanup();
      resolve();
    };
    const onError = (err: Error) => {
      cleanup();
      socket.destroy();
      reject(err);
    };
    const onClose = () => {
      cleanup();
      reject(Object.assign(new Error(`${what}: connection closed by peer`), { code: 'ECONNRESET' }));
    };
    const onAbort = () => {
      cleanup();
      socket.destroy();
      reject(signal.reason);
    };
    if (signal.aborted) return onAbort();
    socket.once(ok, onOk);
    socket.once('error', onError);
    socket.once('close', onClose);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** Destroys the socket when the run ends early, however it ends. */
function destroyOnAbort(socket: net.Socket, signal: AbortSignal): void {
  const onAbort = () => socket.destroy();
  signal.addEventListener('abort', onAbort, { once: true });
  socket.once('close', () => signal.removeEventListener('abort', onAbort));
}

/**
 * A context for one step with its own time limit inside the run deadline: its signal aborts when
 * the run's does, or after `ms` with a `timeout` ProbeError naming the step. Call `done()` when the
 * step has finished. Sockets tied to the step's signal still close with the run afterwards. A held
 * connection has no run deadline, so these limits are all that bound its steps.
 */
function stepContext(ctx: ProbeContext, ms: number, what: string): { ctx: ProbeContext; done(): void } {
  const step = new AbortController();
  const timer = setTimeout(() => step.abort(new ProbeError('timeout', `${what}: no answer within ${ms}ms`)), ms);
  timer.unref?.();
  return { ctx: { ...ctx, signal: AbortSignal.any([ctx.signal, step.signal]) }, done: () => clearTimeout(timer) };
}

/** Runs `fn` under stepContext and ends the step however `fn` ends. */
export async function withStepTimeout<T>(ctx: ProbeContext, ms: number, what: string, fn: (ctx: ProbeContext) => Promise<T>): Promise<T> {
  const step = stepContext(ctx, ms, what);
  try {
    return await fn(step.ctx);
  } finally {
    step.done();
  }
}

export async function connectTcp(ctx: ProbeContext, address: string, port: number): Promise<net.Socket> {
  return connectSocket(ctx, { host: address, port, noDelay: true }, `TCP connect to ${address}:${port}`);
}

/** A unix socket (a Docker engine's /var/run/docker.sock): the `connect` phase of a local target. */
export async function connectUnix(ctx: ProbeContext, socketPath: string): Promise<net.Socket> {
  return connectSocket(ctx, { path: socketPath }, `connect to unix socket ${socketPath}`);
}

async function connectSocket(ctx: ProbeContext, opts: net.NetConnectOpts, what: string): Promise<net.Socket> {
  return ctx.phase('connect', async () => {
    const socket = net.connect(opts);
    destroyOnAbort(socket, ctx.signal);
    try {
      await waitFor(socket, 'connect', ctx.signal, what);
    } catch (err) {
      socket.destroy();
      throw err;
    }
    return socket;
  });
}

export interface TlsOptions {
  servername?: string;
  /** Path of a PEM CA bundle to trust instead of the system store. */
  caFile?: string;
  insecureSkipVerify?: boolean;
  alpn?: string[];
}

// One secure context per CA file: building one parses the whole bundle, which would otherwise be
// paid on every run. Keyed by path, mtime and size so a rotated CA file is picked up; the file is
// looked at no more than once a second (10,000 probes sharing a CA would otherwise stat it 10,000
// times a minute), and only ever asynchronously: a run never blocks the event loop on a file.
const CA_RECHECK_MS = 1000;
const contexts = new Map<string, { version: string; checkedAt: number; sc: Promise<tls.SecureContext> }>();
async function secureContextFor(caFile: string): Promise<tls.SecureContext> {
  const now = Date.now();
  const cached = contexts.get(caFile);
  if (cached && now - cached.checkedAt < CA_RECHECK_MS) return cached.sc;
  if (cached) cached.checkedAt = now;
  const fail = (err: unknown): never => {
    const why = err instanceof InputFileError ? err.problem : (err as Error).message;
    throw new ProbeError('tls', `cannot use the CA bundle ${caFile} (tls.caFile): ${why}`, { cause: err });
  };
  let version: string;
  try {
    const st = await fs.promises.stat(caFile);
    version = `${st.mtimeMs}:${st.size}`;
  } catch (err) {
    return fail(err);
  }
  const latest = contexts.get(caFile);
  if (latest && latest.version === version) return latest.sc;
  const sc: Promise<tls.SecureContext> = readInputFile(caFile, MAX_BUNDLE_FILE_BYTES)
    .then((pem) => tls.createSecureContext({ ca: pem }))
    .catch((err: unknown) => {
      // Not kept: the next run looks at the file again.
      if (contexts.get(caFile)?.sc === sc) contexts.delete(caFile);
      return fail(err);
    });
  contexts.set(caFile, { version, checkedAt: now, sc });
  return sc;
}

// Without a CA file, the system store's context: made once, not by tls.connect on every run (it
// builds a new context per connection when given none).
let systemContext: tls.SecureContext | undefined;
const defaultContext = (): tls.SecureContext => (systemContext ??= tls.createSecureContext());

// Node's hostname check asks for the detailed peer chain (every certificate up to the root turned
// into JS objects: about 0.3 ms of CPU per handshake) but reads only the leaf's subject and
// altnames. During the handshake the socket hands it the leaf alone (about 0.05 ms), and the leaf
// is kept for earliestCertExpiry, which needs the chain only for a leaf it has not seen lately.
// (Not the leaf's X509Certificate, which would be cheaper: on Node 20, getPeerX509Certificate on a
// client socket takes the leaf out of the peer chain, and getPeerCertificate then returns {}.)
const leafOnly = function (this: tls.TLSSocket) {
  return tls.TLSSocket.prototype.getPeerCertificate.call(this, false);
};
const peerLeaves = new WeakMap<tls.TLSSocket, tls.PeerCertificate>();
/**
 * The CA file's context, read asynchronously: meanwhile the connected socket has no listener of
 * ours, and a peer that resets it then would raise an unhandled 'error' and stop the process.
 * Its error is held and thrown here instead, as the TLS step's own.
 */
async function contextWhileHolding(socket: net.Socket, caFile: string): Promise<tls.SecureContext> {
  let early: Error | undefined;
  const hold = (err: Error) => (early ??= err);
  socket.on('error', hold);
  try {
    const sc = await secureContextFor(caFile);
    if (early) throw early;
    return sc;
  } catch (err) {
    socket.destroy();
    throw err;
  } finally {
    socket.off('error', hold);
  }
}

export async function upgradeTls(ctx: ProbeContext, socket: net.Socket, opts: TlsOptions): Promise<tls.TLSSocket> {
  return ctx.phase('tls', async () => {
    const servername = opts.servername && !net.isIP(opts.servername) ? opts.servername : undefined;
    const secureContext = opts.caFile ? await contextWhileHolding(socket, opts.caFile) : defaultContext();
    const secure: tls.TLSSocket = tls.connect({
      socket,
      // The name the certificate is checked against; without it an IP target (no SNI) would be
      // checked as "localhost" and a certificate for the IP would fail.
      host: opts.servername,
      servername,
      secureContext,
      rejectUnauthorized: !opts.insecureSkipVerify,
      ALPNProtocols: opts.alpn,
      checkServerIdentity: (host, cert) => {
        restore();
        peerLeaves.set(secure, cert);
        return tls.checkServerIdentity(host, cert);
      },
    });
    secure.getPeerCertificate = leafOnly as tls.TLSSocket['getPeerCertificate'];
    const restore = () => delete (secure as { getPeerCertificate?: unknown }).getPeerCertificate;
    destroyOnAbort(secure, ctx.signal);
    try {
      await waitFor(secure, 'secureConnect', ctx.signal, `TLS handshake with ${opts.servername ?? 'peer'}`);
    } catch (err) {
      restore();
      secure.destroy();
      const code = (err as { code?: string }).code ?? '';
      // An abort (run deadline, a step timeout, shutdown) is not a TLS failure: keep its own reason.
      if (code && code !== 'ECONNRESET' && !ctx.signal.aborted) {
        // describeError: the error as the run's message shows its cause, so it is said once.
        throw new ProbeError('tls', `TLS handshake with ${opts.servername ?? 'peer'} failed: ${describeError(err)}`, { cause: err });
      }
      throw err;
    }
    return secure;
  });
}

// Earliest expiry of the chain by leaf fingerprint: probes of one platform mostly see the same
// (wildcard) certificate, so the chain is walked about once a minute, not on every handshake.
const EXPIRY_TTL_MS = 60_000;
const EXPIRY_CACHE_MAX = 10_000;
const expiryByLeaf = new Map<string, { earliest: number | undefined; at: number }>();

/** The earliest notAfter in the peer's chain, in seconds since the epoch (blackbox's probe_ssl_earliest_cert_expiry). */
export function earliestCertExpiry(socket: tls.TLSSocket): number | undefined {
  // Node skips its hostname check (and so the capture) only when the chain did not verify, which
  // reaches here only with insecureSkipVerify.
  const leaf = peerLeaves.get(socket) ?? socket.getPeerCertificate(false);
  const key = leaf?.fingerprint256;
  const now = Date.now();
  const hit = key ? expiryByLeaf.get(key) : undefined;
  if (hit && now - hit.at < EXPIRY_TTL_MS) return hit.earliest;
  let cert = socket.getPeerCertificate(true) as tls.DetailedPeerCertificate | undefined;
  let earliest: number | undefined;
  const seen = new Set<string>();
  while (cert && cert.valid_to && !seen.has(cert.fingerprint256)) {
    seen.add(cert.fingerprint256);
    const t = Date.parse(cert.valid_to) / 1000;
    if (earliest === undefined || t < earliest) earliest = t;
    cert = cert.issuerCertificate;
  }
  if (key) {
    if (expiryByLeaf.size >= EXPIRY_CACHE_MAX) expiryByLeaf.clear();
    expiryByLeaf.set(key, { earliest, at: now });
  }
  return earliest;
}
