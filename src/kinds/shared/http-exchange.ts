import type net from 'node:net';
import type tls from 'node:tls';
import type { Client, Dispatcher } from 'undici';
import type { ProbeContext } from '../../core/kind.js';
import { connectTcp, resolveHost, upgradeTls, type ResolveOptions } from '../../net/dial.js';
import { asProtocolError, clientOverSocket, endClient } from '../../net/http-client.js';
import type { TlsBlock } from './tls.js';

/**
 * HTTP over a socket the kind dialled itself (the http kind, the device-status kind's API reads,
 * the build kind's builder): resolve, connect and TLS are real, timed phases, and the connection is
 * the run's own. One exchange a connection; closing it ends the client and the socket.
 */

export interface DialHttpOptions extends ResolveOptions {
  tls?: Partial<TlsBlock>;
  /** Called with the TLS socket once the handshake is done (e.g. to read the certificate). */
  onTls?(socket: tls.TLSSocket): void;
}

/** Resolves, connects and, for https, does TLS (phases `resolve`, `connect`, `tls`) to the URL's origin. */
export async function dialHttp(ctx: ProbeContext, url: URL, opts: DialHttpOptions = {}): Promise<net.Socket> {
  const https = url.protocol === 'https:';
  const address = await resolveHost(ctx, url.hostname, { address: opts.address, family: opts.family });
  const socket = await connectTcp(ctx, address, Number(url.port) || (https ? 443 : 80));
  if (!https) return socket;
  try {
    const secure = await upgradeTls(ctx, socket, {
      servername: opts.tls?.serverName ?? url.hostname,
      caFile: opts.tls?.caFile,
      insecureSkipVerify: opts.tls?.insecureSkipVerify,
      alpn: ['http/1.1'],
    });
    opts.onTls?.(secure);
    return secure;
  } catch (err) {
    socket.destroy();
    throw err;
  }
}

/** What an exchange failed with: the abort's own reason when `signal` ended it, else the client's error named. */
function failure(err: unknown, signal: AbortSignal): unknown {
  // A step limit or the deadline destroys the socket under undici, which then says "closed".
  return signal.aborted ? signal.reason : asProtocolError(err);
}

export interface HttpRequest {
  path: string;
  method: Dispatcher.HttpMethod;
  headers: Record<string, string>;
  body?: string | Buffer;
  signal: AbortSignal;
}

/** Sends a request on `client` and resolves with the answer's head; errors as `failure` names them. */
export async function sendRequest(client: Client, req: HttpRequest): Promise<Dispatcher.ResponseData> {
  try {
    return await client.request(req);
  } catch (err) {
    throw failure(err, req.signal);
  }
}

/**
 * Reads at most `maxBytes` of a body (the rest is discarded: `truncated`). With `partial`, an error
 * mid-body keeps what arrived instead of failing (an error answer's reason is what we have).
 */
export async function readBody(
  res: Dispatcher.ResponseData,
  maxBytes: number,
  signal: AbortSignal,
  opts: { partial?: boolean } = {},
): Promise<{ text: string; truncated: boolean }> {
  const chunks: Buffer[] = [];
  let size = 0;
  const text = () => Buffer.concat(chunks).toString('utf8');
  try {
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      const room = maxBytes - size;
      // Strictly more than fits: a body of exactly maxBytes was read whole and is not truncated.
      if (chunk.length > room) {
        chunks.push(chunk.subarray(0, room));
        res.body.destroy();
        return { text: text(), truncated: true };
      }
      chunks.push(chunk);
      size += chunk.length;
    }
  } catch (err) {
    if (opts.partial) return { text: text(), truncated: false };
    throw failure(err, signal);
  }
  return { text: text(), truncated: false };
}

/** One request and its answer over a dialled socket; `close` (idempotent) ends the client and the socket. */
export class HttpExchange {
  private readonly client: Client;

  constructor(
    origin: string,
    private readonly socket: net.Socket,
  ) {
    // undici takes the socket we dialled, so the phases before are real and the connection is ours.
    this.client = clientOverSocket(origin, socket);
  }

  send(req: HttpRequest): Promise<Dispatcher.ResponseData> {
    return sendRequest(this.client, req);
  }

  async close(): Promise<void> {
    await endClient(this.client);
    this.socket.destroy();
  }
}
