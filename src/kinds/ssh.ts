import type { Duplex } from 'node:stream';
import type { Client } from 'ssh2';
import { z } from 'zod';
import { duration, secretRef } from '../config/fields.js';
import { ProbeError } from '../core/errors.js';
import { defineKind, type ProbeContext } from '../core/kind.js';
import { connectTcp, resolveHost, withStepTimeout } from '../net/dial.js';
import { closeClient, inPhase, openSshClient, type SshConnectOptions } from '../net/ssh-client.js';
import { runSshSession, UnexplainedHostError, type SshCommandOptions } from '../net/ssh-session.js';
import { corroborate, corroborateField, corroborateProblems } from './ssh-corroborate.js';
import { deviceUuid } from './shared/device.js';
import { withFleetTargets } from './shared/fleet-targets.js';
import { hostPortField, ipAddress } from './shared/host-port.js';
import { httpUrl } from './shared/http-expect.js';
import { runSessions, sessionFields, sessionMetrics, sessionProblems } from './shared/sessions.js';
import { tunnelTlsField } from './shared/tunnel.js';
import { credentialProblems, credentialsOf, hostKeys, maxOutputBytes, parsedKey, policyOf, privateKeyRef, sshCommand, sshExpect } from './shared/ssh.js';

/**
 * `ssh`: an SSH session all the way to a command, failing with the step that broke.
 * - proxy: through the platform's SSH proxy (`host <uuid>`), success proven by markers (ssh-session.ts)
 * - jump: a bastion's direct-tcpip channel to the device's SSH port, then SSH to the device
 * - direct: SSH straight to a host
 */

const PHASES = ['resolve', 'connect', 'handshake', 'auth', 'session', 'corroborate', 'command'] as const;

/** `host` or `host:port` (default port 22). */
const hostPort = hostPortField(22);

const schema = z.object({
  mode: z.enum(['proxy', 'jump', 'direct']).default('proxy'),
  /** proxy mode: the platform's SSH proxy. */
  sshProxy: hostPort.default({ host: 'ssh.balena-devices.com', port: 22 }),
  /** jump mode: the bastion. */
  bastion: hostPort.optional(),
  /** direct mode: the server; jump mode: the device's SSH address as the bastion sees it. */
  host: hostPort.optional(),
  device: deviceUuid.optional(),
  container: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'a container name is letters, digits, "_", "." and "-"')
    .optional(),
  user: z
    .string()
    .min(1)
    .regex(/^[^\s@]+$/, 'a user name has no spaces or "@"'),
  /** jump mode: the user on the device. */
  deviceUser: z.string().min(1).default('root'),
  sshKey: privateKeyRef.optional(),
  sshKeyPassphrase: secretRef.optional(),
  hostKeys: hostKeys.optional(),
  /** jump mode: the device's keys (default: hostKeys). */
  deviceHostKeys: hostKeys.optional(),
  insecureAcceptAnyHostKey: z.boolean().default(false),
  /** Connect to this address instead of resolving the first hop's name. */
  resolve: ipAddress.optional(),
  command: sshCommand,
  expect: sshExpect,
  timeouts: z
    .strictObject({
      connect: duration.default(5000),
      handshake: duration.default(5000),
      auth: duration.default(5000),
      session: duration.default(10_000),
      command: duration.default(10_000),
    })
    .default({ connect: 5000, handshake: 5000, auth: 5000, session: 10_000, command: 10_000 }),
  keepalive: duration.default(5000),
  maxOutputBytes,
  ...sessionFields(PHASES),
  /** proxy mode: where a bare "host error" is corroborated (ssh-corroborate.ts); usually from the platform block. */
  tunnel: hostPortField().optional(),
  tunnelTls: tunnelTlsField,
  api: httpUrl.optional(),
  /** The tunnel's and the API's token. */
  token: secretRef.optional(),
  corroborate: corroborateField,
});
type SshConfig = z.output<typeof schema>;

