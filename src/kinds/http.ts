import type tls from 'node:tls';
import { z } from 'zod';
import { headerMap, regex } from '../config/fields.js';
import { ProbeError } from '../core/errors.js';
import { excerpt } from '../core/excerpt.js';
import { defineKind, type ProbeContext } from '../core/kind.js';
import { Secret } from '../core/redact.js';
import { earliestCertExpiry } from '../net/dial.js';
import { ipAddress } from './shared/host-port.js';
import { dialHttp, HttpExchange, readBody } from './shared/http-exchange.js';
import { bodyExcerpt, bodyExpectFields, expectBody, expectStatus, httpUrl, maxBodyBytes } from './shared/http-expect.js';
import { tlsField, warnIfInsecure } from './shared/tls.js';
import { withFleetTargets } from './shared/fleet-targets.js';

/**
 * `http`: a device's public URL (or any HTTP(S) endpoint), on a fresh connection every run so
 * resolve, connect and TLS are really measured, not served from a pool.
 */

// The page the platform's URL front serves when it cannot reach the device. Its status code is not
// documented, so we recognise it by its text and never count it as a pass, whatever the status.
const PLATFORM_ERROR_PAGE = [/We encountered an error when reaching this [^<\n]{0,80}device/i, /tunneling socket could not be established/i];

const schema = z.object({
  url: httpUrl,
  method: z.enum(['GET', 'HEAD', 'POST', 'PUT', 'OPTIONS']).default('GET'),
  headers: headerMap.default({}),
  body: z.string().optional(),
  /** Connect to this address instead of resolving the URL's host (like curl --resolve). */
  resolve: ipAddress.optional(),
  ipFamily: z.union([z.literal(4), z.literal(6)]).optional(),
  tls: tlsField,
  followRedirects: z.number().int().min(0).max(20).default(5),
  maxBodyBytes,
  /**
   * Recognise the platform's "cannot reach this device" page as `device_offline` (true), not at all
   * (false), or also a page of a custom front matching this regular expression.
   */
  platformErrorPage: z.union([z.boolean(), regex]).default(true),
  expect: z
    .strictObject({
      ...bodyExpectFields,
      bodyNotRegex: regex.optional(),
      headers: z.record(z.string(), regex).default({}),
    })
    .default({ status: ['2xx'], headers: {} }),
});
type HttpConfig = z.output<typeof schema>;

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  truncated: boolean;
}

// Headers that carry credentials: never sent to an origin other than the configured one (as curl
// and fetch do on a cross-origin redirect), so a redirect cannot hand our token to a third party.
const CREDENTIAL_HEADERS = new Set(['authorization', 'proxy-authorization', 'cookie']);

