import type net from 'node:net';
import type tls from 'node:tls';
import type { Client } from 'undici';
import { z } from 'zod';
import { headerMap, readableFile, regex } from '../config/fields.js';
import { ProbeError } from '../core/errors.js';
import { defineKind, type ProbeContext } from '../core/kind.js';
import { redact, Secret } from '../core/redact.js';
import { connectTcp, earliestCertExpiry, resolveHost, upgradeTls } from '../net/dial.js';
import { asProtocolError, clientOverSocket, endClient } from '../net/http-client.js';

// Kept importable from here for the kinds that already do (tunnel).
export { asProtocolError };

/**
 * `http`: a device's public URL (or any HTTP(S) endpoint), on a fresh connection every run so
 * resolve, connect and TLS are really measured, not served from a pool.
 */

// The page the platform's URL front serves when it cannot reach the device. Its status code is not
// documented, so we recognise it by its text and never count it as a pass, whatever the status.
export const PLATFORM_ERROR_PAGE = [/We encountered an error when reaching this [^<\n]{0,80}device/i, /tunneling socket could not be established/i];

export const statusMatcher = z.union([
  z.number().int().min(100).max(599),
  z.string().regex(/^[1-5]xx$|^\d{3}-\d{3}$|^\d{3}$/, 'a status is a code (200), a class ("2xx") or a range ("200-299")'),
]);

const schema = z.object({
  url: z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' }),
  method: z.enum(['GET', 'HEAD', 'POST', 'PUT', 'OPTIONS']).default('GET'),
  headers: headerMap.default({}),
  body: z.string().optional(),
  /** Connect to this address instead of resolving the URL's host (like curl --resolve). */
  resolve: z.union([z.ipv4(), z.ipv6()]).optional(),
  ipFamily: z.union([z.literal(4), z.literal(6)]).optional(),
  tls: z
    .strictObject({
      caFile: readableFile.optional(),
      serverName: z.string().optional(),
      insecureSkipVerify: z.boolean().default(false),
    })
    .default({ insecureSkipVerify: false }),
  followRedirects: z.number().int().min(0).max(20).default(5),
  maxBodyBytes: z
    .number()
    .int()
    .min(0)
    .max(16 * 1024 * 1024)
    .default(64 * 1024),
  platformErrorPage: z.boolean().default(true),
  expect: z
    .strictObject({
      status: z.array(statusMatcher).min(1).default(['2xx']),
      body: z.string().optional(),
      bodyRegex: regex.optional(),
      bodyNotRegex: regex.optional(),
      headers: z.record(z.string(), regex).default({}),
    })
    .default({ status: ['2xx'], headers: {} }),
});
type HttpConfig = z.output<typeof schema>;

export function statusMatches(code: number, m: number | string): boolean {
  if (typeof m === 'number') return code === m;
  if (/^[1-5]xx$/.test(m)) return Math.floor(code / 100) === Number(m[0]);
  const [lo, hi] = m.split('-').map(Number);
  return hi === undefined ? code === lo : code >= lo && code <= hi;
}

export function excerpt(body: string, max = 160): string {
  // Redact before cutting: a secret the server echoes could otherwise be cut in half at `max` and
  // its first half would no longer be recognised by the final redaction of the message.
  const text = redact(body)
    .replace(/<[^>]*>/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  return text.length > max ? text.slice(0, max) + '…' : text;
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  truncated: boolean;
}

export async function readBody(body: AsyncIterable<Buffer> & { destroy(): void }, maxBytes: number): Promise<{ text: string; truncated: boolean }> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const room = maxBytes - size;
    // Strictly more than fits: a body of exactly maxBytes was read whole and is not truncated.
    if (chunk.length > room) {
      chunks.push(chunk.subarray(0, room));
      body.destroy();
      return { text: Buffer.concat(chunks).toString('utf8'), truncated: true };
    }
    chunks.push(chunk);
    size += chunk.length;
  }
  return { text: Buffer.concat(chunks).toString('utf8'), truncated: false };
}

// Headers that carry credentials: never sent to an origin other than the configured one (as curl
// and fetch do on a cross-origin redirect), so a redirect cannot hand our token to a third party.
const CREDENTIAL_HEADERS = new Set(['authorization', 'proxy-authorization', 'cookie']);

