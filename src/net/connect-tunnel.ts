import type net from 'node:net';
import { ProbeError } from '../core/errors.js';
import { excerpt } from '../core/excerpt.js';
import type { ProbeContext } from '../core/kind.js';
import type { Reason } from '../core/reasons.js';
import { rememberSecret, type Secret } from '../core/redact.js';
import { connectTcp, resolveHost, upgradeTls, withStepTimeout } from './dial.js';

/**
 * The platform's port tunnel: an HTTP CONNECT through its tunnel proxy (docs/protocols.md "CONNECT
 * tunnel"), shared by the `tunnel` kind and anything else that needs a byte stream to a device port
 * (the `ssh` kind can run its session over the socket this returns).
 *
 *   const t = await dialThroughProxy(ctx, {
 *     proxy: { host: 'tunnel.balena-cloud.com', port: 443, tls: {} },
 *     target: deviceAuthority(uuid, 22222),
 *     credentials: { user: 'root', token },
 *   });
 *   // t.socket is the tunnel: its readable side starts with the device's first bytes, even those
 *   // that arrived in the same packet as the proxy's "200".
 *
 * Phases: `resolve`, `connect`, `tls` (only with TLS), `proxy_connect`. Every step is limited by
 * `stepTimeoutMs` inside the run deadline; everything is destroyed when ctx.signal aborts.
 */

export interface ProxyEndpoint {
  host: string;
  port: number;
  /** TLS to the proxy with SNI (the platform's default), or false for plain TCP (e.g. `vpn:3128`, tinyproxy). */
  tls: false | { serverName?: string; caFile?: string; insecureSkipVerify?: boolean };
}

export interface ConnectTunnelOptions {
  proxy: ProxyEndpoint;
  /** The CONNECT authority, `host:port`, e.g. `<uuid>.balena:22222` (see deviceAuthority). */
  target: string;
  /** Sent as `Proxy-Authorization: Basic base64(user:token)`; the platform checks the token only. */
  credentials?: { user: string; token: Secret };
  /** Limit of each step (TCP connect, TLS handshake, the proxy's answer). Default 10 s, as the official client. */
  stepTimeoutMs?: number;
  /** What a user sets for a proxy without TLS, named when a TLS handshake gets a plain answer. Default `tunnelTls: false`. */
  plainSetting?: string;
}

export interface ConnectedTunnel {
  /** The tunnel. Bytes that came with the answer were pushed back (unshift): read it from the start. */
  socket: net.Socket;
  status: number;
  statusText: string;
  /** How many tunneled bytes arrived together with the answer (the device spoke first). */
  earlyBytes: number;
}

const DEFAULT_STEP_TIMEOUT_MS = 10_000;
/** Largest proxy answer head accepted. */
const DEFAULT_MAX_HEADER_BYTES = 16 * 1024;

/** `<uuid>.<suffix>:<port>`, the only form of target the platform's proxy accepts. */
export function deviceAuthority(uuid: string, port: number, suffix = 'balena'): string {
  return `${uuid.toLowerCase()}.${suffix}:${port}`;
}

/** What came back from the proxy, head only. */
export interface ConnectAnswer {
  httpVersion: string;
  status: number;
  statusText: string;
  headers: Array<[string, string]>;
  /** Bytes after the blank line: the start of the tunneled stream. */
  rest: Buffer;
}

const HTTP_PREFIX = 'HTTP/';
const STATUS_LINE = /^HTTP\/(1\.[01]) (\d{3})(?:[ \t]+(.*))?$/;
const HEADER_LINE = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*(.*?)[ \t]*$/;
const HEAD_END = /\r?\n\r?\n/;

/**
 * Printable, one line, bounded: a proxy's reason phrase or garbage may end up in a message.
 * Redacted before it is cut, so a secret the peer quotes is never cut in two and half-shown.
 */
export function printable(text: string, max = 80): string {
  return excerpt(text, { max, escapeControls: true, redact: true });
}

/**
 * An incremental parser of the proxy's answer to CONNECT. Feed it chunks as they arrive, split
 * anywhere; it returns the answer once the head is complete, with whatever followed it. A peer that
 * does not speak HTTP is recognised on its first bytes rather than after a timeout.
 */
export class ConnectResponseParser {
  private buf: Buffer = Buffer.alloc(0);
  constructor(private readonly maxHeaderBytes = DEFAULT_MAX_HEADER_BYTES) {}

  /** Bytes received so far (for messages when the peer stops early). */
  get received(): Buffer {
    return this.buf;
  }

  /** The status line, if it has arrived whole. */
  statusLine(): { httpVersion: string; status: number; statusText: string } | undefined {
    const text = this.buf.toString('latin1');
    const eol = text.indexOf('\n');
    if (eol < 0) return undefined;
    const m = STATUS_LINE.exec(text.slice(0, eol).replace(/\r$/, ''));
    return m ? { httpVersion: m[1], status: Number(m[2]), statusText: m[3] ?? '' } : undefined;
  }

