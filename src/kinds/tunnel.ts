import type net from 'node:net';
import { StringDecoder } from 'node:string_decoder';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from 'undici';
import { z } from 'zod';
import { duration, headerMap, regex, secretRef } from '../config/fields.js';
import { ProbeError } from '../core/errors.js';
import { defineKind, type HoldContext, type ProbeContext } from '../core/kind.js';
import { Secret } from '../core/redact.js';
import { deviceAuthority, printable, type ConnectedTunnel } from '../net/connect-tunnel.js';
import { withStepTimeout } from '../net/dial.js';
import { runSshSession } from '../net/ssh-session.js';
import { withoutPhases } from './shared/context.js';
import { deviceUuid } from './shared/device.js';
import { hostPortField, hostPortText, parseHostPort, portNumber } from './shared/host-port.js';
import { readBody, sendRequest } from './shared/http-exchange.js';
import { bodyExpectFields, expectBody, expectStatus, maxBodyBytes } from './shared/http-expect.js';
import { credentialProblems, credentialsOf, hostKeys, maxOutputBytes, policyOf, privateKeyRef, sshCommand, sshExpect } from './shared/ssh.js';
import { warnIfInsecure } from './shared/tls.js';
import { openTunnel, stepTimeout, tunnelField, tunnelTlsField, tunnelUser } from './shared/tunnel.js';

/**
 * `tunnel`: a port tunnel through the platform's CONNECT proxy (PROTOCOLS.md "Port tunnel"),
 * through the real authorization path, then a check of what answers at the far end: the device's
 * first line (`expect.banner`), `send`/`expect` steps, or an HTTP request. With `hold` the daemon
 * keeps the tunnel open and counts its interruptions instead of opening one per run.
 */

const step = z
  .strictObject({ send: z.string().optional(), expect: regex.optional() })
  .refine((s) => s.send !== undefined || s.expect !== undefined, 'a step has `send`, `expect` or both');

const httpCheck = z.strictObject({
  path: z.string().startsWith('/', 'a path starts with /').default('/'),
  method: z.enum(['GET', 'HEAD', 'OPTIONS']).default('GET'),
  /** Host header; default the CONNECT target's host. */
  host: z.string().optional(),
  headers: headerMap.default({}),
  maxBodyBytes,
  expect: z.strictObject(bodyExpectFields).default({ status: ['2xx'] }),
});

const schema = z.object({
  tunnel: tunnelField,
  tunnelTls: tunnelTlsField,
  user: tunnelUser,
  token: secretRef,
  device: deviceUuid.optional(),
  port: portNumber.default(80),
  targetSuffix: z.enum(['balena', 'resin', 'vpn']).default('balena'),
  /** A literal CONNECT target (host:port) instead of <device>.<suffix>:<port>, for generic proxies. */
  target: hostPortText.optional(),
  stepTimeout,
  expect: z.strictObject({ banner: regex.optional() }).default({}),
  steps: z.array(step).default([]),
  http: httpCheck.optional(),
  /** A whole SSH session through the tunnel (the ssh kind's code): handshake, host key, auth, command. */
  ssh: z
    .strictObject({
      user: z.string().min(1).default('root'),
      sshKey: privateKeyRef.optional(),
      sshKeyPassphrase: secretRef.optional(),
      hostKeys: hostKeys.optional(),
      /** The name (host:port) the device's key is listed under in known_hosts (OpenSSH's HostKeyAlias); default the target. */
      hostKeyAlias: hostPortField().optional(),
      insecureAcceptAnyHostKey: z.boolean().default(false),
      command: sshCommand,
      expect: sshExpect,
      maxOutputBytes,
    })
    .optional(),
  /** Keep the tunnel open (daemon only), reopening it after this long; checks repeat every interval on it. */
  hold: duration.optional(),
});
type TunnelConfig = z.output<typeof schema>;

function targetOf(cfg: TunnelConfig): string {
  return cfg.target ?? deviceAuthority(cfg.device!, cfg.port, cfg.targetSuffix);
}

// What the device sent is kept this far while waiting for a line or a match.
const MAX_BUFFER_CHARS = 64 * 1024;
const MAX_BANNER_CHARS = 1024;

/**
 * Text arriving through the tunnel, consumed by the checks as it matches. It keeps a bounded
 * window: a device that keeps writing (between a held tunnel's keepalives, or past what a check
 * waits for) has its oldest text discarded and counted, never buffered without end.
 */
