import { z } from 'zod';
import { duration } from '../config/fields.js';
import { classifyError, describeError } from '../core/classify.js';
import { ProbeError } from '../core/errors.js';
import type { ProbeContext } from '../core/kind.js';
import type { Secret } from '../core/redact.js';
import { deviceAuthority } from '../net/connect-tunnel.js';
import { withStepTimeout } from '../net/dial.js';
import { outputExcerpt } from '../net/ssh-channel.js';
import type { UnexplainedHostError } from '../net/ssh-session.js';
import { withoutPhases } from './shared/context.js';
import type { HostPort } from './shared/host-port.js';
import { readDevice } from './shared/platform-api.js';
import { tlsField, type TlsBlock } from './shared/tls.js';
import { openTunnel, type TunnelFields } from './shared/tunnel.js';

/**
 * The ssh kind's second opinion on a bare "host error" (docs/protocols.md "SSH proxy"): the proxy's
 * text cannot tell a device that is down from a proxy that cannot log in to it (the 2026-02-26
 * incident: tunnels worked, `ssh` said only "host error"). So the same device is asked for
 * through the tunnel (its SSH port's banner, as `balena device tunnel` would) and/or the API
 * (`is_online`), within one time budget, all of it in phase `corroborate`:
 * - the banner came through the tunnel → `device_auth` (the device is up; the proxy could not log in);
 * - the tunnel proxy says the device is not connected, or the API says offline → `device_offline`;
 * - neither path can tell (failed, timed out, or off) → `proxy`.
 * The tunnel, when it tells, wins over the API: the API's status lags (the 2025-09-10 incident).
 */

/** The device's own SSH port, as the tunnel reaches it. */
const DEVICE_SSH_PORT = 22222;
/** A banner is one short line; more without a line end is not SSH. */
const MAX_BANNER_BYTES = 256;

export const corroborateField = z
  .strictObject({
    /** Default: on when the probe has `tunnel` and `token` (from the file's platform block or its own). */
    tunnel: z.boolean().optional(),
    /** Default: on when the probe has `api` and `token`. */
    api: z.boolean().optional(),
    /** The whole second opinion's budget (both paths at once); cut to what the run's timeout leaves. */
    timeout: duration.default(5000),
    /** TLS to the API. */
    tls: tlsField,
  })
  .default({ timeout: 5000, tls: { insecureSkipVerify: false } });

/** The fields of the ssh kind corroboration reads. */
export interface CorroborateConfig {
  device?: string;
  user: string;
  tunnel?: HostPort;
  tunnelTls: TunnelFields['tunnelTls'];
  api?: string;
  token?: Secret;
  corroborate: { tunnel?: boolean; api?: boolean; timeout: number; tls: TlsBlock };
}

/** Which paths are on: explicitly, or by default where the probe has what the path needs. */
export function corroborationPaths(c: CorroborateConfig): { tunnel: boolean; api: boolean } {
  return {
    tunnel: c.corroborate.tunnel ?? (c.tunnel !== undefined && c.token !== undefined),
    api: c.corroborate.api ?? (c.api !== undefined && c.token !== undefined),
  };
}

/** Load-time problems: a path switched on without what it needs. */
export function corroborateProblems(c: CorroborateConfig & { mode: string }): { field: string; message: string }[] {
  const out: { field: string; message: string }[] = [];
  const need = (path: 'tunnel' | 'api') => {
    if (c.corroborate[path] !== true) return;
    if (c.mode !== 'proxy') out.push({ field: `corroborate.${path}`, message: 'is for proxy mode only' });
    else if (c[path] === undefined || c.token === undefined) out.push({ field: `corroborate.${path}`, message: `needs \`${path}\` and \`token\`` });
  };
  need('tunnel');
  need('api');
  return out;
}

/** What one path found: `up`/`down` decide, `unknown` says why it could not. */
interface Evidence {
  verdict: 'up' | 'down' | 'unknown';
  detail: string;
}

/** Reads the first line the device sends through the tunnel; an `SSH-` banner means it is up. */
async function tunnelEvidence(ctx: ProbeContext, c: CorroborateConfig, token: Secret, budgetMs: number): Promise<Evidence> {
  const target = deviceAuthority(c.device!, DEVICE_SSH_PORT);
  const fields: TunnelFields = { tunnel: c.tunnel!, tunnelTls: c.tunnelTls, user: c.user, stepTimeout: budgetMs };
  try {
    const { socket } = await openTunnel(ctx, fields, target, token);
    try {
      const line = await firstLine(socket, ctx.signal);
      if (/^SSH-/.test(line)) return { verdict: 'up', detail: `its SSH banner came through the tunnel (${line.slice(0, 60)})` };
      return { verdict: 'unknown', detail: `a tunnel to ${target} opened but no SSH banner came (${JSON.stringify(line.slice(0, 60))})` };
    } finally {
      socket.destroy();
    }
  } catch (err) {
    // A budget that ran out is `timeout` here: the path could not tell, which is evidence too.
    const reason = classifyError(err);
    if (reason === 'device_offline') return { verdict: 'down', detail: `the tunnel says it is not reachable (${describeError(err)})` };
    return { verdict: 'unknown', detail: `the tunnel could not tell (${reason}: ${describeError(err)})` };
  }
}