async function exchange(ctx: ProbeContext, url: URL, method: string, cfg: HttpConfig, first: URL): Promise<Answer> {
  // `resolve` and `tls.serverName` pin the configured host; a redirect to another host gets its own.
  const sameHost = url.hostname === first.hostname;
  const sameOrigin = url.origin === first.origin;
  const socket = await dialHttp(ctx, url, {
    address: sameHost ? cfg.resolve : undefined,
    family: cfg.ipFamily,
    tls: { ...cfg.tls, serverName: sameHost ? cfg.tls.serverName : undefined },
    onTls: (secure: tls.TLSSocket) => {
      const expiry = earliestCertExpiry(secure);
      if (expiry !== undefined) ctx.observe('ssl_earliest_cert_expiry', expiry);
    },
  });
  const http = new HttpExchange(url.origin, socket);
  try {
    const headers: Record<string, string> = { 'user-agent': 'fleetprobe', host: url.host };
    for (const [k, v] of Object.entries(cfg.headers)) {
      const name = k.toLowerCase();
      if (!sameOrigin && (v instanceof Secret || CREDENTIAL_HEADERS.has(name))) continue;
      headers[name] = v instanceof Secret ? v.reveal() : v;
    }
    const res = await ctx.phase('request', () =>
      http.send({ path: url.pathname + url.search, method: method as 'GET', headers, body: cfg.body, signal: ctx.signal }),
    );
    const body = await ctx.phase('transfer', () => readBody(res, cfg.maxBodyBytes, ctx.signal));
    return { status: res.statusCode, headers: res.headers, body: body.text, truncated: body.truncated };
  } finally {
    await http.close();
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
    throw new ProbeError(
      'protocol',
      `HTTP ${status} redirect to a Location that is not a URL: "${excerpt(location, { max: 120, escapeControls: true, redact: true })}"`,
    );
  const next = new URL(location, base);
  if (next.protocol !== 'http:' && next.protocol !== 'https:') {
    throw new ProbeError(
      'assertion',
      `redirect to a non-HTTP URL (HTTP ${status} to "${excerpt(location, { max: 120, escapeControls: true, redact: true })}"): only http and https are followed`,
    );
  }
  return next;
}

const httpKindOne = defineKind({
  kind: 'http',
  description: "an HTTP(S) request to a device's public URL or any endpoint, checked for status, headers and body",
  phases: ['resolve', 'connect', 'tls', 'request', 'transfer'],
  reasons: ['tls', 'device_offline', 'protocol', 'assertion'],
  // A device's public URL answers in 0.1 s to a few s; 2 s is the latency objective of
  // deploy/prometheus/rules.yml, and 5 s above it keeps histogram_quantile able to pass it.
  buckets: [0.25, 1, 2, 5],
  schema,
  async run(ctx, cfg) {
    const first = new URL(cfg.url);
    let url = first;
    let method: string = cfg.method;
    let answer: Answer;
    for (let hop = 0; ; hop++) {
      answer = await exchange(ctx, url, method, cfg, first);
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
      const pages =
        cfg.platformErrorPage === false ? [] : cfg.platformErrorPage === true ? PLATFORM_ERROR_PAGE : [...PLATFORM_ERROR_PAGE, cfg.platformErrorPage];
      if (pages.some((re) => re.test(answer.body))) {
        throw new ProbeError('device_offline', `the platform served its "cannot reach this device" page (HTTP ${answer.status}): ${bodyExcerpt(answer.body)}`);
      }
      expectStatus(answer.status, cfg.expect.status, answer.body, 'HTTP status');
      for (const [name, re] of Object.entries(cfg.expect.headers)) {
        const raw = answer.headers[name.toLowerCase()];
        const value = Array.isArray(raw) ? raw.join(', ') : raw;
        if (value === undefined) throw new ProbeError('assertion', `response header ${name} is missing`);
        if (!re.test(value)) throw new ProbeError('assertion', `response header ${name} "${bodyExcerpt(value, 80)}" does not match /${re.source}/`);
      }
      expectBody(answer.body, cfg.expect, '', answer.truncated ? ` (within the first ${cfg.maxBodyBytes} bytes)` : '');
    });
    warnIfInsecure(ctx, cfg.tls, '', 'tls.insecureSkipVerify');
  },
});

/** In a fleet probe's `url`, where each device's uuid goes. */
const DEVICE_PLACEHOLDER = '{uuid}';

/** With `fleet:` (shared/fleet-targets.ts), each picked device's public URL: `{uuid}` in `url` filled in. */
export const httpKind = withFleetTargets(httpKindOne, {
  targetField: 'device',
  forDevice: (cfg, uuid) => ({ ...cfg, url: cfg.url.replaceAll(DEVICE_PLACEHOLDER, uuid) }),
  check: (cfg) =>
    cfg.url.includes(DEVICE_PLACEHOLDER)
      ? []
      : [{ field: 'url', message: `names each device of the fleet by ${DEVICE_PLACEHOLDER} (https://${DEVICE_PLACEHOLDER}.balena-devices.com/health)` }],
});
