import http from 'node:http';
import type { Logger } from 'pino';
import { FleetprobeError } from '../core/errors.js';
import { acceptsGzip, gzipBody } from '../metrics/compress.js';
import type { Metrics } from '../metrics/metrics.js';
import { capConnections, DEFAULT_MAX_CONNECTIONS } from './connection-cap.js';
import type { StatusStore } from './status.js';
import { statusRoute } from './status-routes.js';

export interface ServerState {
  /** Config loaded and scheduler running. */
  ready(): boolean;
}

/**
 * The daemon's HTTP surface. No endpoint takes a target or URL: fleetprobe only probes what its
 * config says, so it cannot be turned into an open proxy or a scanner.
 * /healthz answers from the process alone, never from probe results: a failing platform must not
 * get the prober restarted (the 2025-09-10 incident was an aggressive liveness probe).
 */
/**
 * Limits of the server's own connections. A client that sends nothing is closed after IDLE_MS, one
 * whose request head is still incomplete after HEADERS_MS gets a 408 (checked every second, not
 * Node's default 30 s), a request must be done in REQUEST_MS, an idle keep-alive ends after
 * KEEP_ALIVE_MS (above the 60 s of common load balancers, so they close first).
 */
export const SERVER_LIMITS = { IDLE_MS: 15_000, HEADERS_MS: 10_000, REQUEST_MS: 30_000, KEEP_ALIVE_MS: 65_000, CHECK_EVERY_MS: 1000 } as const;

export function createServer(deps: { metrics: Metrics; status: StatusStore; state: ServerState; log: Logger; maxConnections?: number }): http.Server {
  const server = http.createServer({ connectionsCheckingInterval: SERVER_LIMITS.CHECK_EVERY_MS }, (req, res) => {
    // Nothing a client sends may escape this handler: an exception here would stop all monitoring.
    handle(deps, req, res).catch((err: unknown) => {
      try {
        deps.log.error({ err, method: req.method, url: printableTarget(req.url) }, 'HTTP handler failed');
        if (res.headersSent) res.destroy();
        else res.writeHead(500, { 'content-type': 'text/plain' }).end('internal error\n');
      } catch {
        res.destroy();
      }
    });
  });
  // Slow or idle clients must not hold sockets open for long, and never more than the cap of them.
  server.timeout = SERVER_LIMITS.IDLE_MS;
  server.requestTimeout = SERVER_LIMITS.REQUEST_MS;
  server.headersTimeout = SERVER_LIMITS.HEADERS_MS;
  server.keepAliveTimeout = SERVER_LIMITS.KEEP_ALIVE_MS;
  capConnections(server, deps.maxConnections ?? DEFAULT_MAX_CONNECTIONS, {
    dropped: () => deps.metrics.httpConnectionsDropped.inc(),
    open: (n) => deps.metrics.httpConnections.set(n),
  });
  return server;
}

/** `HOST:PORT`, `[v6]:PORT` or `:PORT` (every address) as a host and a port, or undefined when it is none of them. */
export function listenAddress(hostPort: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(hostPort);
  if (!m || Number(m[3]) > 65535) return undefined;
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port: Number(m[3]) };
}

export const LISTEN_FORMAT = 'HOST:PORT (e.g. 127.0.0.1:9437, [::1]:9437, :9437; port 0-65535)';

export function listen(server: http.Server, hostPort: string): Promise<{ host: string; port: number }> {
  const addr = listenAddress(hostPort);
  if (!addr) throw new FleetprobeError('FP_ERR_LISTEN', `--listen must be ${LISTEN_FORMAT}, got "${hostPort}"`);
  const { host, port } = addr;
  return new Promise((resolve, reject) => {
    const fail = (err: NodeJS.ErrnoException) => {
      const why = err.code === 'EADDRINUSE' ? 'the address is already in use' : err.code === 'EACCES' ? 'permission denied' : err.message;
      reject(
        new FleetprobeError('FP_ERR_LISTEN', `cannot listen on ${host}:${port}: ${why} (${err.code}); choose another with --listen HOST:PORT`, { cause: err }),
      );
    };
    server.once('error', fail);
    server.listen(port, host, () => {
      server.off('error', fail);
      const addr = server.address() as { address: string; port: number };
      resolve({ host: addr.address, port: addr.port });
    });
  });
}

/**
 * The path of a request target, or undefined when it cannot be parsed (`//%/`, `http://[/`,
 * `//:99999/`): such a request gets a 400, never an exception.
 */
export function requestPath(target: string | undefined): string | undefined {
  if (!target) return undefined;
  // Origin form (`/path`) is read as a path alone, so `//host/...` is not taken for an authority;
  // absolute form (`http://host/path`) is what proxies send.
  const absolute = target.startsWith('/') ? `http://localhost${target}` : /^https?:\/\//i.test(target) ? target : undefined;
  return absolute !== undefined && URL.canParse(absolute) ? new URL(absolute).pathname : undefined;
}

/** A request target fit for a log line: bounded, control characters escaped. */
function printableTarget(target: string | undefined): string {
  return JSON.stringify((target ?? '').slice(0, 200)).slice(1, -1);
}

async function handle(deps: { metrics: Metrics; status: StatusStore; state: ServerState }, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const pathname = requestPath(req.url);
  if (pathname === undefined) {
    res.writeHead(400, { 'content-type': 'text/plain', connection: 'close' }).end('bad request target\n');
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
    return;
  }
  switch (pathname) {
    case '/metrics': {
      const body = await deps.metrics.renderBytes();
      const headers: http.OutgoingHttpHeaders = { 'content-type': deps.metrics.registry.contentType, vary: 'accept-encoding' };
      if (!acceptsGzip(req.headers['accept-encoding'])) {
        // Given back only once sent: a half-sent body is still read by the socket.
        res.once('finish', () => deps.metrics.recycle(body));
        return void res.writeHead(200, headers).end(body);
      }
      const compressed = await gzipBody(body);
      deps.metrics.recycle(body);
      res.writeHead(200, { ...headers, 'content-encoding': 'gzip' }).end(compressed);
      return;
    }
    case '/healthz':
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      return;
    case '/readyz': {
      const ready = deps.state.ready();
      res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' }).end(ready ? 'ready\n' : 'not ready\n');
      return;
    }
    default: {
      // /probes, /probes/NAME, the status page (/ and /probe/NAME): read-only, see status-routes.ts.
      const reply = statusRoute(deps.status, pathname, req.url);
      if (reply) res.writeHead(reply.status, reply.headers).end(reply.body);
      else res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  }
}