export class StreamReader {
  private text = '';
  private end: Error | null = null;
  private waiter: (() => void) | null = null;
  private readonly decoder = new StringDecoder('utf8');
  /** Characters dropped from the front of the window since the tunnel opened. */
  discarded = 0;

  constructor(
    socket: net.Socket,
    private readonly windowChars = MAX_BUFFER_CHARS,
  ) {
    socket.on('data', (d: Buffer) => {
      this.text += this.decoder.write(d);
      // With a waiter the check sees the text first (and fails past the window); without one,
      // only the newest window can matter to the next check.
      if (!this.waiter) this.trim();
      this.waiter?.();
      if (this.text.length > this.windowChars) this.trim();
    });
    const onEnd = (err?: Error) => {
      this.end ??= err ?? new Error('closed');
      this.waiter?.();
    };
    socket.on('end', () => onEnd());
    socket.on('close', () => onEnd());
    socket.on('error', onEnd);
  }

  private trim(): void {
    const excess = this.text.length - this.windowChars;
    if (excess <= 0) return;
    this.discarded += excess;
    this.text = this.text.slice(excess);
  }

  /** How much text the window holds now. */
  get buffered(): number {
    return this.text.length;
  }

  /** Waits until `take` finds what it wants in the text; consumes what it used. */
  wait<T>(signal: AbortSignal, what: string, take: (text: string) => { value: T; used: number } | undefined): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const done = (fn: () => void) => {
        this.waiter = null;
        signal.removeEventListener('abort', onAbort);
        fn();
      };
      const check = () => {
        const found = take(this.text);
        if (found) {
          this.text = this.text.slice(found.used);
          return done(() => resolve(found.value));
        }
        const got = this.text ? `; received: "${printable(this.text, 120)}"` : '';
        if (this.text.length > this.windowChars) {
          const dropped = this.discarded ? ` (${this.discarded} earlier characters discarded)` : '';
          return done(() => reject(new ProbeError('assertion', `${what}: not found in a window of ${this.windowChars} characters${dropped}${got}`)));
        }
        if (this.end) {
          const why = this.end.message === 'closed' ? '' : `: ${this.end.message}`;
          const err = new ProbeError('connect', `${what}: the tunnel was closed by the far end${this.text ? '' : ' before anything arrived'}${why}${got}`, {
            cause: this.end,
          });
          return done(() => reject(err));
        }
      };
      const onAbort = () => {
        const reason = signal.reason;
        // Say what did arrive: "no answer" and "an answer that never matched" are different stories.
        if (reason instanceof ProbeError && this.text) {
          done(() => reject(new ProbeError(reason.reason, `${reason.message}; received: "${printable(this.text, 120)}"`, { cause: reason })));
        } else done(() => reject(reason));
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiter = check;
      check();
    });
  }
}

/** An open tunnel and what the checks use on it. */
interface Session {
  tunnel: ConnectedTunnel;
  log: ProbeContext['log'];
  target: string;
  reader?: StreamReader;
  client?: Client;
  /** Settles with why the tunnel ended, once it has. */
  ended: Promise<Error>;
  close(): void;
}

function openSession(tunnel: ConnectedTunnel, target: string, cfg: TunnelConfig, log: ProbeContext['log']): Session {
  const { socket } = tunnel;
  let lastError: Error | undefined;
  socket.on('error', (err) => (lastError = err));
  const ended = new Promise<Error>((resolve) =>
    socket.once('close', () => resolve(lastError ?? new ProbeError('connect', 'the tunnel was closed by the proxy or the device'))),
  );
  const session: Session = {
    tunnel,
    log,
    target,
    ended,
    close() {
      void session.client?.destroy().catch(() => undefined);
      socket.destroy();
      const dropped = session.reader?.discarded ?? 0;
      if (dropped)
        log.warn(
          { discardedChars: dropped },
          `the device sent more than the checks read: ${dropped} characters past the ${MAX_BUFFER_CHARS}-character window were discarded`,
        );
    },
  };
  if (cfg.http) {
    const host = cfg.http.host ?? target.replace(/:80$/, '');
    let handedOver = false;
    // undici takes the tunnel we opened, once: if it ever asks again the tunnel is gone, and a new
    // tunnel is the probe's decision (a new run, or a held reconnect), not the HTTP client's.
    session.client = new Client(`http://${host}`, {
      connect: (_opts, cb) =>
        queueMicrotask(() => {
          if (handedOver) return cb(new ProbeError('connect', 'the tunnel is closed'), null);
          handedOver = true;
          cb(null, socket);
        }),
      pipelining: 1,
      headersTimeout: 0,
      bodyTimeout: 0,
      // Never close an idle tunnel ourselves: a held tunnel idles between keepalives.
      keepAliveTimeout: 24 * 3600_000,
      keepAliveMaxTimeout: 24 * 3600_000,
      keepAliveTimeoutThreshold: 0,
    });
  } else {
    session.reader = new StreamReader(socket);
  }
  return session;
}