  push(chunk: Buffer): ConnectAnswer | undefined {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const n = Math.min(this.buf.length, HTTP_PREFIX.length);
    if (this.buf.toString('latin1', 0, n) !== HTTP_PREFIX.slice(0, n)) {
      throw new ProbeError('protocol', `the proxy's answer is not HTTP: "${printable(this.buf.toString('latin1', 0, 1024), 60)}"`);
    }
    // Only the head is decoded; tunneled bytes after it stay binary.
    const text = this.buf.toString('latin1', 0, Math.min(this.buf.length, this.maxHeaderBytes + 4));
    const end = HEAD_END.exec(text);
    if (!end || end.index > this.maxHeaderBytes) {
      if (this.buf.length > this.maxHeaderBytes) {
        throw new ProbeError('protocol', `the proxy's answer head is longer than ${this.maxHeaderBytes} bytes`);
      }
      return undefined;
    }
    const lines = text.slice(0, end.index).split(/\r?\n/);
    const status = STATUS_LINE.exec(lines[0]);
    if (!status) throw new ProbeError('protocol', `the proxy's status line is malformed: "${printable(lines[0])}"`);
    const headers: Array<[string, string]> = [];
    for (const line of lines.slice(1)) {
      const h = HEADER_LINE.exec(line);
      if (!h) throw new ProbeError('protocol', `the proxy's answer has a malformed header line: "${printable(line)}"`);
      headers.push([h[1].toLowerCase(), h[2]]);
    }
    return {
      httpVersion: status[1],
      status: Number(status[2]),
      statusText: status[3] ?? '',
      headers,
      rest: this.buf.subarray(end.index + end[0].length),
    };
  }
}

/** What each answer of the platform's proxy means (docs/protocols.md "CONNECT tunnel"), and generic proxies' equivalents. */
const STATUS_MEANING: Record<number, { reason: Reason; meaning: string }> = {
  401: { reason: 'auth', meaning: 'our credentials were refused' },
  407: { reason: 'auth', meaning: 'our credentials were refused (no access to this device, or a bad token)' },
  403: { reason: 'denied', meaning: 'the proxy refused the target (bad host name, or not allowed)' },
  503: { reason: 'device_offline', meaning: 'the device is not connected to the VPN' },
  500: { reason: 'device_offline', meaning: 'port refused or device unreachable' },
  502: { reason: 'device_offline', meaning: 'port refused or device unreachable' },
  400: { reason: 'proxy', meaning: 'the proxy called our request bad' },
  405: { reason: 'proxy', meaning: 'the proxy does not allow CONNECT' },
};

/** The failure a non-2xx answer stands for, or undefined for success. */
export function connectStatusError(answer: Pick<ConnectAnswer, 'status' | 'statusText'>, what: string, note = ''): ProbeError | undefined {
  if (answer.status >= 200 && answer.status <= 299) return undefined;
  const known = STATUS_MEANING[answer.status];
  const phrase = answer.statusText ? ` ${printable(answer.statusText)}` : '';
  const meaning = known?.meaning ?? 'an unexpected answer';
  return new ProbeError(known?.reason ?? 'proxy', `${what}: HTTP ${answer.status}${phrase}: ${meaning}${note}`);
}

function connectRequest(target: string, credentials: ConnectTunnelOptions['credentials']): string {
  const lines = [`CONNECT ${target} HTTP/1.0`, `Host: ${target}`];
  if (credentials) {
    // Revealed here, at the last moment, and only into the request bytes. `user:token` is a secret
    // of its own: a proxy may quote it, or its base64 without the `Basic ` prefix.
    const userToken = `${credentials.user}:${credentials.token.reveal()}`;
    rememberSecret(userToken);
    const basic = Buffer.from(userToken).toString('base64');
    lines.push(`Proxy-Authorization: Basic ${basic}`);
  }
  return lines.join('\r\n') + '\r\n\r\n';
}

/**
 * Sends CONNECT on an open socket and reads the answer (phase `proxy_connect`). Resolves on 2xx
 * with the tunneled bytes pushed back into the socket; throws a classified ProbeError otherwise.
 */
