import type http from 'node:http';
import https from 'node:https';
import type { Logger } from 'pino';
import { json, type LabReleases, type ReleaseStatus } from './builder.js';
import type { IssuedCert } from './ca.js';
import { serveDevices } from './api-devices.js';
import type { LabDeviceStates } from './device-state.js';
import type { FaultSwitchboard } from './faults.js';
import { listenLoopback, LAB_HOST, type LabServer } from './listen.js';

/**
 * The platform API of the lab, as far as probes use it: the releases the lab builder created, which a
 * `build` probe cancels (`PATCH /v7/release(<id>)` with `status: 'cancelled'`) when it gives up on a
 * build. Every PATCH is recorded on the release, so tests can see the cancellation happen.
 */

const STATUSES = new Set<ReleaseStatus>(['running', 'success', 'failed', 'error', 'cancelled', 'interrupted']);
const MAX_BODY_BYTES = 64 * 1024;

export interface ApiOptions {
  cert: IssuedCert;
  releases: LabReleases;
  token: string;
  /** The device resources (`GET /v7/device(...)`, the fleet listing), backed by the lab's device state. */
  devices?: { states: LabDeviceStates; faults: FaultSwitchboard };
  log?: Logger;
}

export async function startApi(opts: ApiOptions): Promise<LabServer> {
  const { releases, token, log } = opts;
  const devices = opts.devices ? serveDevices(opts.devices.states, opts.devices.faults) : undefined;
  const server = https.createServer({ cert: opts.cert.certPem, key: opts.cert.keyPem }, (req, res) => {
    const path = decodeURIComponent((req.url ?? '/').split('?')[0]);
    log?.debug({ method: req.method, path }, 'lab API request');
    if (req.headers.authorization !== `Bearer ${token}`) {
      req.resume();
      return json(res, 401, { message: 'Unauthorized' });
    }
    if (devices?.handle(req, res, path)) return;
    const m = /^\/v\d+\/release\((\d+)\)$/.exec(path);
    if (!m) {
      req.resume();
      return json(res, 404, { message: `no such API endpoint in the lab: ${req.method} ${path}` });
    }
    const id = Number(m[1]);
    if (req.method === 'GET') {
      req.resume();
      const r = releases.get(id);
      return json(res, 200, { d: r ? [r] : [] });
    }
    if (req.method !== 'PATCH') {
      req.resume();
      return json(res, 405, { message: `${req.method} is not supported on releases in the lab` });
    }
    readJson(req)
      .then((body) => {
        const status = body.status as ReleaseStatus | undefined;
        if (status !== undefined && !STATUSES.has(status)) return json(res, 400, { message: `invalid release status "${String(status)}"` });
        const endTimestamp = typeof body.end_timestamp === 'string' ? body.end_timestamp : undefined;
        if (!releases.update(id, { status, end_timestamp: endTimestamp })) return json(res, 404, { message: `no release ${id}` });
        log?.info({ release: id, status }, `lab API: release ${id} set to ${status}`);
        // Pine answers a PATCH with a bare OK.
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 2 });
        res.end('OK');
      })
      .catch((err) => json(res, 400, { message: `invalid JSON body: ${(err as Error).message}` }));
  });
  const h = await listenLoopback(server);
  return {
    name: 'API',
    url: `https://${LAB_HOST}:${h.port}`,
    port: h.port,
    close: async () => {
      devices?.close();
      await h.close();
    },
  };
}

function readJson(req: http.IncomingMessage): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => {
      body += c;
      if (body.length > MAX_BODY_BYTES) req.destroy(new Error('body too large'));
    });
    req.on('end', () => {
      try {
        const v = JSON.parse(body) as unknown;
        if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('not a JSON object');
        resolve(v as Record<string, unknown>);
      } catch (err) {
        reject(err);
      }
    });
    req.on('error', reject);
  });
}