async function checkBanner(ctx: ProbeContext, s: Session, re: RegExp): Promise<void> {
  const line = await s.reader!.wait(ctx.signal, 'waiting for the first line from the device', (text) => {
    const eol = text.indexOf('\n');
    if (eol >= 0) return { value: text.slice(0, eol).replace(/\r$/, ''), used: eol + 1 };
    return text.length > MAX_BANNER_CHARS ? { value: text, used: text.length } : undefined;
  });
  ctx.log.debug({ banner: printable(line, 200) }, 'first line through the tunnel');
  if (!re.test(line)) throw new ProbeError('assertion', `the device's first line "${printable(line, 120)}" does not match /${re.source}/`);
}

async function runSteps(ctx: ProbeContext, s: Session, cfg: TunnelConfig): Promise<void> {
  for (const [i, st] of cfg.steps.entries()) {
    const name = `step ${i + 1}`;
    await withStepTimeout(ctx, cfg.stepTimeout, `${name}: waiting for /${st.expect?.source ?? ''}/`, async (c) => {
      if (st.send !== undefined) s.tunnel.socket.write(st.send);
      if (st.expect) {
        const re = st.expect;
        await s.reader!.wait(c.signal, `${name}: waiting for /${re.source}/`, (text) => {
          const m = re.exec(text);
          return m ? { value: m[0], used: m.index + m[0].length } : undefined;
        });
      }
    });
  }
}

async function checkHttp(ctx: ProbeContext, s: Session, cfg: NonNullable<TunnelConfig['http']>): Promise<void> {
  const headers: Record<string, string> = { 'user-agent': 'fleetprobe' };
  for (const [k, v] of Object.entries(cfg.headers)) headers[k.toLowerCase()] = v instanceof Secret ? v.reveal() : v;
  const what = `HTTP ${cfg.method} ${cfg.path} through the tunnel`;
  const res = await sendRequest(s.client!, { path: cfg.path, method: cfg.method, headers, signal: ctx.signal });
  const body = await readBody(res, cfg.maxBodyBytes, ctx.signal);
  expectStatus(res.statusCode, cfg.expect.status, body.text, `${what}: status`);
  expectBody(body.text, cfg.expect, `${what}: `);
}

/** The part of the checks a held tunnel repeats as its keepalive: steps, or the HTTP request. */
async function exchange(ctx: ProbeContext, s: Session, cfg: TunnelConfig): Promise<void> {
  if (cfg.steps.length) await runSteps(ctx, s, cfg);
  if (cfg.http) {
    const http = cfg.http;
    await withStepTimeout(ctx, cfg.stepTimeout, `HTTP ${http.method} ${http.path} through the tunnel`, (c) => checkHttp(c, s, http));
  }
}

/**
 * An SSH session to the device over the tunnel, with the ssh kind's code (ssh-session.ts). Its own
 * phases (handshake, auth, session, command) all count as this kind's `target`; its messages say
 * which step failed. It takes the tunnel over and closes it.
 */
async function sshThroughTunnel(
  ctx: ProbeContext,
  tunnel: ConnectedTunnel,
  target: string,
  cfg: TunnelConfig,
  ssh: NonNullable<TunnelConfig['ssh']>,
): Promise<void> {
  const named = ssh.hostKeyAlias ?? parseHostPort(target)!;
  await runSshSession(
    withoutPhases(ctx),
    tunnel.socket,
    {
      host: named.host,
      port: named.port,
      user: ssh.user,
      credentials: credentialsOf(ssh),
      hostKeys: policyOf(ssh.hostKeys, ssh.insecureAcceptAnyHostKey),
      role: 'device',
      keepaliveMs: 5000,
      handshakeTimeoutMs: cfg.stepTimeout,
      authTimeoutMs: cfg.stepTimeout,
    },
    {
      command: ssh.command,
      expect: ssh.expect,
      sessionTimeoutMs: cfg.stepTimeout,
      commandTimeoutMs: cfg.stepTimeout,
      maxOutputBytes: ssh.maxOutputBytes,
      target: `device ${target} through the tunnel`,
    },
  );
}