async function exchange(ctx: ProbeContext, url: URL, method: string, cfg: HttpConfig, readWholeBody: boolean, first: URL): Promise<Answer> {
  const https = url.protocol === 'https:';
  const port = Number(url.port) || (https ? 443 : 80);
  // `resolve` and `tls.serverName` pin the configured host; a redirect to another host gets its own.
  const sameHost = url.hostname === first.hostname;
  const sameOrigin = url.origin === first.origin;
  const address = await resolveHost(ctx, url.hostname, { address: sameHost ? cfg.resolve : undefined, family: cfg.ipFamily });
  let socket: net.Socket = await connectTcp(ctx, address, port);
  let client: Client | undefined;
  try {
    if (https) {
      socket = await upgradeTls(ctx, socket, {
        servername: (sameHost ? cfg.tls.serverName : undefined) ?? url.hostname,
        caFile: cfg.tls.caFile,
        insecureSkipVerify: cfg.tls.insecureSkipVerify,
        alpn: ['http/1.1'],
      });
      const expiry = earliestCertExpiry(socket as tls.TLSSocket);
      if (expiry !== undefined) ctx.observe('ssl_earliest_cert_expiry', expiry);
    }
    // undici takes the socket we dialled, so the phases above are real and the connection is ours.
    client = clientOverSocket(url.origin, socket);
    const headers: Record<string, string> = { 'user-agent': 'fleetprobe', host: url.host };
    for (const [k, v] of Object.entries(cfg.headers)) {
      const name = k.toLowerCase();
      if (!sameOrigin && (v instanceof Secret || CREDENTIAL_HEADERS.has(name))) continue;
      headers[name] = v instanceof Secret ? v.reveal() : v;
    }
    const c = client;
    const res = await ctx.phase('request', () =>
      c.request({ path: url.pathname + url.search, method: method as 'GET', headers, body: cfg.body, signal: ctx.signal }).catch((err) => {
        throw asProtocolError(err);
      }),
    );
    const read = () =>
      readBody(res.body as never, cfg.maxBodyBytes).catch((err) => {
        throw asProtocolError(err);
      });
    const body = readWholeBody || res.statusCode >= 400 ? await ctx.phase('transfer', read) : { text: '', truncated: false };
    if (!readWholeBody && res.statusCode < 400) await res.body.dump().catch(() => {});
    return { status: res.statusCode, headers: res.headers, body: body.text, truncated: body.truncated };
  } finally {
    await endClient(client);
    socket.destroy();
  }
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/**
 * Where a redirect leads. The Location is the peer's text: one that is not a URL is a malformed
 * answer (`protocol`), and one to another scheme (`file:`, `gopher:`) is never followed, so no
 * connection is opened for it (`assertion`).
 */
function redirectTarget(location: string, base: URL, status: number): URL {
  if (!URL.canParse(location, base.href))
    throw new ProbeError('protocol', `HTTP ${status} redirect to a Location that is not a URL: "${excerpt(location, 120)}"`);
  const next = new URL(location, base);
  if (next.protocol !== 'http:' && next.protocol !== 'https:') {
    throw new ProbeError('assertion', `redirect to a non-HTTP URL (HTTP ${status} to "${excerpt(location, 120)}"): only http and https are followed`);
  }
  return next;
}

export const httpKind = defineKind({
  kind: 'http',
  description: "an HTTP(S) request to a device's public URL or any endpoint, checked for status, headers and body",
  phases: ['resolve', 'connect', 'tls', 'request', 'transfer'],
  schema,
  async run(ctx, cfg) {
    const first = new URL(cfg.url);
    let url = first;
    let method: string = cfg.method;
    let answer: Answer;
    for (let hop = 0; ; hop++) {
      answer = await exchange(ctx, url, method, cfg, true, first);
      const location = answer.headers.location;
      if (!REDIRECTS.has(answer.status) || typeof location !== 'string' || cfg.followRedirects === 0) break;
      const next = redirectTarget(location, url, answer.status);
      if (hop >= cfg.followRedirects) {
        throw new ProbeError('assertion', `more than ${cfg.followRedirects} redirects (last: HTTP ${answer.status} to ${next.origin})`);
      }
      url = next;
      if (answer.status === 303) method = 'GET';
    }
    ctx.observe('http_status', answer.status);

    await ctx.phase('transfer', () => {
      if (cfg.platformErrorPage && PLATFORM_ERROR_PAGE.some((re) => re.test(answer.body))) {
        throw new ProbeError('device_offline', `the platform served its "cannot reach this device" page (HTTP ${answer.status}): ${excerpt(answer.body)}`);
      }
      if (!cfg.expect.status.some((m) => statusMatches(answer.status, m))) {
        const body = answer.body ? `; body: ${excerpt(answer.body)}` : '';
        throw new ProbeError('assertion', `HTTP status ${answer.status} is not one of ${cfg.expect.status.join(', ')}${body}`);
      }
      for (const [name, re] of Object.entries(cfg.expect.headers)) {
        const raw = answer.headers[name.toLowerCase()];
        const value = Array.isArray(raw) ? raw.join(', ') : raw;
        if (value === undefined) throw new ProbeError('assertion', `response header ${name} is missing`);
        if (!re.test(value)) throw new ProbeError('assertion', `response header ${name} "${excerpt(value, 80)}" does not match /${re.source}/`);
      }
      const within = answer.truncated ? ` (within the first ${cfg.maxBodyBytes} bytes)` : '';
      if (cfg.expect.body !== undefined && !answer.body.includes(cfg.expect.body)) {
        throw new ProbeError('assertion', `body does not contain "${cfg.expect.body}"${within}; body: ${excerpt(answer.body)}`);
      }
      if (cfg.expect.bodyRegex && !cfg.expect.bodyRegex.test(answer.body)) {
        throw new ProbeError('assertion', `body does not match /${cfg.expect.bodyRegex.source}/${within}; body: ${excerpt(answer.body)}`);
      }
      if (cfg.expect.bodyNotRegex && cfg.expect.bodyNotRegex.test(answer.body)) {
        throw new ProbeError('assertion', `body matches /${cfg.expect.bodyNotRegex.source}/, which it must not`);
      }
    });
    if (cfg.tls.insecureSkipVerify) ctx.log.warn('TLS certificate verification is disabled for this probe (tls.insecureSkipVerify)');
  },
});
