import type { Server } from 'node:net';
import type { Socket } from 'node:net';
import type { EventEmitter } from 'node:events';

/**
 * Lifecycle shared by every lab server (HTTP, TLS, and later SSH / tunnel proxies): listen on
 * loopback with an ephemeral port, and close *hard*, destroying open connections, so a pending slow
 * request or an idle keep-alive socket never holds `lab.close()` (or a test run) open.
 */

export const LAB_HOST = '127.0.0.1';

export interface LabServer {
  /** Human-readable name, used as the key in `lab.endpoints`. */
  name: string;
  url: string;
  port: number;
  close(): Promise<void>;
}

/** Start listening on 127.0.0.1:0 and return a handle that closes the server and all its sockets. */
export async function listenLoopback(server: Server): Promise<{ port: number; close(): Promise<void> }> {
  // Track raw sockets ourselves rather than relying on http's closeAllConnections(): it works the
  // same for TLS and non-HTTP servers, and also covers sockets still mid-handshake.
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.listen(0, LAB_HOST, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('server has no TCP address');

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const s of sockets) s.destroy();
    }));
  return { port: addr.port, close };
}

/**
 * The waits of the lab's "slow" faults: each runs its action after a delay unless the peer leaves
 * first, and `cancelAll()` (from a server's close) ends every pending one at once, so a 30 s fault
 * never leaves a timer behind or holds `lab.close()`.
 */
export class PendingDelays {
  private readonly cancels = new Set<() => void>();

  /** Runs `fn` after `ms`, or never if `peer` emits 'close' first or cancelAll() is called. */
  after(ms: number, peer: EventEmitter, fn: () => void): void {
    const timer = setTimeout(() => {
      cancel();
      fn();
    }, ms);
    const cancel = () => {
      clearTimeout(timer);
      this.cancels.delete(cancel);
      peer.off('close', cancel);
    };
    this.cancels.add(cancel);
    peer.once('close', cancel);
  }

  cancelAll(): void {
    for (const cancel of [...this.cancels]) cancel();
  }
}