async function sendConnect(ctx: ProbeContext, socket: net.Socket, opts: ConnectTunnelOptions): Promise<ConnectedTunnel> {
  const via = `${opts.proxy.host}:${opts.proxy.port}`;
  const what = `CONNECT ${opts.target} via ${via}`;
  const stepMs = opts.stepTimeoutMs ?? DEFAULT_STEP_TIMEOUT_MS;
  return ctx.phase('proxy_connect', () =>
    withStepTimeout(
      ctx,
      stepMs,
      `${what}: the proxy's answer`,
      (step) =>
        new Promise<ConnectedTunnel>((resolve, reject) => {
          const parser = new ConnectResponseParser();
          const cleanup = () => {
            socket.off('readable', onReadable);
            socket.off('end', onEnd);
            socket.off('close', onEnd);
            socket.off('error', onError);
            step.signal.removeEventListener('abort', onAbort);
          };
          // Once the caller's deadline or the step's limit has passed, that is why it failed: the
          // deadline also destroys the TCP socket under TLS, whose end can come before our abort
          // listener runs and would otherwise read as a proxy that closed without answering.
          const fail = (err: unknown) => {
            cleanup();
            socket.destroy();
            reject(ctx.signal.aborted ? ctx.signal.reason : step.signal.aborted ? step.signal.reason : err);
          };
          const onReadable = () => {
            let chunk: Buffer | null;
            while ((chunk = socket.read() as Buffer | null) !== null) {
              let answer: ConnectAnswer | undefined;
              try {
                answer = parser.push(chunk);
              } catch (err) {
                return fail(err);
              }
              if (!answer) continue;
              cleanup();
              const err = connectStatusError(answer, what);
              if (err) {
                socket.destroy();
                return reject(err);
              }
              // The device may speak first (an SSH banner in the same packet as the 200): those bytes
              // belong to the tunnel, so put them back for whoever reads it next.
              if (answer.rest.length) socket.unshift(answer.rest);
              return resolve({
                socket,
                status: answer.status,
                statusText: answer.statusText,
                earlyBytes: answer.rest.length,
              });
            }
          };
          const onEnd = () => {
            const got = parser.received;
            if (got.length === 0) return fail(new ProbeError('proxy', `${what}: the proxy closed the connection without answering`));
            // A status line and then a close: the status still says what happened, unless it said yes.
            const line = parser.statusLine();
            const early = line ? connectStatusError(line, what, ' (the proxy closed the connection before the end of its answer)') : undefined;
            fail(
              early ??
                new ProbeError('protocol', `${what}: the proxy closed the connection in the middle of its answer: "${printable(got.toString('latin1'), 120)}"`),
            );
          };
          const onError = (err: Error) => fail(err);
          const onAbort = () => fail(step.signal.reason);
          if (step.signal.aborted) return onAbort();
          socket.on('readable', onReadable);
          socket.once('end', onEnd);
          socket.once('close', onEnd);
          socket.once('error', onError);
          step.signal.addEventListener('abort', onAbort, { once: true });
          socket.write(connectRequest(opts.target, opts.credentials));
        }),
    ),
  );
}

/**
 * OpenSSL's words for a first answer that is not a TLS record: "HTTP/1.x 400" from a plain proxy
 * reads as a record of version 0x5454 ("TT"), or of a length over the limit.
 */
const NOT_TLS_CODES = new Set(['ERR_SSL_WRONG_VERSION_NUMBER', 'ERR_SSL_PACKET_LENGTH_TOO_LONG']);

/**
 * A TLS handshake the proxy answered in plain text: it speaks plain HTTP (older platforms'
 * `vpn.<domain>:3128`, or a generic proxy), and the setting to change is named. This fails as soon
 * as the proxy answers (a plain HTTP server answers a ClientHello with 400 at once), never after
 * the timeout.
 */
function plainProxyError(err: unknown, proxy: string, setting: string): ProbeError | undefined {
  const code = (err as { cause?: { code?: unknown } } | null)?.cause?.code;
  if (!(err instanceof ProbeError) || typeof code !== 'string' || !NOT_TLS_CODES.has(code)) return undefined;
  return new ProbeError('protocol', `TLS handshake with ${proxy}: the answer is not TLS (${code}): the proxy speaks plain HTTP: set ${setting}`);
}

/** Dials the proxy (resolve, connect, TLS) and opens the tunnel (proxy_connect). */
export async function dialThroughProxy(ctx: ProbeContext, opts: ConnectTunnelOptions): Promise<ConnectedTunnel> {
  const stepMs = opts.stepTimeoutMs ?? DEFAULT_STEP_TIMEOUT_MS;
  const { host, port } = opts.proxy;
  const address = await withStepTimeout(ctx, stepMs, `resolving ${host}`, (c) => resolveHost(c, host));
  let socket: net.Socket = await withStepTimeout(ctx, stepMs, `TCP connect to ${host}:${port}`, (c) => connectTcp(c, address, port));
  try {
    const tlsOpts = opts.proxy.tls;
    if (tlsOpts) {
      socket = await withStepTimeout(ctx, stepMs, `TLS handshake with ${host}:${port}`, (c) =>
        upgradeTls(c, socket, { servername: tlsOpts.serverName ?? host, caFile: tlsOpts.caFile, insecureSkipVerify: tlsOpts.insecureSkipVerify }),
      ).catch((err: unknown) => {
        throw plainProxyError(err, `${host}:${port}`, opts.plainSetting ?? '`tunnelTls: false`') ?? err;
      });
    }
    return await sendConnect(ctx, socket, opts);
  } catch (err) {
    socket.destroy();
    // The caller's deadline (a run's, a batch's, a corroboration budget) is the cause of whatever
    // the destroyed socket said after it.
    throw ctx.signal.aborted ? ctx.signal.reason : err;
  }
}