/** The first line on `socket` (without its line end), or what came before it closed. */
function firstLine(socket: NodeJS.ReadableStream & { destroy(): void }, signal: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const done = (fn: () => void) => {
      socket.removeListener('data', onData);
      socket.removeListener('end', onEnd);
      socket.removeListener('error', onEnd);
      signal.removeEventListener('abort', onAbort);
      fn();
    };
    const onData = (chunk: Buffer) => {
      buf += chunk.toString('latin1');
      const nl = buf.indexOf('\n');
      if (nl >= 0 || buf.length >= MAX_BANNER_BYTES) done(() => resolve(buf.slice(0, nl >= 0 ? nl : MAX_BANNER_BYTES).replace(/\r$/, '')));
    };
    const onEnd = () => done(() => resolve(buf));
    const onAbort = () => done(() => reject(signal.reason));
    if (signal.aborted) return onAbort();
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('error', onEnd);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** The API's `is_online` for the device. */
async function apiEvidence(ctx: ProbeContext, c: CorroborateConfig, token: Secret, budgetMs: number): Promise<Evidence> {
  try {
    const ep = { url: new URL(c.api!), token, tls: c.corroborate.tls, stepTimeoutMs: budgetMs };
    const d = await readDevice(ctx, ep, c.device!);
    return d.is_online ? { verdict: 'up', detail: 'the API says it is online' } : { verdict: 'down', detail: 'the API says it is offline' };
  } catch (err) {
    return { verdict: 'unknown', detail: `the API could not tell (${classifyError(err)}: ${describeError(err)})` };
  }
}

const OFF: Evidence = { verdict: 'unknown', detail: '' };
/** Kept back from the run's deadline so the verdict is still given (not a run timeout in corroborate). */
const VERDICT_MARGIN_MS = 200;
const STEP_INSIDE_BUDGET_MS = 50;

/**
 * Phase `corroborate`: asks the enabled paths at once within the budget and returns the error the
 * run fails with, its reason decided by the evidence and its message saying which.
 */
export async function corroborate(ctx: ProbeContext, c: CorroborateConfig, hostError: UnexplainedHostError): Promise<ProbeError> {
  const paths = corroborationPaths(c);
  const said = `the proxy reported a bare host error for ${hostError.target} (stderr: ${outputExcerpt(hostError.stderr)}; proxy ${hostError.proxyExit})`;
  if (!paths.tunnel && !paths.api) {
    return new ProbeError('proxy', `${said}; nothing corroborated it (no tunnel or API configured for \`corroborate\`), so the device's state is unknown`);
  }
  const token = c.token!;
  const budget = Math.min(c.corroborate.timeout, ctx.remainingMs() - VERDICT_MARGIN_MS);
  if (budget <= 0) return new ProbeError('proxy', `${said}; no time was left in the run to corroborate it`);
  const stepMs = Math.max(1, budget - STEP_INSIDE_BUDGET_MS);
  const what = [paths.tunnel && 'the tunnel', paths.api && 'the API'].filter(Boolean).join(' and ');
  const [tunnel, api] = await ctx.phase('corroborate', () =>
    // The dialers' own phases (resolve, connect, tls, proxy_connect) are corroborate's time here.
    withStepTimeout(withoutPhases(ctx), budget, `corroborating through ${what}`, (step) =>
      // Each step's own limit ends just inside the budget, so a hanging step reports as its timeout.
      Promise.all([paths.tunnel ? tunnelEvidence(step, c, token, stepMs) : OFF, paths.api ? apiEvidence(step, c, token, stepMs) : OFF]),
    ),
  );
  const heard = [tunnel, api].filter((e) => e.detail).map((e) => e.detail);
  const decided = tunnel.verdict !== 'unknown' ? tunnel : api;
  if (decided.verdict === 'up') {
    return new ProbeError('device_auth', `${said}; the device is up (${heard.join('; ')}), so the proxy could not log in to it`);
  }
  if (decided.verdict === 'down') return new ProbeError('device_offline', `${said}; the device is down (${heard.join('; ')})`);
  return new ProbeError('proxy', `${said}; neither path could tell whether the device is up (${heard.join('; ')})`);
}
