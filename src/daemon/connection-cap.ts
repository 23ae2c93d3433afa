import type http from 'node:http';
import type net from 'node:net';

/**
 * A cap on the open connections of the daemon's HTTP server, so a flood of connections (idle,
 * slowloris, or just many) can never take the file descriptors the probes need (issue 19).
 *
 * At the cap, a new connection makes room by closing the oldest connection that has not sent a
 * whole request yet (idle since it connected, or a slowloris still dripping its head); if there is
 * none, the oldest idle keep-alive (a scraper between scrapes); only when every connection is busy
 * with a request is the new one closed instead. So a scraper that connects and asks at once is
 * served during a flood of idle connections, its kept-alive connection outlives the flood's, and
 * the server never holds more than `max` sockets (plus the one being accepted).
 */
export const DEFAULT_MAX_CONNECTIONS = 128;

export interface CapHooks {
  /** A connection was closed to stay within the cap (an idle one, or the new one). */
  dropped(): void;
  /** The number of open connections changed. */
  open(n: number): void;
}

export function capConnections(server: http.Server, max: number, hooks: CapHooks): void {
  // In accept order, so the first idle one found is the oldest.
  const sockets = new Set<net.Socket>();
  const busy = new Map<net.Socket, number>();
  const served = new WeakSet<net.Socket>();
  server.on('connection', (socket: net.Socket) => {
    if (sockets.size >= max) {
      const open = [...sockets];
      const victim = open.find((s) => !served.has(s)) ?? open.find((s) => !busy.has(s));
      hooks.dropped();
      if (!victim) return void socket.destroy();
      sockets.delete(victim);
      victim.destroy();
    }
    sockets.add(socket);
    hooks.open(sockets.size);
    socket.once('close', () => {
      sockets.delete(socket);
      busy.delete(socket);
      hooks.open(sockets.size);
    });
  });
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const s = req.socket;
    served.add(s);
    busy.set(s, (busy.get(s) ?? 0) + 1);
    res.once('close', () => {
      const n = (busy.get(s) ?? 1) - 1;
      if (n > 0) busy.set(s, n);
      else busy.delete(s);
    });
  });
}
