import { z } from 'zod';
import { duration, headerMap, regex, secretRef } from '../config/fields.js';
import { deviceAuthority } from '../net/connect-tunnel.js';
import { deviceUuid } from './shared/device.js';
import { hostPortField, hostPortText, portNumber } from './shared/host-port.js';
import { bodyExpectFields, maxBodyBytes } from './shared/http-expect.js';
import { sessionFields, sessionProblems } from './shared/sessions.js';
import { credentialProblems, hostKeys, maxOutputBytes, privateKeyRef, sshCommand, sshExpect } from './shared/ssh.js';
import { stepTimeout, tunnelField, tunnelTlsField, tunnelUser } from './shared/tunnel.js';

/** The fields of a `tunnel` probe and the rules across them. */

/** The kind's phases; `hold` is only a held tunnel's. */
export const PHASES = ['resolve', 'connect', 'tls', 'proxy_connect', 'target', 'hold'] as const;
/** The phases `maxLatency` may bound: a run's (a held tunnel is judged by its interruptions). */
const TIMED_PHASES = ['resolve', 'connect', 'tls', 'proxy_connect', 'target'] as const;

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

export const schema = z.object({
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
  /** N tunnels at once in lockstep, their success ratio and latency bounds (shared/sessions.ts). */
  ...sessionFields(TIMED_PHASES),
});
export type TunnelConfig = z.output<typeof schema>;

export function targetOf(cfg: TunnelConfig): string {
  return cfg.target ?? deviceAuthority(cfg.device!, cfg.port, cfg.targetSuffix);
}

/** Rules across fields, reported at load like schema problems. */
export function checkConfig(cfg: TunnelConfig): { field: string; message: string }[] {
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
  problems.push(...sessionProblems(cfg));
  // A held tunnel is one tunnel, judged by its interruptions: the batch fields have nothing to judge.
  if (cfg.hold !== undefined)
    for (const field of ['sessions', 'maxLatency'] as const)
      if (cfg[field] !== undefined && cfg[field] !== 1)
        problems.push({ field, message: 'is for tunnels opened per run, not with `hold` (a held tunnel is one tunnel)' });
  return problems;
}