/** Cross-field rules, reported at load (see ProbeKind.check). */
function check(c: SshConfig): { field: string; message: string }[] {
  const out: { field: string; message: string }[] = [];
  if (c.mode === 'proxy' && !c.device) out.push({ field: 'device', message: 'is required in proxy mode (the device uuid)' });
  if (c.mode !== 'proxy' && !c.host)
    out.push({
      field: 'host',
      message: `is required in ${c.mode} mode (${c.mode === 'jump' ? "the device's SSH address as the bastion sees it" : 'the SSH server'})`,
    });
  if (c.mode === 'jump' && !c.bastion) out.push({ field: 'bastion', message: 'is required in jump mode' });
  if (c.mode !== 'proxy' && c.container) out.push({ field: 'container', message: 'is for proxy mode only' });
  out.push(...credentialProblems(c));
  out.push(...corroborateProblems(c));
  out.push(...sessionProblems(c));
  if (c.sshKeyPassphrase && !c.sshKey) out.push({ field: 'sshKeyPassphrase', message: 'is only used with sshKey' });
  if (c.sshKey) {
    try {
      parsedKey(c.sshKey, c.sshKeyPassphrase);
    } catch (err) {
      out.push({ field: c.sshKeyPassphrase ? 'sshKeyPassphrase' : 'sshKey', message: (err as Error).message });
    }
  }
  return out;
}

/** Opens a direct-tcpip channel from the bastion to the device (phase `connect`). */
function forwardOut(client: Client, host: string, port: number, signal: AbortSignal): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    client.forwardOut('127.0.0.1', 0, host, port, (err, channel) => {
      signal.removeEventListener('abort', onAbort);
      if (err) {
        const reason = (err as { reason?: number }).reason;
        // RFC 4254 §5.1: 1 administratively prohibited, 2 connect failed, 3 unknown channel type.
        if (reason === 1) return reject(new ProbeError('denied', `the bastion does not allow forwarding to ${host}:${port}: ${err.message}`, { cause: err }));
        return reject(new ProbeError('connect', `the bastion could not connect to ${host}:${port}: ${err.message}`, { cause: err }));
      }
      if (signal.aborted) {
        channel.destroy();
        return reject(signal.reason);
      }
      resolve(channel);
    });
  });
}

type SecondOpinion = (ctx: ProbeContext, err: UnexplainedHostError) => Promise<ProbeError>;

/**
 * Corroboration once a run: the sessions of a batch (`sessions: N`) go to one device, so when
 * several meet a bare host error, the first asks the tunnel and the API and the others wait for
 * its answer (in their own `corroborate` phase) instead of opening N tunnels and making N API
 * calls about the same device: load on the platform at the moment it is in trouble.
 */
function oncePerRun(c: SshConfig): SecondOpinion {
  let asked: Promise<ProbeError> | undefined;
  return async (ctx, err) => {
    if (!asked) return (asked = corroborate(ctx, c, err));
    const verdict = await ctx.phase('corroborate', () => asked!);
    return new ProbeError(verdict.reason, verdict.message);
  };
}

