import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { isLabFault, type FaultSwitchboard } from './faults.js';
import { listenLoopback, LAB_HOST, type LabServer } from './listen.js';

/**
 * Switch faults on a running lab (e.g. `curl -X PUT $LAB_CONTROL_URL/faults/slow-url`) without
 * restarting it, so a long-running daemon can be watched going red and back.
 */

export interface ControlOptions {
  faults: FaultSwitchboard;
  /** Read at request time: the control server's own URL is only known once it listens. */
  endpoints(): Record<string, string>;
  /** `PUT /devices/<uuid>/offline` disconnects a device, `DELETE` reconnects it. */
  devices?: { setOnline(uuid: string, online: boolean): boolean; setDownFraction?(fraction: number): void };
  log?: Logger;
}

export async function startControl(opts: ControlOptions): Promise<LabServer> {
  const { faults, log } = opts;
  const server = http.createServer((req, res) => {
    req.resume();
    const path = (req.url ?? '/').split('?')[0];
    const method = req.method ?? 'GET';
    log?.debug({ method, url: req.url }, 'lab control request');
    const foreign = foreignOrigin(req, (server.address() as AddressInfo).port);
    if (foreign) return json(res, 403, { error: foreign });

    if (path === '/' && method === 'GET') return json(res, 200, opts.endpoints());
    if (path === '/faults' && method === 'GET') return json(res, 200, faults.list());
    const m = /^\/faults\/([^/]+)$/.exec(path);
    if (m && (method === 'PUT' || method === 'DELETE')) {
      // Bad percent-encoding (`%ZZ`) is the client's error, not a reason to stop the lab.
      let name: string;
      try {
        name = decodeURIComponent(m[1]);
      } catch {
        return json(res, 400, { error: `bad percent-encoding in "${m[1]}"` });
      }
      if (!isLabFault(name))
        return json(res, 404, {
          error: `unknown lab fault "${name}"; known faults: ${faults
            .list()
            .map((f) => f.name)
            .join(', ')}`,
        });
      faults.set(name, method === 'PUT');
      // One line for the terminal that ran curl; GET /faults lists them all.
      return line(res, 200, `lab fault ${name}: ${method === 'PUT' ? 'on' : 'off'}`);
    }
    const d = /^\/devices\/([0-9a-fA-F]+)\/offline$/.exec(path);
    if (d && opts.devices && (method === 'PUT' || method === 'DELETE')) {
      if (!opts.devices.setOnline(d[1], method === 'DELETE')) return json(res, 404, { error: `no lab device ${d[1]}` });
      log?.info({ device: d[1], online: method === 'DELETE' }, `lab device ${d[1]} ${method === 'DELETE' ? 'back online' : 'offline'}`);
      return json(res, 200, { uuid: d[1].toLowerCase(), online: method === 'DELETE' });
    }
    const down = /^\/fleet\/down\/(\d{1,3})$/.exec(path);
    if (down && method === 'PUT' && opts.devices?.setDownFraction) {
      const percent = Number(down[1]);
      if (percent > 100) return json(res, 400, { error: `a share of the fleet is 0 to 100 percent, not ${percent}` });
      opts.devices.setDownFraction(percent / 100);
      log?.info({ percent }, `lab fleet: ${percent}% of the devices down`);
      return line(res, 200, `lab fleet: ${percent}% of the devices down`);
    }
    json(res, 404, { error: `no such control endpoint: ${method} ${path}` });
  });
  const h = await listenLoopback(server);
  return { name: 'control', url: `http://${LAB_HOST}:${h.port}`, port: h.port, close: h.close };
}

/**
 * Why a request does not come from a client of this server, or undefined when it does. A web page
 * whose name its owner re-points at 127.0.0.1 (DNS rebinding) reaches this server from the user's
 * browser with its own name in Host and Origin: only our own address is accepted in either.
 */
function foreignOrigin(req: http.IncomingMessage, port: number): string | undefined {
  const own = [`${LAB_HOST}:${port}`, `localhost:${port}`];
  const host = req.headers.host?.toLowerCase();
  if (!host || !own.includes(host)) return `Host "${host ?? ''}" is not this lab control server (${own.join(' or ')})`;
  const origin = req.headers.origin?.toLowerCase();
  if (origin !== undefined && !own.some((h) => origin === `http://${h}`)) return `Origin "${origin}" is not this lab control server`;
  return undefined;
}

function line(res: http.ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text) + 1 });
  res.end(text + '\n');
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, null, 2) + '\n';
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
