import { randomBytes } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import type { Logger } from 'pino';
import type { LabCa } from './ca.js';
import type { FaultSwitchboard } from './faults.js';
import { listenLoopback, LAB_HOST, type LabServer } from './listen.js';

/**
 * The platform's public device URL front: `https://<uuid>.<domain>/...` is reverse-proxied to that
 * device's HTTP server. It reproduces the platform's failure modes (see docs/protocols.md "Public
 * device URLs") so the public-url probe can be tested against something real.
 */

export const LAB_URL_DOMAIN = 'devices.fleetprobe.test';

/** The exact text the platform serves when it cannot reach a device; probes match on it. */
export const DEVICE_UNREACHABLE_PHRASE = 'We encountered an error when reaching this balena.io device';
const DEVICE_UNREACHABLE_DETAIL = 'tunneling socket could not be established: 500';

const DAY = 24 * 3600 * 1000;

export interface UrlFrontOptions {
  ca: LabCa;
  faults: FaultSwitchboard;
  /** The device's HTTP port for a uuid, or undefined if the platform has no such device. */
  lookup(uuid: string): { port: number } | undefined;
  /** Whether a device is connected right now (undefined: no state kept); when false it is unreachable. */
  online?(uuid: string): boolean | undefined;
  domain?: string;
  log?: Logger;
}

// Hop-by-hop headers (RFC 9110 §7.6.1) are per connection and must not be forwarded.
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

// long: one lab server: its handlers share the server's state and faults in one closure, the way a test peer reads best.
export async function startUrlFront(opts: UrlFrontOptions): Promise<LabServer> {
  const { ca, faults, lookup, log } = opts;
  const domain = (opts.domain ?? LAB_URL_DOMAIN).toLowerCase();
  const names = [`*.${domain}`, domain];

  // One key, two certificates: only the validity dates differ, so `expired-cert` tests exactly that.
  const good = ca.issue({ dnsNames: names, ips: [LAB_HOST] });
  const expired = ca.issue({
    dnsNames: names,
    ips: [LAB_HOST],
    notBefore: new Date(Date.now() - 30 * DAY),
    notAfter: new Date(Date.now() - 1 * DAY),
  });
  const goodCtx = tls.createSecureContext({ cert: good.certPem, key: good.keyPem });
  const expiredCtx = tls.createSecureContext({ cert: expired.certPem, key: expired.keyPem });
  const current = () => (faults.isOn('expired-cert') ? expiredCtx : goodCtx);

  // No keep-alive upstream: each proxied request gets its own socket, closed with the front.
  const upstreamAgent = new http.Agent({ keepAlive: false });

  const server = https.createServer(
    {
      cert: good.certPem,
      key: good.keyPem,
      // Chosen per handshake, so toggling the fault applies to the next connection without a restart.
      SNICallback: (_servername, cb) => cb(null, current()),
    },
    (req, res) => handle(req, res),
  );
  // Clients that send no SNI (e.g. connecting by IP) get the default context: keep it in step.
  const unsubscribe = faults.onChange((name, on) => {
    if (name !== 'expired-cert') return;
    const pem = on ? expired : good;
    server.setSecureContext({ cert: pem.certPem, key: pem.keyPem });
    // Invalidate TLS session tickets, or a resumed session would skip the certificate entirely.
    server.setTicketKeys(randomBytes(48));
  });

  function handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    // One request per connection (`connection: close`): every request then does its own TLS
    // handshake, so a certificate fault applies to the very next request. With keep-alive a client
    // would keep using the old certificate, and closing its idle socket on a switch races with reuse.
    res.shouldKeepAlive = false;
    const host = (req.headers.host ?? '').toLowerCase().replace(/:\d+$/, '');
    const uuid = host.endsWith(`.${domain}`) ? host.slice(0, -(domain.length + 1)) : '';
    const device = uuid && !uuid.includes('.') ? lookup(uuid) : undefined;
    log?.debug({ host, method: req.method, url: req.url }, 'lab url front request');
    if (!device) {
      req.resume();
      return sendHtml(res, 404, page('Device not found', `<p>device not found: ${escapeHtml(host || '(no host)')}</p>`));
    }
    if (faults.isOn('device-offline') || opts.online?.(uuid) === false) {
      req.resume();
      return sendUnreachable(res);
    }
    proxy(req, res, device.port);
  }

  function proxy(req: http.IncomingMessage, res: http.ServerResponse, port: number): void {
    const headers: http.OutgoingHttpHeaders = {};
    for (const [k, v] of Object.entries(req.headers)) if (!HOP_BY_HOP.has(k) && v !== undefined) headers[k] = v;
    const client = req.socket.remoteAddress ?? '';
    const prior = req.headers['x-forwarded-for'];
    headers['x-forwarded-for'] = prior ? `${prior}, ${client}` : client;
    headers['x-forwarded-proto'] = 'https';
    headers['x-forwarded-host'] = req.headers.host ?? '';

    const upstream = http.request({ host: LAB_HOST, port, method: req.method, path: req.url, headers, agent: upstreamAgent });
    upstream.on('response', (up) => {
      const out: http.OutgoingHttpHeaders = {};
      for (const [k, v] of Object.entries(up.headers)) if (!HOP_BY_HOP.has(k) && v !== undefined) out[k] = v;
      res.writeHead(up.statusCode ?? 502, up.statusMessage, out);
      up.pipe(res);
      up.on('error', () => res.destroy());
    });
    upstream.on('error', (err) => {
      log?.debug({ err: err.message, port }, 'lab url front: device unreachable');
      if (!res.headersSent) sendUnreachable(res);
      else res.destroy();
    });
    // Client went away before the answer finished: drop the upstream request too, so the device
    // sees the disconnect (this is what ends a `slow-url` wait).
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.pipe(upstream);
  }

  const h = await listenLoopback(server);
  return {
    name: 'public URL front',
    url: `https://${LAB_HOST}:${h.port}`,
    port: h.port,
    close: async () => {
      unsubscribe();
      upstreamAgent.destroy();
      await h.close();
    },
  };
}

function sendUnreachable(res: http.ServerResponse): void {
  sendHtml(res, 502, page('Device unreachable', `<p>${DEVICE_UNREACHABLE_PHRASE}: ${DEVICE_UNREACHABLE_DETAIL}</p>`));
}

function page(title: string, body: string): string {
  return `<!doctype html>\n<html><head><meta charset="utf-8"><title>${title}</title></head><body><h1>${title}</h1>${body}</body></html>\n`;
}

function sendHtml(res: http.ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'text/html', 'content-length': Buffer.byteLength(body) });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