/** One session of the probe, from DNS to the checked command. Closes everything it opened. */
async function runOne(ctx: ProbeContext, c: SshConfig, secondOpinion: SecondOpinion): Promise<void> {
  const credentials = credentialsOf(c);
  const first = c.mode === 'proxy' ? c.sshProxy : c.mode === 'jump' ? c.bastion! : c.host!;
  const common = { credentials, keepaliveMs: c.keepalive, handshakeTimeoutMs: c.timeouts.handshake, authTimeoutMs: c.timeouts.auth };
  const address = await resolveHost(ctx, first.host, { address: c.resolve });
  // connectTcp is its own `connect` phase: only the time limit is added here.
  const socket = await withStepTimeout(ctx, c.timeouts.connect, `TCP connect to ${first.host}:${first.port}`, (step) => connectTcp(step, address, first.port));
  const command: Omit<SshCommandOptions, 'target'> = {
    command: c.command,
    expect: c.expect,
    sessionTimeoutMs: c.timeouts.session,
    commandTimeoutMs: c.timeouts.command,
    maxOutputBytes: c.maxOutputBytes,
  };
  const firstHop: SshConnectOptions = {
    ...common,
    host: first.host,
    port: first.port,
    user: c.user,
    hostKeys: policyOf(c.hostKeys, c.insecureAcceptAnyHostKey),
    role: c.mode === 'proxy' ? 'SSH proxy' : c.mode === 'jump' ? 'bastion' : 'host',
  };

  if (c.mode === 'proxy') {
    const proxyCommand = c.container ? `enter ${c.device} ${c.container}` : `host ${c.device}`;
    try {
      await runSshSession(ctx, socket, firstHop, { ...command, proxyCommand, target: `device ${c.device}${c.container ? ` container ${c.container}` : ''}` });
    } catch (err) {
      if (!(err instanceof UnexplainedHostError)) throw err;
      const verdict = await secondOpinion(ctx, err);
      // The session is what failed: the verdict is charged to it, after `corroborate` in the timeline.
      await ctx.phase('session', () => {
        throw verdict;
      });
    }
    return;
  }
  if (c.mode === 'direct') {
    await runSshSession(ctx, socket, firstHop, { ...command, target: `${c.host!.host}:${c.host!.port}` });
    return;
  }
  const bastion = await openSshClient(ctx, socket, firstHop);
  try {
    const dev = c.host!;
    const channel = await inPhase(ctx, 'connect', c.timeouts.connect, `the bastion's connection to ${dev.host}:${dev.port}`, (signal) =>
      forwardOut(bastion, dev.host, dev.port, signal),
    );
    await runSshSession(
      ctx,
      channel,
      {
        ...common,
        host: dev.host,
        port: dev.port,
        user: c.deviceUser,
        hostKeys: policyOf(c.deviceHostKeys ?? c.hostKeys, c.insecureAcceptAnyHostKey),
        role: 'device',
      },
      { ...command, target: `device ${dev.host}:${dev.port}` },
    );
  } finally {
    closeClient(bastion, socket);
  }
}

const sshKindOne = defineKind({
  kind: 'ssh',
  description: 'an SSH session through the platform proxy (or a bastion, or direct) to a command on the device, checked by markers, exit status and output',
  phases: PHASES,
  reasons: ['hostkey', 'auth', 'device_auth', 'device_offline', 'denied', 'proxy', 'protocol', 'assertion'],
  // A session through the proxy takes 0.2-3 s; 5 s is the latency objective.
  buckets: [0.25, 0.5, 1, 2, 5, 10],
  schema,
  platformFields: ['sshProxy', 'bastion', 'user', 'sshKey', 'sshKeyPassphrase', 'hostKeys', 'tunnel', 'tunnelTls', 'api', 'token'],
  check,
  metrics: sessionMetrics('ssh', 'SSH sessions'),
  async run(ctx, cfg) {
    if (cfg.insecureAcceptAnyHostKey)
      ctx.log.warn('SSH host key verification is disabled for this probe (insecureAcceptAnyHostKey): anyone in the middle can answer');
    const secondOpinion = oncePerRun(cfg);
    await runSessions(ctx, 'ssh', cfg, (sub) => runOne(sub, cfg, secondOpinion));
  },
});

/** With `fleet:` (shared/fleet-targets.ts), each picked device's session through the SSH proxy. */
export const sshKind = withFleetTargets(sshKindOne, {
  targetField: 'device',
  forDevice: (cfg, uuid) => ({ ...cfg, device: uuid }),
  check: (cfg) => (cfg.mode === 'proxy' ? [] : [{ field: 'fleet', message: "is for proxy mode (the SSH proxy's `host <uuid>`)" }]),
});
