import { z } from 'zod';

/** A host and a port, the host bare (an IPv6 address without its brackets). */
export interface HostPort {
  host: string;
  port: number;
}

// A bracketed IPv6 address, or a name or IPv4 address: no whitespace, colon, bracket or slash.
const HOST_PORT = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s:[\]/]+))(?::(\d{1,5}))?$/;

/**
 * `host:port` or `[v6]:port`, with a port from 1 to 65535; with `defaultPort`, also a bare `host`.
 * The one parser of an authority in a probe definition (endpoints, CONNECT targets, known_hosts
 * aliases, a Docker engine's tcp:// address).
 */
export function parseHostPort(value: string, defaultPort?: number): HostPort | undefined {
  const m = HOST_PORT.exec(value);
  if (!m || (m[3] === undefined && defaultPort === undefined)) return undefined;
  const port = m[3] === undefined ? defaultPort! : Number(m[3]);
  if (port < 1 || port > 65535) return undefined;
  return { host: m[1] ?? m[2], port };
}

/** A `host:port` field, parsed; with `defaultPort` the port may be left out (`host`). */
export function hostPortField(defaultPort?: number) {
  const problem = defaultPort === undefined ? 'is not host:port (e.g. tunnel.balena-cloud.com:443)' : 'is not host or host:port';
  return z.string().transform((v, ctx) => {
    const hp = parseHostPort(v, defaultPort);
    if (!hp) {
      ctx.addIssue({ code: 'custom', message: `"${v}" ${problem}` });
      return z.NEVER;
    }
    return hp;
  });
}

/** A `host:port` kept as written (a literal CONNECT target), checked like hostPortField. */
export const hostPortText = z.string().refine((v) => parseHostPort(v) !== undefined, 'a target is host:port');

/** A TCP port number. */
export const portNumber = z.number().int().min(1).max(65535);

/** An address to connect to instead of resolving a name (like curl --resolve). */
export const ipAddress = z.union([z.ipv4(), z.ipv6()]);
