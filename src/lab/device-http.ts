import http from 'node:http';
import type { Logger } from 'pino';
import type { FaultSwitchboard } from './faults.js';
import { listenLoopback, LAB_HOST, PendingDelays, type LabServer } from './listen.js';

/**
 * The HTTP server "on port 80" of one lab device: what the public URL front forwards to. Real
 * node:http so probes exercise real sockets, framing and timing.
 */

export interface LabDevice {
  uuid: string;
  name: string;
}

export interface DeviceHttpServer extends LabServer {
  device: LabDevice;
}

/** How long the `slow-url` fault stalls a response: far beyond any sane probe timeout. */
export const SLOW_URL_DELAY_MS = 30_000;

export async function startDeviceHttp(device: LabDevice, faults: FaultSwitchboard, log?: Logger): Promise<DeviceHttpServer> {
  // Pending slow responses ('close' on the response fires when the client goes away).
  const delays = new PendingDelays();

  const server = http.createServer((req, res) => {
    log?.debug({ device: device.name, method: req.method, url: req.url }, 'lab device request');
    const answer = () => respond(device, req, res);
    if (!faults.isOn('slow-url')) return answer();
    delays.after(SLOW_URL_DELAY_MS, res, answer);
  });
  const handle = await listenLoopback(server);
  return {
    name: `device ${device.name} HTTP`,
    url: `http://${LAB_HOST}:${handle.port}`,
    port: handle.port,
    device,
    close: async () => {
      delays.cancelAll();
      await handle.close();
    },
  };
}

function respond(device: LabDevice, req: http.IncomingMessage, res: http.ServerResponse): void {
  req.resume(); // drain any body; this device ignores it
  const path = (req.url ?? '/').split('?')[0];
  const method = req.method ?? 'GET';
  if ((method === 'GET' || method === 'HEAD') && path === '/health') {
    return send(res, 200, 'text/plain', `ok ${device.uuid}\n`);
  }
  if ((method === 'GET' || method === 'HEAD') && path === '/') {
    return send(
      res,
      200,
      'text/html',
      `<!doctype html>\n<html><head><title>${device.name}</title></head><body><h1>${device.name}</h1><p>uuid ${device.uuid}</p></body></html>\n`,
    );
  }
  // Redirects, for probes that follow (or refuse to follow) them: relative Locations, as most apps send.
  if ((method === 'GET' || method === 'HEAD') && (path === '/redirect' || path === '/redirect-loop')) {
    return send(res, 302, 'text/plain', 'found\n', { location: path === '/redirect' ? '/health' : '/redirect-loop' });
  }
  send(res, 404, 'text/plain', 'not found\n');
}

function send(res: http.ServerResponse, status: number, type: string, body: string, extra: http.OutgoingHttpHeaders = {}): void {
  res.writeHead(status, { ...extra, 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
