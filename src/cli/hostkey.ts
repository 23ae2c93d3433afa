import type { Duplex } from 'node:stream';
import { parseArgs } from 'node:util';
import type { Logger } from 'pino';
import { classifyError, describeError } from '../core/classify.js';
import { parseDurationMs } from '../core/duration.js';
import { UsageError } from '../core/errors.js';
import type { ProbeContext } from '../core/kind.js';
import { createLogger } from '../core/log.js';
import { Secret } from '../core/redact.js';
import { boundMessage } from '../core/run.js';
import { parseHostPort } from '../kinds/shared/host-port.js';
import { deviceAuthority, dialThroughProxy, type ProxyEndpoint } from '../net/connect-tunnel.js';
import { connectTcp, resolveHost } from '../net/dial.js';
import { fingerprintSha256, keyTypeOf, knownHostsName } from '../net/known-hosts.js';
import { handshakeKey, KEY_TYPES, oneShotContext } from './hostkey-scan.js';

/**
 * `fleetprobe hostkey HOST[:PORT]`: the host keys an SSH server presents, printed as known_hosts
 * lines and as the `SHA256:` fingerprints a probe's `hostKeys` pins. The platform's own client turns
 * host-key checking off (docs/protocols.md "SSH proxy"); this is how a probe's pin is obtained
 * instead, directly (the SSH proxy) or through the platform's tunnel proxy (a device's own sshd,
 * which is reachable no other way), so nobody has to accept a key blindly on first use.
 */

export const HOSTKEY_USAGE = `Usage: fleetprobe hostkey HOST[:PORT] [options]

Prints the SSH host keys of HOST (port 22) as known_hosts lines, then their SHA256 fingerprints
as comments: the output is a known_hosts file (redirect it) and the fingerprints are what a probe's
hostKeys pins. One connection per key type (as ssh-keyscan), each limited by --timeout; no login.

  fleetprobe hostkey ssh.balena-devices.com                       # the platform's SSH proxy
  fleetprobe hostkey --via-tunnel tunnel.balena-cloud.com:443 UUID   # a device's sshd (port 22222)

Options:
  --via-tunnel PROXY[:PORT]  reach HOST through the platform's CONNECT tunnel proxy (port 443, TLS):
                             HOST is a device uuid (target <uuid>.balena:22222) or a HOST:PORT target
  --token-env NAME           the variable holding the tunnel token (default BALENA_TOKEN)
  --tunnel-user USER         user part of the tunnel's credentials (default root; the platform
                             checks only the token)
  --tunnel-ca FILE           PEM bundle to verify the tunnel proxy with (default: system CAs)
  --tunnel-server-name NAME  name to verify the tunnel proxy's certificate for (default: PROXY)
  --tunnel-plain             plain TCP to the tunnel proxy (older platforms: vpn.<domain>:3128)
  --timeout DURATION         limit of each connection (default 10s)

Exit status: 0 keys printed, 1 no key could be fetched (the reason is printed), 2 usage error.`;

