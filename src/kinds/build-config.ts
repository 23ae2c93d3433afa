import { z } from 'zod';
import { duration, readableDir, secretRef } from '../config/fields.js';
import { fleetSlug } from './shared/device.js';
import { parseHostPort } from './shared/host-port.js';
import { httpUrl } from './shared/http-expect.js';
import { tlsFieldWithoutServerName } from './shared/tls.js';

/** The fields of a `build` probe and the rules across them. */

const DEFAULT_UPLOAD_TIMEOUT_MS = 2 * 60_000;
const DEFAULT_STALL_TIMEOUT_MS = 5 * 60_000;
/** Cleaning up (cancelling a release, removing an image) happens after the run's deadline: it gets its own short limit. */
export const CLEANUP_TIMEOUT_MS = 10_000;

/** `unix:///var/run/docker.sock`, `tcp://host:2375` or `http://host:2375` (no TLS: see the README). */
export type DockerEndpoint = { socketPath: string; label: string } | { host: string; port: number; label: string };
const dockerEndpoint = z.string().transform((v, ctx): DockerEndpoint => {
  const unix = /^unix:\/\/(\/.+)$/.exec(v);
  if (unix) return { socketPath: unix[1], label: v };
  const tcp = /^(?:tcp|http):\/\/([^/]*)\/?$/.exec(v);
  const hp = tcp ? parseHostPort(tcp[1]) : undefined;
  if (hp) return { ...hp, label: v };
  ctx.addIssue({ code: 'custom', message: 'a Docker endpoint is unix:///path/to/docker.sock, tcp://HOST:PORT or http://HOST:PORT' });
  return z.NEVER;
});

export const schema = z.object({
  target: z.enum(['balena', 'docker']).default('balena'),
  /** The fleet's slug, `<org>/<fleet>` (target balena). */
  fleet: fleetSlug.optional(),
  builder: httpUrl.default('https://builder.balena-cloud.com'),
  api: httpUrl.default('https://api.balena-cloud.com'),
  token: secretRef.optional(),
  emulated: z.boolean().default(false),
  nocache: z.boolean().default(false),
  docker: dockerEndpoint.default({ socketPath: '/var/run/docker.sock', label: 'unix:///var/run/docker.sock' }),
  /** A directory to send as the build context (relative to the config file). */
  context: readableDir.optional(),
  /** An inline Dockerfile, sent alone with the nonce file. */
  dockerfile: z.string().min(1).optional(),
  dockerfilePath: z
    .string()
    .regex(/^[^/].*$|^$/, 'a path inside the build context (no leading /)')
    .default(''),
  tls: tlsFieldWithoutServerName,
  uploadTimeout: duration.default(DEFAULT_UPLOAD_TIMEOUT_MS),
  stallTimeout: duration.default(DEFAULT_STALL_TIMEOUT_MS),
});
export type BuildConfig = z.output<typeof schema>;

/** Rules across fields, reported at load like schema problems. */
export function checkConfig(c: BuildConfig): { field: string; message: string }[] {
  const problems: { field: string; message: string }[] = [];
  if (c.target === 'balena') {
    if (!c.fleet) problems.push({ field: 'fleet', message: 'is required for target balena (<org>/<fleet>)' });
    if (!c.token) problems.push({ field: 'token', message: 'is required for target balena ({env: NAME} or {file: PATH}, here or in the platform block)' });
  }
  if (c.context !== undefined && c.dockerfile !== undefined) {
    problems.push({ field: 'dockerfile', message: 'set either context (a directory) or dockerfile (inline), not both' });
  }
  return problems;
}
