import { ProbeError } from '../../core/errors.js';
import type { ProbeContext } from '../../core/kind.js';
import type { Secret } from '../../core/redact.js';
import { withStepTimeout } from '../../net/dial.js';
import { isDeviceUuid } from './device.js';
import { dialHttp, HttpExchange, readBody } from './http-exchange.js';
import { bodyExcerpt, jsonExcerpt } from './http-expect.js';
import type { TlsBlock } from './tls.js';

/**
 * The platform API as the kinds read it (`device-status`, the `ssh` kind corroborating a bare "host error", and fleet targets listing a fleet's devices) (docs/protocols.md "API device status"):
 * one device by uuid, and the devices of a fleet the API marks online, paged. Each request is on a
 * fresh connection of its own, limited by the step timeout, and its answer is checked field by
 * field: a real API sends extra fields and nulls, a broken one sends anything.
 */

export interface ApiEndpoint {
  url: URL;
  token: Secret;
  tls: TlsBlock;
  stepTimeoutMs: number;
}

/** The fields of a device the probe asks for, as the API may give them. */
const DEVICE_FIELDS = ['is_online', 'is_connected_to_vpn', 'last_connectivity_event', 'last_vpn_event', 'api_heartbeat_state'] as const;

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
async function apiGet(ctx: ProbeContext, ep: ApiEndpoint, pathAndQuery: string, what: string, maxBytes: number): Promise<unknown> {
  const url = ep.url;
  return withStepTimeout(ctx, ep.stepTimeoutMs, `${what}: the API's answer`, async (c) => {
    const http = new HttpExchange(url.origin, await dialHttp(c, url, { tls: ep.tls }));
    try {
      const base = url.pathname.replace(/\/$/, '');
      const res = await http.send({
        path: base + pathAndQuery,
        method: 'GET',
        headers: { host: url.host, accept: 'application/json', 'user-agent': 'fleetprobe', authorization: `Bearer ${ep.token.reveal()}` },
        signal: c.signal,
      });
      const body = await readBody(res, maxBytes, c.signal);
      const status = res.statusCode;
      const said = body.text ? `: ${bodyExcerpt(body.text)}` : '';
      if (status === 401 || status === 403) throw new ProbeError('auth', `${what}: the API refused our token (HTTP ${status})${said}`);
      if (status >= 500) throw new ProbeError('proxy', `${what}: the API failed (HTTP ${status})${said}`);
      if (status < 200 || status > 299) throw new ProbeError('proxy', `${what}: unexpected HTTP ${status} from the API${said}`);
      if (body.truncated) throw new ProbeError('protocol', `${what}: the API's answer is longer than ${maxBytes} bytes`);
      try {
        return JSON.parse(body.text) as unknown;
      } catch {
        throw new ProbeError('protocol', `${what}: the API's answer (HTTP ${status}) is not JSON: ${bodyExcerpt(body.text) || '(empty)'}`);
      }
    } finally {
      await http.close();
    }
  });
}