/**
 * Opens the tunnel and runs every check once (phase `target`). The caller closes the session; an
 * SSH check closes the tunnel itself and leaves no session (undefined).
 */
async function openAndCheck(ctx: ProbeContext, cfg: TunnelConfig): Promise<Session | undefined> {
  const target = targetOf(cfg);
  const tunnel = await openTunnel(ctx, cfg, target, cfg.token);
  ctx.log.debug({ status: tunnel.status, statusText: tunnel.statusText, earlyBytes: tunnel.earlyBytes }, 'tunnel open');
  if (cfg.ssh) {
    await ctx.phase('target', () => sshThroughTunnel(ctx, tunnel, target, cfg, cfg.ssh!));
    return undefined;
  }
  const session = openSession(tunnel, target, cfg, ctx.log);
  try {
    await ctx.phase('target', async () => {
      const banner = cfg.expect.banner;
      if (banner) await withStepTimeout(ctx, cfg.stepTimeout, 'waiting for the first line from the device', (c) => checkBanner(c, session, banner));
      await exchange(ctx, session, cfg);
    });
    return session;
  } catch (err) {
    session.close();
    throw err;
  }
}

// Reconnect delays of a held tunnel: exponential from 0.5 s to 30 s, each a random point in the
// upper half of its step ("equal jitter"). Probers cut together by a deploy then come back spread
// out instead of as a herd (the 2024-11-19 incident was a thundering herd of reconnecting tunnels).
// Worked example: after the 3rd failed attempt in a row the wait is 2-4 s; from the 7th on, 15-30 s.
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 30_000;
export function backoffMs(failures: number, random: () => number = Math.random): number {
  const step = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.min(failures, 16));
  return Math.round(step / 2 + random() * (step / 2));
}

async function pause(ms: number, signal: AbortSignal): Promise<void> {
  await sleep(ms, undefined, { signal }).catch(() => undefined);
}

type HoldEnd = { kind: 'stopped' } | { kind: 'rotated' } | { kind: 'interrupted'; err: unknown };

/** Keeps an open session alive with the repeatable checks every `intervalMs` until it ends. */
async function keepAlive(h: HoldContext, ctx: ProbeContext, s: Session, cfg: TunnelConfig, intervalMs: number, upSince: number): Promise<HoldEnd> {
  const holdUntil = upSince + cfg.hold!;
  let ended: Error | undefined;
  void s.ended.then((e) => (ended = e));
  const wake = new AbortController();
  void s.ended.then(() => wake.abort());
  const stop = AbortSignal.any([h.signal, wake.signal]);
  for (;;) {
    const wait = Math.min(intervalMs, holdUntil - Date.now());
    if (wait > 0) await pause(wait, stop);
    if (h.signal.aborted) return { kind: 'stopped' };
    if (ended) return { kind: 'interrupted', err: ended };
    if (Date.now() >= holdUntil) return { kind: 'rotated' };
    try {
      await exchange(ctx, s, cfg);
    } catch (err) {
      if (h.signal.aborted) return { kind: 'stopped' };
      return { kind: 'interrupted', err: ended ?? err };
    }
    h.observe({ tunnel_held_seconds: (Date.now() - upSince) / 1000 });
  }
}

