import { z } from 'zod';
import { duration } from '../../config/fields.js';
import { classifyError, describeError } from '../../core/classify.js';
import type { ProbeContext } from '../../core/kind.js';
import type { Secret } from '../../core/redact.js';
import { dialThroughProxy, type ConnectedTunnel } from '../../net/connect-tunnel.js';
import { hostPortField, type HostPort } from './host-port.js';
import { proxyTlsField } from './tls.js';

/**
 * The platform's tunnel proxy as the kinds reach it (tunnel, and device-status's reachability
 * check): its fields, and a tunnel opened through it with dialThroughProxy.
 */

/** The tunnel proxy, host:port. */
export const tunnelField = hostPortField().default({ host: 'tunnel.balena-cloud.com', port: 443 });
/** TLS to the proxy (SNI = serverName or the tunnel host); `true` for the defaults, `false` for plain TCP. */
export const tunnelTlsField = proxyTlsField;
/** The platform ignores the user and checks the token; `root` is what non-user API keys use. */
export const tunnelUser = z.string().min(1).default('root');
/** Limit of each single step (connect, TLS, the proxy's answer, each check), inside the run timeout. */
export const stepTimeout = duration.default(10_000);

/** The fields a tunnel is opened with. */
export interface TunnelFields {
  tunnel: HostPort;
  tunnelTls: z.output<typeof proxyTlsField>;
  user: string;
  stepTimeout: number;
}

/** Opens a tunnel to `target` (phases `resolve`, `connect`, `tls`, `proxy_connect`); the caller closes it. */
export function openTunnel(ctx: ProbeContext, f: TunnelFields, target: string, token: Secret): Promise<ConnectedTunnel> {
  return dialThroughProxy(ctx, {
    proxy: { ...f.tunnel, tls: f.tunnelTls },
    target,
    credentials: { user: f.user, token },
    stepTimeoutMs: f.stepTimeout,
  });
}

/** Whether a device answered a tunnel check, and how we know. */
export interface Reach {
  reachable: boolean;
  /** For messages: how we know. */
  detail: string;
  /** When the device was last known reachable (a companion's last success). */
  lastReachableAt?: number;
}

/**
 * Opens a tunnel to `target` and closes it at once: a `200` is reachable; the proxy's "not
 * connected" answers (503, 500, 502: `device_offline`, the device or its port) are unreachable.
 * Anything else throws: a failure of the path (proxy down, TLS, our token, a timeout on the way)
 * says nothing about the device, so the caller fails with that reason and judges no drift.
 */
export async function tunnelReach(ctx: ProbeContext, f: TunnelFields, target: string, token: Secret): Promise<Reach> {
  try {
    const { socket } = await openTunnel(ctx, f, target, token);
    socket.destroy();
    return { reachable: true, detail: `a tunnel to ${target} opened` };
  } catch (err) {
    if (classifyError(err) === 'device_offline' && !ctx.signal.aborted) return { reachable: false, detail: describeError(err) };
    throw err;
  }
}
