import type net from 'node:net';
import type { Client } from 'undici';
import { ProbeError } from '../core/errors.js';
import type { ProbeContext } from '../core/kind.js';
import type { Secret } from '../core/redact.js';
import { connectTcp, resolveHost, upgradeTls, withStepTimeout } from '../net/dial.js';
import { asProtocolError, clientOverSocket } from '../net/http-client.js';
import { excerpt, readBody } from './http.js';

/**
 * The platform API as the `device-status` kind reads it (PROTOCOLS.md "Device status in the API"):
 * one device by uuid, and the devices of a fleet the API marks online, paged. Each request is on a
 * fresh connection of its own, limited by the step timeout, and its answer is checked field by
 * field: a real API sends extra fields and nulls, a broken one sends anything.
 */

export interface ApiEndpoint {
  url: URL;
  token: Secret;
  tls: { caFile?: string; serverName?: string; insecureSkipVerify: boolean };
  stepTimeoutMs: number;
}

/** The fields of a device the probe asks for, as the API may give them. */
export const DEVICE_FIELDS = ['is_online', 'is_connected_to_vpn', 'last_connectivity_event', 'last_vpn_event', 'api_heartbeat_state'] as const;

export interface ApiDevice {
  is_online: boolean;
  is_connected_to_vpn: boolean | null;
  last_connectivity_event: string | null;
  last_vpn_event: string | null;
  api_heartbeat_state: string | null;
}

/** A fleet listing can be long: bounded, but far above one page of a few hundred devices. */
const MAX_LIST_BYTES = 4 * 1024 * 1024;
const MAX_DEVICE_BYTES = 64 * 1024;

/** GET `pathAndQuery` with the Bearer token; the parsed JSON answer, or a classified ProbeError. */
export async function apiGet(ctx: ProbeContext, ep: ApiEndpoint, pathAndQuery: string, what: string, maxBytes: number): Promise<unknown> {
  const url = ep.url;
  const https = url.protocol === 'https:';
  const port = Number(url.port) || (https ? 443 : 80);
  return withStepTimeout(ctx, ep.stepTimeoutMs, `${what}: the API's answer`, async (c) => {
    const address = await resolveHost(c, url.hostname);
    let socket: net.Socket = await connectTcp(c, address, port);
    let client: Client | undefined;
    try {
      if (https) {
        socket = await upgradeTls(c, socket, {
          servername: ep.tls.serverName ?? url.hostname,
          caFile: ep.tls.caFile,
          insecureSkipVerify: ep.tls.insecureSkipVerify,
          alpn: ['http/1.1'],
        });
      }
      client = clientOverSocket(url.origin, socket);
      // A step limit or the deadline destroys the socket under undici, which then says "closed":
      // the abort's own reason is the story.
      const fail = (err: unknown): never => {
        throw c.signal.aborted ? c.signal.reason : asProtocolError(err);
      };
      const base = url.pathname.replace(/\/$/, '');
      const res = await client
        .request({
          path: base + pathAndQuery,
          method: 'GET',
          headers: { host: url.host, accept: 'application/json', 'user-agent': 'fleetprobe', authorization: `Bearer ${ep.token.reveal()}` },
          signal: c.signal,
        })
        .catch(fail);
      const body = await readBody(res.body as never, maxBytes).catch(fail);
      const status = res.statusCode;
      const said = body.text ? `: ${excerpt(body.text)}` : '';
      if (status === 401 || status === 403) throw new ProbeError('auth', `${what}: the API refused our token (HTTP ${status})${said}`);
      if (status >= 500) throw new ProbeError('proxy', `${what}: the API failed (HTTP ${status})${said}`);
      if (status < 200 || status > 299) throw new ProbeError('proxy', `${what}: unexpected HTTP ${status} from the API${said}`);
      if (body.truncated) throw new ProbeError('protocol', `${what}: the API's answer is longer than ${maxBytes} bytes`);
      try {
        return JSON.parse(body.text) as unknown;
      } catch {
        throw new ProbeError('protocol', `${what}: the API's answer (HTTP ${status}) is not JSON: ${excerpt(body.text) || '(empty)'}`);
      }
    } finally {
      await client?.destroy().catch(() => undefined);
      socket.destroy();
    }
  });
}

const SHORT_JSON_CHARS = 2048;
const SHORT_JSON_DEPTH = 16;
/**
 * JSON text of part of the API's answer, for a message: cut at about 2 KiB (excerpt() redacts and
 * then cuts it much shorter) and at 16 levels of nesting. JSON.stringify recurses without a
 * bound: a 100,000-deep answer overflowed the stack and ended as `internal`.
 */