async function holdTunnel(h: HoldContext, cfg: TunnelConfig, intervalMs: number): Promise<void> {
  let failures = 0;
  // Set while an interruption lasts: from the break to the next working tunnel.
  let downSince: number | undefined;
  while (!h.signal.aborted) {
    let keepCtx: ProbeContext | undefined;
    const session = await h.attempt(async (ctx) => {
      // The tunnel must outlive this attempt: tie it to the hold, and to the attempt only until it passes.
      const life = new AbortController();
      const onHold = () => life.abort(h.signal.reason);
      const onAttempt = () => life.abort(ctx.signal.reason);
      h.signal.addEventListener('abort', onHold, { once: true });
      ctx.signal.addEventListener('abort', onAttempt, { once: true });
      try {
        const s = (await openAndCheck({ ...ctx, signal: life.signal }, cfg))!;
        ctx.signal.throwIfAborted();
        void s.ended.then(() => h.signal.removeEventListener('abort', onHold));
        keepCtx = { ...withoutPhases(ctx), signal: life.signal, deadline: Infinity, remainingMs: () => Infinity };
        ctx.observe('tunnel_held_seconds', 0);
        return s;
      } catch (err) {
        life.abort(err);
        h.signal.removeEventListener('abort', onHold);
        throw err;
      } finally {
        ctx.signal.removeEventListener('abort', onAttempt);
      }
    });
    if (!session || !keepCtx) {
      await pause(backoffMs(failures++), h.signal);
      continue;
    }
    failures = 0;
    const upSince = Date.now();
    if (downSince !== undefined) {
      const seconds = (upSince - downSince) / 1000;
      h.observe({ tunnel_last_interruption_seconds: seconds, tunnel_down_seconds: seconds });
      h.log.info({ downSeconds: seconds }, `tunnel back after an interruption of ${seconds.toFixed(1)}s`);
      downSince = undefined;
    }
    const end = await keepAlive(h, keepCtx, session, cfg, intervalMs, upSince);
    session.close();
    if (end.kind !== 'interrupted') continue;
    const heldSeconds = (Date.now() - upSince) / 1000;
    downSince = Date.now();
    const err = new Error(`the tunnel was interrupted after being held ${heldSeconds.toFixed(1)}s`, { cause: end.err });
    h.interrupted(err, { phase: 'hold', durationSeconds: heldSeconds, observations: { tunnel_interruptions: 1, tunnel_held_seconds: 0 } });
    await pause(backoffMs(failures++), h.signal);
  }
}

export const tunnelKind = defineKind({
  kind: 'tunnel',
  description:
    "a port tunnel through the platform's CONNECT proxy to a device port, checked end to end (banner, send/expect, HTTP, an SSH session), optionally held open",
  phases: ['resolve', 'connect', 'tls', 'proxy_connect', 'target', 'hold'],
  platformFields: ['tunnel', 'tunnelTls', 'user', 'token'],
  metrics: [
    {
      name: 'fleetprobe_tunnel_interruptions_total',
      type: 'counter',
      observation: 'tunnel_interruptions',
      help: 'Held tunnels that broke after they were up (reset, closed, or keepalive stalled or wrong).',
    },
    {
      name: 'fleetprobe_tunnel_held_seconds',
      type: 'gauge',
      observation: 'tunnel_held_seconds',
      help: 'How long the current held tunnel has been up, as of its last keepalive (0 while down).',
    },
    {
      name: 'fleetprobe_tunnel_last_interruption_seconds',
      type: 'gauge',
      observation: 'tunnel_last_interruption_seconds',
      help: 'How long the last interruption of a held tunnel lasted, from the break to the next working tunnel.',
    },
    {
      name: 'fleetprobe_tunnel_down_seconds_total',
      type: 'counter',
      observation: 'tunnel_down_seconds',
      help: 'Total time held tunnels spent interrupted (added when each interruption ends).',
    },
  ],
  schema,
  check(cfg) {
    const problems: { field: string; message: string }[] = [];
    if (!cfg.device && !cfg.target) problems.push({ field: 'device', message: 'is required (or give a literal `target` host:port)' });
    if (cfg.device && cfg.target) problems.push({ field: 'target', message: 'set either device (and port) or target, not both' });
    if (cfg.ssh && (cfg.http || cfg.expect.banner || cfg.steps.length))
      problems.push({ field: 'ssh', message: 'an SSH check takes the whole tunnel: it cannot be combined with http, expect.banner or steps' });
    if (cfg.ssh) problems.push(...credentialProblems(cfg.ssh, 'ssh.'));
    if (cfg.http && (cfg.expect.banner || cfg.steps.length))
      problems.push({ field: 'http', message: 'an HTTP check cannot be combined with expect.banner or steps (an HTTP server does not speak first)' });
    if (cfg.hold !== undefined && !cfg.http && !cfg.steps.length) {
      problems.push({ field: 'hold', message: 'a held tunnel needs keepalive traffic: add `http` or `steps` (repeated every interval)' });
    }
    return problems;
  },
  async run(ctx, cfg) {
    const session = await openAndCheck(ctx, cfg);
    session?.close();
    warnIfInsecure(ctx, cfg.tunnelTls, ' of the tunnel proxy', 'tunnelTls.insecureSkipVerify');
  },
  holds: (cfg) => cfg.hold !== undefined,
  async hold(h, cfg, spec) {
    await holdTunnel(h, cfg, spec.intervalMs ?? 60_000);
  },
});
