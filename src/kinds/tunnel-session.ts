import { Client } from 'undici';
import { ProbeError } from '../core/errors.js';
import type { ProbeContext } from '../core/kind.js';
import { Secret } from '../core/redact.js';
import { printable, type ConnectedTunnel } from '../net/connect-tunnel.js';
import { withStepTimeout } from '../net/dial.js';
import { runSshSession } from '../net/ssh-session.js';
import { withoutPhases } from './shared/context.js';
import { parseHostPort } from './shared/host-port.js';
import { readBody, sendRequest } from './shared/http-exchange.js';
import { expectBody, expectStatus } from './shared/http-expect.js';
import { credentialsOf, policyOf } from './shared/ssh.js';
import { openTunnel } from './shared/tunnel.js';
import { targetOf, type TunnelConfig } from './tunnel-config.js';
import { MAX_BUFFER_CHARS, StreamReader } from './tunnel-stream-reader.js';

/**
 * One tunnel through the proxy and the checks on what answers at the far end: the device's first
 * line, send/expect steps, an HTTP request, or a whole SSH session.
 */

// A first line longer than this is taken as it is (a device that never sends a newline).
const MAX_BANNER_CHARS = 1024;

/** An open tunnel and what the checks use on it. */
export interface Session {
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
export async function exchange(ctx: ProbeContext, s: Session, cfg: TunnelConfig): Promise<void> {
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
export async function openAndCheck(ctx: ProbeContext, cfg: TunnelConfig): Promise<Session | undefined> {
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