const OPTIONS = {
  'via-tunnel': { type: 'string' },
  'token-env': { type: 'string' },
  'tunnel-user': { type: 'string' },
  'tunnel-ca': { type: 'string' },
  'tunnel-server-name': { type: 'string' },
  'tunnel-plain': { type: 'boolean' },
  timeout: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>['values'];

/** Where the keys come from: how to open a byte stream to the server, and what to call it. */
interface Source {
  /** The server as known_hosts and the probes name it. */
  host: string;
  port: number;
  /** How the server is reached, for messages and the output's first line ("fetched <how>"). */
  how: string;
  /** Whether anything authenticated the path to the server (a verified TLS tunnel proxy). */
  authenticated: boolean;
  dial(ctx: ProbeContext): Promise<Duplex>;
}

const DEVICE_UUID = /^[0-9a-fA-F]{7,64}$/;

function hostPort(value: string, defaultPort: number, what: string): { host: string; port: number } {
  const parsed = parseHostPort(value) ?? parseHostPort(`${value}:${defaultPort}`);
  if (!parsed) throw new UsageError(`${what} must be HOST or HOST:PORT, got "${value}"`);
  return parsed;
}

function tunnelSource(v: Values, server: string): Source {
  const proxy = hostPort(v['via-tunnel']!, 443, '--via-tunnel');
  const tokenEnv = v['token-env'] ?? 'BALENA_TOKEN';
  const token = process.env[tokenEnv];
  if (!token) throw new UsageError(`--via-tunnel needs a token in $${tokenEnv} (or name another variable with --token-env)`);
  const given = hostPort(server, 22222, 'HOST');
  const target = DEVICE_UUID.test(given.host) ? hostPort(deviceAuthority(given.host, given.port), 22222, 'HOST') : given;
  const tls: ProxyEndpoint['tls'] = v['tunnel-plain'] ? false : { caFile: v['tunnel-ca'], serverName: v['tunnel-server-name'] };
  const credentials = { user: v['tunnel-user'] ?? 'root', token: new Secret(token, `env ${tokenEnv}`) };
  const authority = `${target.host.includes(':') ? `[${target.host}]` : target.host}:${target.port}`;
  return {
    ...target,
    how: `through the tunnel proxy ${proxy.host}:${proxy.port} over ${tls ? 'TLS, its certificate verified' : 'plain TCP'}`,
    authenticated: Boolean(tls),
    dial: async (ctx) =>
      (
        await dialThroughProxy(ctx, {
          proxy: { ...proxy, tls },
          target: authority,
          credentials,
          stepTimeoutMs: ctx.remainingMs(),
          plainSetting: '--tunnel-plain',
        })
      ).socket,
  };
}

function directSource(server: string): Source {
  const target = hostPort(server, 22, 'HOST');
  return {
    ...target,
    how: 'directly over plain TCP',
    authenticated: false,
    dial: async (ctx) => connectTcp(ctx, await resolveHost(ctx, target.host), target.port),
  };
}

function sourceOf(argv: string[]): { source: Source; timeoutMs: number } | 'help' {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(`hostkey: ${(err as Error).message}`);
  }
  const v = parsed.values;
  if (v.help) return 'help';
  if (parsed.positionals.length !== 1) throw new UsageError('hostkey takes one server: fleetprobe hostkey HOST[:PORT] (see fleetprobe hostkey --help)');
  const timeoutMs = v.timeout === undefined ? 10_000 : parseDurationMs(v.timeout);
  if (!timeoutMs) throw new UsageError(`--timeout must be a duration such as 10s, got "${v.timeout}"`);
  const tunnelOnly = (['token-env', 'tunnel-user', 'tunnel-ca', 'tunnel-server-name', 'tunnel-plain'] as const).filter((k) => v[k] !== undefined);
  if (!v['via-tunnel'] && tunnelOnly.length) throw new UsageError(`--${tunnelOnly[0]} is an option of --via-tunnel`);
  const server = parsed.positionals[0];
  return { source: v['via-tunnel'] ? tunnelSource(v, server) : directSource(server), timeoutMs };
}

/** The keys of every type the server has, in KEY_TYPES order; stops at the first failure. */
async function collect(source: Source, timeoutMs: number, log: Logger): Promise<{ keys: Buffer[]; failure?: unknown }> {
  const keys: Buffer[] = [];
  const where = `${source.host}:${source.port}`;
  for (const { type, algorithms } of KEY_TYPES) {
    const one = oneShotContext(timeoutMs, `${type} host key of ${where}`, log);
    try {
      const stream = await source.dial(one.ctx);
      const key = await handshakeKey(one.ctx, stream, algorithms, where);
      if (key) keys.push(key);
    } catch (err) {
      // The run's signal carries the reason (our timeout) when that is what ended it.
      return { keys, failure: one.ctx.signal.aborted ? one.ctx.signal.reason : err };
    } finally {
      one.done();
    }
  }
  return { keys };
}

function render(source: Source, keys: Buffer[]): string {
  const name = knownHostsName(source.host, source.port);
  return [
    `# ${name}: ${keys.length} host key${keys.length === 1 ? '' : 's'}, fetched ${source.how}`,
    ...keys.map((k) => `${name} ${keyTypeOf(k)} ${k.toString('base64')}`),
    `# SHA256 fingerprints, for a probe's hostKeys (as ssh-keygen -lf prints them):`,
    ...keys.map((k) => `#   ${keyTypeOf(k)} ${fingerprintSha256(k)}`),
  ].join('\n');
}

export async function cmdHostkey(argv: string[]): Promise<number> {
  const parsed = sourceOf(argv);
  if (parsed === 'help') {
    process.stdout.write(HOSTKEY_USAGE + '\n');
    return 0;
  }
  const { source, timeoutMs } = parsed;
  const where = `${source.host}:${source.port}`;
  const { keys, failure } = await collect(source, timeoutMs, createLogger({ level: 'warn', fd: 2 }));
  const why = failure === undefined ? '' : `${classifyError(failure)}: ${boundMessage(describeError(failure))}`;
  if (!keys.length) {
    process.stderr.write(
      `fleetprobe: hostkey: no host key of ${where} (asked ${source.how}): ${why || `it offers none of the key types fleetprobe checks (${KEY_TYPES.map((t) => t.type).join(', ')})`}\n`,
    );
    return 1;
  }
  process.stdout.write(render(source, keys) + '\n');
  if (failure !== undefined) process.stderr.write(`fleetprobe: hostkey: warning: stopped after ${keys.length} key type(s) of ${where}: ${why}\n`);
  if (!source.authenticated)
    process.stderr.write(
      `fleetprobe: hostkey: nothing authenticated this connection: before you pin these keys, compare the fingerprints with a second source (the platform's published ones, or this command from another network)\n`,
    );
  return 0;
}