/** The `d` array of an OData answer. */
function resultsOf(body: unknown, what: string): unknown[] {
  const d = body && typeof body === 'object' && !Array.isArray(body) ? (body as { d?: unknown }).d : undefined;
  if (!Array.isArray(d)) throw new ProbeError('protocol', `${what}: the API's answer has no "d" array: ${jsonExcerpt(body) ?? ''}`);
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
function parseDevice(item: unknown, what: string): ApiDevice {
  if (!item || typeof item !== 'object' || Array.isArray(item)) throw new ProbeError('protocol', `${what}: the device in the API's answer is not an object`);
  const rec = item as Record<string, unknown>;
  for (const field of DEVICE_FIELDS) {
    if (!(field in rec)) throw new ProbeError('protocol', `${what}: the API's answer has no ${field}`);
    if (!CHECKS[field].ok(rec[field])) {
      throw new ProbeError('protocol', `${what}: the API's ${field} is ${jsonExcerpt(rec[field], 60) ?? String(rec[field])}, not ${CHECKS[field].want}`);
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

/** Which devices of a fleet a listing asks for (docs/configuration.md "Fleet targets"). */
export interface FleetQuery {
  /** `<org>/<fleet>` or the fleet's numeric id. */
  fleet: string | number;
  /** Device tags that must all be set to these values. */
  tags?: Readonly<Record<string, string>>;
  /** The device type's slug (`raspberrypi4-64`). */
  deviceType?: string;
  /** Only devices the API marks online. */
  onlineOnly: boolean;
}

/** A device of a listing: its uuid and what the API says about it. */
export interface ListedDevice {
  uuid: string;
  online: boolean;
}

/** An OData string literal: single quotes doubled, so a tag value cannot end the literal early. */
const odataString = (s: string) => `'${s.replace(/'/g, "''")}'`;

/** The `$filter` of a fleet listing. */
export function fleetFilter(q: FleetQuery): string {
  const terms = [typeof q.fleet === 'number' ? `belongs_to__application eq ${q.fleet}` : `belongs_to__application/any(a:a/slug eq ${odataString(q.fleet)})`];
  if (q.deviceType) terms.push(`is_of__device_type/any(dt:dt/slug eq ${odataString(q.deviceType)})`);
  for (const [key, value] of Object.entries(q.tags ?? {})) {
    terms.push(`device_tag/any(t:t/tag_key eq ${odataString(key)} and t/value eq ${odataString(value)})`);
  }
  if (q.onlineOnly) terms.push('is_online eq true');
  return terms.join(' and ');
}

/**
 * The devices of a fleet that match `q`, `pageSize` at a time, at most `maxDevices` (the listing is
 * ordered by id, so the bound is the same devices every time).
 */
export async function listFleetDevices(ctx: ProbeContext, ep: ApiEndpoint, q: FleetQuery, pageSize: number, maxDevices: number): Promise<ListedDevice[]> {
  const filter = fleetFilter(q);
  const seen = new Map<string, boolean>();
  const which = q.onlineOnly ? 'online devices' : 'devices';
  for (let skip = 0; seen.size < maxDevices; skip += pageSize) {
    const top = Math.min(pageSize, maxDevices - seen.size);
    const query = new URLSearchParams({ $select: 'uuid,is_online', $filter: filter, $orderby: 'id asc', $top: String(top), $skip: String(skip) });
    const what = `GET the ${which} of fleet ${q.fleet} (from ${skip})`;
    const page = resultsOf(await apiGet(ctx, ep, `/v7/device?${query}`, what, MAX_LIST_BYTES), what);
    for (const item of page) {
      const rec = (item && typeof item === 'object' ? item : {}) as Record<string, unknown>;
      if (!isDeviceUuid(rec.uuid)) {
        throw new ProbeError('protocol', `${what}: a device in the API's answer has no valid uuid: ${jsonExcerpt(item, 80) ?? ''}`);
      }
      if (typeof rec.is_online !== 'boolean') {
        throw new ProbeError(
          'protocol',
          `${what}: device ${rec.uuid}'s is_online is ${jsonExcerpt(rec.is_online, 60) ?? String(rec.is_online)}, not true or false`,
        );
      }
      // An API that ignored the filter must not put offline devices into an online-only sample.
      if ((rec.is_online || !q.onlineOnly) && seen.size < maxDevices) seen.set(rec.uuid.toLowerCase(), rec.is_online);
    }
    if (page.length < top) break;
  }
  return [...seen].map(([uuid, online]) => ({ uuid, online }));
}

/** The uuids of the fleet's devices the API marks online (device-status's sample mode). */
export async function listOnlineDevices(ctx: ProbeContext, ep: ApiEndpoint, fleet: string, pageSize: number, maxDevices: number): Promise<string[]> {
  return (await listFleetDevices(ctx, ep, { fleet, onlineOnly: true }, pageSize, maxDevices)).map((d) => d.uuid);
}