function shortJson(value: unknown): string {
  let out = '';
  const walk = (v: unknown, depth: number): void => {
    if (depth > SHORT_JSON_DEPTH) out += '…';
    else if (v && typeof v === 'object') {
      const list = Array.isArray(v) ? (v as unknown[]) : undefined;
      const keys = list ? undefined : Object.keys(v);
      const n = list ? list.length : keys!.length;
      out += list ? '[' : '{';
      for (let i = 0; i < n && out.length <= SHORT_JSON_CHARS; i++) {
        out += (i ? ',' : '') + (keys ? JSON.stringify(keys[i]) + ':' : '');
        walk(list ? list[i] : (v as Record<string, unknown>)[keys![i]], depth + 1);
      }
      out += list ? ']' : '}';
    } else out += JSON.stringify(v) ?? String(v);
  };
  walk(value, 0);
  return out;
}

/** The `d` array of an OData answer. */
function resultsOf(body: unknown, what: string): unknown[] {
  const d = body && typeof body === 'object' && !Array.isArray(body) ? (body as { d?: unknown }).d : undefined;
  if (!Array.isArray(d)) throw new ProbeError('protocol', `${what}: the API's answer has no "d" array: ${excerpt(shortJson(body))}`);
  return d;
}

const isoOrNull = (v: unknown) => v === null || (typeof v === 'string' && !Number.isNaN(Date.parse(v)));
const CHECKS: Record<(typeof DEVICE_FIELDS)[number], { ok(v: unknown): boolean; want: string }> = {
  is_online: { ok: (v) => typeof v === 'boolean', want: 'true or false' },
  is_connected_to_vpn: { ok: (v) => v === null || typeof v === 'boolean', want: 'true, false or null' },
  last_connectivity_event: { ok: isoOrNull, want: 'a timestamp or null' },
  last_vpn_event: { ok: isoOrNull, want: 'a timestamp or null' },
  api_heartbeat_state: { ok: (v) => v === null || typeof v === 'string', want: 'a state name or null' },
};

/** Checks the selected fields of one device resource; other fields are ignored. */
export function parseDevice(item: unknown, what: string): ApiDevice {
  if (!item || typeof item !== 'object' || Array.isArray(item)) throw new ProbeError('protocol', `${what}: the device in the API's answer is not an object`);
  const rec = item as Record<string, unknown>;
  for (const field of DEVICE_FIELDS) {
    if (!(field in rec)) throw new ProbeError('protocol', `${what}: the API's answer has no ${field}`);
    if (!CHECKS[field].ok(rec[field])) {
      throw new ProbeError('protocol', `${what}: the API's ${field} is ${excerpt(shortJson(rec[field]), 60)}, not ${CHECKS[field].want}`);
    }
  }
  return Object.fromEntries(DEVICE_FIELDS.map((f) => [f, rec[f]])) as unknown as ApiDevice;
}

/** `GET /v7/device(uuid='<uuid>')?$select=...`: the device, or `assertion` if the API does not know it. */
export async function readDevice(ctx: ProbeContext, ep: ApiEndpoint, uuid: string): Promise<ApiDevice> {
  const what = `GET device ${uuid}`;
  const body = await apiGet(ctx, ep, `/v7/device(uuid='${uuid}')?$select=${DEVICE_FIELDS.join(',')}`, what, MAX_DEVICE_BYTES);
  const d = resultsOf(body, what);
  if (d.length === 0) throw new ProbeError('assertion', `${what}: the API knows no device ${uuid} (or our token may not see it): "d" is empty`);
  if (d.length > 1) throw new ProbeError('protocol', `${what}: the API answered ${d.length} devices for one uuid`);
  return parseDevice(d[0], what);
}

/**
 * The uuids of the fleet's devices the API marks online, `pageSize` at a time, at most `maxDevices`
 * (the listing is ordered by id, so the bound is the same devices every time).
 */
export async function listOnlineDevices(ctx: ProbeContext, ep: ApiEndpoint, fleet: string, pageSize: number, maxDevices: number): Promise<string[]> {
  const filter = `belongs_to__application/any(a:a/slug eq '${fleet}') and is_online eq true`;
  const seen = new Set<string>();
  for (let skip = 0; seen.size < maxDevices; skip += pageSize) {
    const top = Math.min(pageSize, maxDevices - seen.size);
    const q = new URLSearchParams({ $select: 'uuid,is_online', $filter: filter, $orderby: 'id asc', $top: String(top), $skip: String(skip) });
    const what = `GET the online devices of fleet ${fleet} (from ${skip})`;
    const page = resultsOf(await apiGet(ctx, ep, `/v7/device?${q}`, what, MAX_LIST_BYTES), what);
    for (const item of page) {
      const rec = (item && typeof item === 'object' ? item : {}) as Record<string, unknown>;
      if (typeof rec.uuid !== 'string' || !/^[0-9a-fA-F]+$/.test(rec.uuid)) {
        throw new ProbeError('protocol', `${what}: a device in the API's answer has no valid uuid: ${excerpt(shortJson(item), 80)}`);
      }
      // An API that ignored the filter must not put offline devices into the sample.
      if (rec.is_online === true && seen.size < maxDevices) seen.add(rec.uuid.toLowerCase());
    }
    if (page.length < top) break;
  }
  return [...seen];
}
