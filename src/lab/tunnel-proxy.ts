import net from 'node:net';
import tls from 'node:tls';
import { timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import type { LabCa } from './ca.js';
import type { FaultSwitchboard } from './faults.js';
import { listenLoopback, LAB_HOST, PendingDelays, type LabServer } from './listen.js';

/**
 * The platform's tunnel proxy (open-balena-vpn's node-tunnel, docs/protocols.md "CONNECT tunnel"): TLS,
 * then `CONNECT <uuid>.balena:<port>` with the token in Proxy-Authorization, routed to the lab
 * devices' ports. Replies are the real proxy's: 200 with `Proxy-agent: balena-io/node-tunnel`,
 * 407, 503, 403 (bad host name), 400, 500 (port refused), 405 (not CONNECT).
 */

export const LAB_TUNNEL_HOST = 'tunnel.fleetprobe.test';
/** How long `tunnel-slow-connect` holds the answer: far beyond any sane step timeout. */
export const SLOW_CONNECT_DELAY_MS = 30_000;
/** How long `tunnel-queue` spends on each CONNECT, one at a time: 8 at once wait up to 2 s. */
export const QUEUE_SERVICE_MS = 250;
/** While `tunnel-drop` is on, each open tunnel is cut after a random time in this range. */
export const DROP_AFTER_MS = [300, 1500] as const;

const TARGET = /^([a-fA-F0-9]+)\.(balena|resin|vpn)(?::(\d{1,5}))?$/;
const MAX_REQUEST_BYTES = 8 * 1024;

/**
 * Where `<uuid>.balena:<port>` goes: one table any lab part can add a device port to (the device
 * HTTP servers register port 80, the lab SSH devices port 22222).
 */
export class TunnelRoutes {
  private readonly routes = new Map<string, Map<number, { host: string; port: number }>>();

  add(uuid: string, port: number, to: { host?: string; port: number }): void {
    const key = uuid.toLowerCase();
    if (!this.routes.has(key)) this.routes.set(key, new Map());
    this.routes.get(key)!.set(port, { host: to.host ?? LAB_HOST, port: to.port });
  }

  hasDevice(uuid: string): boolean {
    return this.routes.has(uuid.toLowerCase());
  }

  lookup(uuid: string, port: number): { host: string; port: number } | undefined {
    return this.routes.get(uuid.toLowerCase())?.get(port);
  }
}

export interface TunnelProxyOptions {
  ca: LabCa;
  faults: FaultSwitchboard;
  routes: TunnelRoutes;
  /** The tokens it accepts (the user part is ignored, as on the platform). */
  tokens: string[];
  /** Whether a device is connected to the VPN right now (undefined: not a device with a state); 503 when false. */
  online?(uuid: string): boolean | undefined;
  /** Plain TCP, as older platforms' `vpn.<domain>:3128` (probes set `tunnelTls: false`); TLS otherwise. */
  plain?: boolean;
  log?: Logger;
}

export interface TunnelProxy extends LabServer {
  /** Tunnels open right now. */
  openTunnels(): number;
  /** Most client connections open at once since the last resetPeak() (tests of bounded concurrency). */
  peakConnections(): number;
  resetPeak(): void;
  /** Client connections accepted since the start (tests of how often a probe opens a tunnel). */
  accepted(): number;
}

function tokenOk(header: string | undefined, tokens: string[]): boolean {
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? '');
  if (!m) return false;
  const decoded = Buffer.from(m[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  const given = Buffer.from(colon >= 0 ? decoded.slice(colon + 1) : decoded);
  return tokens.some((t) => {
    const want = Buffer.from(t);
    return want.length === given.length && timingSafeEqual(want, given);
  });
}

// long: one lab server: its handlers share the server's state and faults in one closure, the way a test peer reads best.
export async function startTunnelProxy(opts: TunnelProxyOptions): Promise<TunnelProxy> {
  const { ca, faults, routes, log } = opts;
  const cert = ca.issue({ dnsNames: [LAB_TUNNEL_HOST], ips: [LAB_HOST] });
  const tunnels = new Set<{ client: net.Socket; upstream: net.Socket; dropTimer?: NodeJS.Timeout }>();
  const delays = new PendingDelays();

  const scheduleDrop = (t: { client: net.Socket; upstream: net.Socket; dropTimer?: NodeJS.Timeout }) => {
    const [lo, hi] = DROP_AFTER_MS;
    t.dropTimer = setTimeout(
      () => {
        log?.debug('lab tunnel proxy: tunnel-drop cuts a tunnel');
        // resetAndDestroy() throws ERR_INVALID_HANDLE_TYPE on a TLS socket (only TCP handles can send
        // an RST), which crashed the daemon under --lab: fall back to a plain close.
        try {
          t.client.resetAndDestroy();
        } catch {
          t.client.destroy();
        }
        t.upstream.destroy();
      },
      lo + Math.random() * (hi - lo),
    );
  };
  const unsubscribe = faults.onChange((name, on) => {
    if (name !== 'tunnel-drop') return;
    for (const t of tunnels) {
      clearTimeout(t.dropTimer);
      if (on) scheduleDrop(t);
    }
  });

  let connections = 0;
  let peak = 0;
  let accepted = 0;
  // tunnel-queue: when the single worker is next free (ms since the epoch).
  let queueFreeAt = 0;
  const accept = (client: net.Socket) => {
    client.on('error', () => undefined);
    peak = Math.max(peak, ++connections);
    accepted++;
    client.once('close', () => connections--);
    let head = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      head = Buffer.concat([head, d]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) {
        // A request starts with its method, a token: anything else (a TLS ClientHello sent to the
        // plain proxy) is answered 400 at once, as node's http server (node-tunnel's) answers it.
        if (head.length > MAX_REQUEST_BYTES || !/^[A-Za-z]/.test(head.toString('latin1', 0, 1))) reply(client, 400, 'Bad Request');
        return;
      }
      client.off('data', onData);
      client.pause();
      const rest = head.subarray(end + 4);
      handle(client, head.subarray(0, end).toString('latin1'), rest);
    };
    client.on('data', onData);
  };
  const server = opts.plain ? net.createServer(accept) : tls.createServer({ cert: cert.certPem, key: cert.keyPem }, accept);

  const nonstandard = () => faults.isOn('tunnel-nonstandard');

  /** Writes an answer and closes, in the real proxy's words or, with `tunnel-nonstandard`, a generic proxy's. */
  function reply(client: net.Socket, status: number, text: string): void {
    const odd: Record<number, string> = { 401: 'Unauthorized, Who Are You', 403: 'Nope', 500: 'Could Not Reach It', 503: 'Try Later Maybe' };
    const answer = nonstandard()
      ? `HTTP/1.1 ${status === 407 ? 401 : status} ${odd[status === 407 ? 401 : status] ?? text}\r\nServer: generic-proxy/0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`
      : `HTTP/1.0 ${status} ${text}\r\n\r\n`;
    client.end(answer);
  }

  function handle(client: net.Socket, request: string, rest: Buffer): void {
    const [line, ...headerLines] = request.split('\r\n');
    const m = /^(\S+) (\S+) HTTP\/1\.[01]$/.exec(line);
    if (!m) return reply(client, 400, 'Bad Request');
    const [, method, target] = m;
    if (method !== 'CONNECT') return reply(client, 405, 'Method Not Allowed');
    const headers = new Map<string, string>();
    for (const h of headerLines) {
      const i = h.indexOf(':');
      if (i > 0) headers.set(h.slice(0, i).trim().toLowerCase(), h.slice(i + 1).trim());
    }
    const t = TARGET.exec(target);
    if (!t) return reply(client, 403, 'Forbidden');
    const uuid = t[1];
    const port = t[3] ? Number(t[3]) : 80;
    if (faults.isOn('tunnel-token-revoked') || !tokenOk(headers.get('proxy-authorization'), opts.tokens) || !routes.hasDevice(uuid)) {
      return reply(client, 407, 'Proxy Authentication Required');
    }
    if (faults.isOn('tunnel-device-offline') || opts.online?.(uuid) === false) return reply(client, 503, 'Service Unavailable');
    const to = faults.isOn('tunnel-port-closed') ? undefined : routes.lookup(uuid, port);
    if (!to) return reply(client, 500, 'Internal Server Error');

    const open = () => {
      const upstream = net.connect(to.port, to.host);
      let connected = false;
      // The device port refused or vanished: before the 200 the real proxy answers 500.
      upstream.once('error', () => (connected ? client.destroy() : reply(client, 500, 'Internal Server Error')));
      upstream.once('connect', () => {
        connected = true;
        const ok = nonstandard()
          ? 'HTTP/1.1 200 Tunnel Is Go\r\nVia: 1.1 generic-proxy\r\nX-Odd: yes\r\n\r\n'
          : 'HTTP/1.0 200 Connection Established\r\nProxy-agent: balena-io/node-tunnel\r\n\r\n';
        client.write(ok);
        if (rest.length) upstream.write(rest);
        const entry: { client: net.Socket; upstream: net.Socket; dropTimer?: NodeJS.Timeout } = { client, upstream };
        tunnels.add(entry);
        if (faults.isOn('tunnel-drop')) scheduleDrop(entry);
        const done = () => {
          clearTimeout(entry.dropTimer);
          tunnels.delete(entry);
          client.destroy();
          upstream.destroy();
        };
        client.once('close', done);
        upstream.once('close', done);
        client.pipe(upstream);
        upstream.pipe(client);
        client.resume();
      });
    };
    if (faults.isOn('tunnel-slow-connect')) return delays.after(SLOW_CONNECT_DELAY_MS, client, open);
    if (faults.isOn('tunnel-queue')) {
      // One worker: each CONNECT is answered QUEUE_SERVICE_MS after the previous one, none refused.
      queueFreeAt = Math.max(queueFreeAt, Date.now()) + QUEUE_SERVICE_MS;
      return delays.after(queueFreeAt - Date.now(), client, open);
    }
    open();
  }

  const h = await listenLoopback(server);
  return {
    name: opts.plain ? 'tunnel proxy (plain)' : 'tunnel proxy',
    url: `${opts.plain ? 'http' : 'https'}://${LAB_HOST}:${h.port}`,
    port: h.port,
    openTunnels: () => tunnels.size,
    peakConnections: () => peak,
    resetPeak: () => (peak = connections),
    accepted: () => accepted,
    close: async () => {
      unsubscribe();
      delays.cancelAll();
      for (const t of [...tunnels]) {
        clearTimeout(t.dropTimer);
        t.upstream.destroy();
      }
      await h.close();
    },
  };
}
