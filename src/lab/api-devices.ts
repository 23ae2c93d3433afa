import type http from 'node:http';
import { json } from './builder.js';
import { LAB_FLEET_SLUG, type LabDeviceStates } from './device-state.js';
import type { FaultSwitchboard } from './faults.js';
import { PendingDelays } from './listen.js';

/**
 * The device resources of the lab API, as a `device-status` probe reads them:
 *
 *   GET /v7/device(uuid='<uuid>')?$select=is_online,...    -> {"d": [ {...} ]}  ({"d": []} if unknown)
 *   GET /v7/device?$filter=belongs_to__application/any(a:a/slug eq '<org/fleet>') and is_online eq true
 *                 &$select=uuid,...&$top=N&$skip=M&$orderby=id asc
 *
 * Only `$select`, `$top`, `$skip` and these filter terms are understood (the lab is not an OData
 * server): the fleet by slug or by id (`belongs_to__application eq 1`), `is_online eq true`, the
 * device type (`is_of__device_type/any(dt:dt/slug eq '...')`) and tags
 * (`device_tag/any(t:t/tag_key eq 'k' and t/value eq 'v')`), all joined by `and`. With `api-errors` on, device requests get in turn a 503, malformed JSON, and a
 * 30 s wait before the real answer.
 */

/** How long the `api-errors` fault holds its slow answer: far beyond any sane step timeout. */
export const API_SLOW_MS = 30_000;
const ERROR_CYCLE = ['unavailable', 'malformed', 'slow'] as const;

export interface DeviceRoutes {
  /** Answers a device request; false if the path is not a device resource. */
  handle(req: http.IncomingMessage, res: http.ServerResponse, path: string): boolean;
  close(): void;
}

export function serveDevices(states: LabDeviceStates, faults: FaultSwitchboard): DeviceRoutes {
  let errorTurn = 0;
  const unsubscribe = faults.onChange((name, on) => {
    if (name === 'api-errors' && on) errorTurn = 0;
  });
  const delays = new PendingDelays();

  const answer = (res: http.ServerResponse, status: number, body: unknown) => {
    if (!faults.isOn('api-errors')) return json(res, status, body);
    const mode = ERROR_CYCLE[errorTurn++ % ERROR_CYCLE.length];
    if (mode === 'unavailable') return json(res, 503, { message: 'upstream connect error or disconnect/reset before headers' });
    if (mode === 'malformed') {
      const cut = '{"d": [{"is_online": tr';
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': cut.length });
      return res.end(cut);
    }
    delays.after(API_SLOW_MS, res, () => {
      if (!res.destroyed) json(res, status, body);
    });
  };

  return {
    handle(req, res, path) {
      const one = /^\/v\d+\/device\(uuid='([^']*)'\)$/.exec(path);
      if (!one && !/^\/v\d+\/device$/.test(path)) return false;
      req.resume();
      if (req.method !== 'GET') {
        json(res, 405, { message: `${req.method} is not supported on devices in the lab` });
        return true;
      }
      const q = new URLSearchParams((req.url ?? '').split('?')[1] ?? '');
      const select = q
        .get('$select')
        ?.split(',')
        .map((f) => f.trim())
        .filter(Boolean);
      const pick = (r: Record<string, unknown>) => (select ? Object.fromEntries(select.filter((f) => f in r).map((f) => [f, r[f]])) : r);
      if (one) {
        const d = states.get(one[1]);
        answer(res, 200, { d: d ? [pick(states.resource(d))] : [] });
        return true;
      }
      const filter = q.get('$filter') ?? '';
      const slug =
        /belongs_to__application\/any\(a:a\/slug eq '([^']+)'\)/.exec(filter)?.[1] ??
        (/belongs_to__application eq 1\b/.test(filter) ? LAB_FLEET_SLUG : undefined);
      if (!slug) {
        json(res, 400, { message: "the lab API lists the devices of one fleet: $filter=belongs_to__application/any(a:a/slug eq '<org>/<fleet>')" });
        return true;
      }
      const onlineOnly = /is_online eq true/.test(filter);
      const top = Number(q.get('$top') ?? 1000);
      const skip = Number(q.get('$skip') ?? 0);
      if (!Number.isInteger(top) || !Number.isInteger(skip) || top < 0 || skip < 0) {
        json(res, 400, { message: '$top and $skip are non-negative integers' });
        return true;
      }
      const deviceType = /is_of__device_type\/any\(dt:dt\/slug eq '((?:[^']|'')*)'\)/.exec(filter)?.[1]?.replace(/''/g, "'");
      const tags = [...filter.matchAll(/device_tag\/any\(t:t\/tag_key eq '((?:[^']|'')*)' and t\/value eq '((?:[^']|'')*)'\)/g)].map((m) => [
        m[1].replace(/''/g, "'"),
        m[2].replace(/''/g, "'"),
      ]);
      const all = states
        .list(slug)
        .filter((d) => (deviceType === undefined || d.deviceType === deviceType) && tags.every(([k, v]) => d.tags[k] === v))
        .map((d) => states.resource(d))
        .filter((r) => !onlineOnly || r.is_online === true);
      answer(res, 200, { d: all.slice(skip, skip + top).map(pick) });
      return true;
    },
    close() {
      unsubscribe();
      delays.cancelAll();
    },
  };
}
