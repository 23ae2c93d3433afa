import net from 'node:net';

/**
 * A TCP fault proxy for tests (in the spirit of toxiproxy): listens on 127.0.0.1:0 in front of any
 * real target and breaks the path in one of a few well-defined ways. It knows nothing about the
 * protocol on top, so the same modes serve every probe kind (HTTPS, SSH, CONNECT tunnels, builders).
 *
 * Modes apply per connection: `setMode` sets the mode new connections get (and, with `live`, switches
 * the ones already open), `queue` hands specific modes to the next connections in accept order.
 * Every socket it accepts or opens is tracked and destroyed by `close()`, so a test never leaves a
 * connection (or a delay timer) behind.
 */

/** client → target is `upstream`, target → client is `downstream`. */
export type Direction = 'upstream' | 'downstream';

export type FaultMode =
  /** Forwards everything untouched. */
  | { type: 'pass' }
  /** Delays each chunk (`at: 'chunk'`, default) or only the connection to the target (`at: 'connect'`). */
  | { type: 'latency'; ms: number; at?: 'chunk' | 'connect' }
  /** At most this many bytes per second in each direction. */
  | { type: 'bandwidth'; bytesPerSecond: number }
  /** Accepts, reads and discards, never connects to the target, never answers, closes only after the client. */
  | { type: 'blackhole' }
  /** Forwards `afterBytes` bytes in `direction`, then resets (RST) both sides. */
  | { type: 'reset'; afterBytes: number; direction: Direction }
  /** Forwards normally, but holds each side open `ms` after the other side closed (late FIN). */
  | { type: 'slow-close'; ms: number }
  /**
   * Forwards `afterBytes` bytes in `direction`, then goes silent: forwards and answers nothing more
   * either way but keeps both sockets open (a peer that hung, or a NAT that dropped the flow).
   */
  | { type: 'half-open'; afterBytes: number; direction: Direction };

export const PASS: FaultMode = { type: 'pass' };

/** A short stable name for a mode, e.g. `reset(downstream@1)`, for test titles and the docs' fault matrix. */
export function describeMode(m: FaultMode): string {
  switch (m.type) {
    case 'pass':
    case 'blackhole':
      return m.type;
    case 'latency':
      return `latency(${m.ms}ms${m.at === 'connect' ? ' at connect' : ' per chunk'})`;
    case 'bandwidth':
      return `bandwidth(${m.bytesPerSecond} B/s)`;
    case 'reset':
    case 'half-open':
      return `${m.type}(${m.direction} after ${m.afterBytes} B)`;
    case 'slow-close':
      return `slow-close(${m.ms}ms)`;
  }
}

export interface ProxyConnection {
  readonly id: number;
  mode: FaultMode;
  /** Bytes forwarded so far, per direction. */
  readonly bytes: Record<Direction, number>;
  /** Sizes of the chunks forwarded, per direction, in order (to calibrate byte offsets of a protocol). */
  readonly chunks: Record<Direction, number[]>;
  readonly closed: boolean;
  /** The client has closed its side (a FIN or a reset), even if the proxy still holds its own. */
  readonly clientGone: boolean;
}

export interface FaultProxy {
  readonly host: string;
  readonly port: number;
  /** The mode of connections accepted from now on; `live` also switches open connections. */
  setMode(mode: FaultMode, opts?: { live?: boolean }): void;
  /** Modes for the next connections, one each, in accept order (then the `setMode` mode again). */
  queue(...modes: FaultMode[]): void;
  /** Every connection accepted so far (open and closed), in accept order. */
  readonly connections: readonly ProxyConnection[];
  /** Connections whose client has not closed its side yet. */
  open(): number;
  /**
   * Resolves once every client has closed its side (the proxy may still be delaying its own FIN, as
   * slow-close and latency do); rejects with the count after `ms`.
   */
  idle(ms?: number): Promise<void>;
  close(): Promise<void>;
}

export interface FaultProxyTarget {
  host?: string;
  port: number;
}

const HOST = '127.0.0.1';
// Pause the source when this many chunks wait for a delay, so a slow mode applies backpressure
// instead of buffering a whole transfer in the proxy.
const HIGH_WATER_CHUNKS = 8;
// Bandwidth is shaped in slices of this share of a second, so a limit reads as a steady trickle.
const BANDWIDTH_SLICE_S = 0.05;

class Connection implements ProxyConnection {
  mode: FaultMode;
  readonly bytes: Record<Direction, number> = { upstream: 0, downstream: 0 };
  readonly chunks: Record<Direction, number[]> = { upstream: [], downstream: [] };
  closed = false;
  /** The client has sent its FIN or gone: what a test means by "the probe let go". */
  clientGone = false;
  upstream?: net.Socket;
  private frozen = false;
  /** Connected to the target; before that a client's FIN ends the connection. */
  private linked = false;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly wakeups = new Set<() => void>();

  constructor(
    readonly id: number,
    readonly client: net.Socket,
    mode: FaultMode,
    private readonly target: Required<FaultProxyTarget>,
    private readonly track: (s: net.Socket) => void,
  ) {
    this.mode = mode;
    client.on('error', () => {});
    client.once('close', () => this.teardown(false));
    // A silent proxy never answers, not even with a FIN, but lets go once the client has.
    client.once('end', () => {
      this.clientGone = true;
      if (this.frozen || !this.linked) this.teardown(false);
    });
    this.start().catch(() => this.teardown(true));
  }

  /** Waits `ms`, or until the connection closes (then resolves false). */
  private sleep(ms: number): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(t);
        this.timers.delete(t);
        this.wakeups.delete(wake);
        resolve(!this.closed);
      };
      const t = setTimeout(wake, ms);
      this.timers.add(t);
      this.wakeups.add(wake);
    });
  }

  private async start(): Promise<void> {
    if (this.mode.type === 'blackhole') return this.freeze();
    // The client is read from the start (its bytes queue until the target is connected), so a client
    // giving up during a connect delay is noticed at once.
    let connected!: (ok: boolean) => void;
    const ready = new Promise<boolean>((resolve) => (connected = resolve));
    this.pipe('upstream', this.client, () => this.upstream!, ready);
    if (this.mode.type === 'latency' && this.mode.at === 'connect' && !(await this.sleep(this.mode.ms))) return connected(false);
    if (this.closed) return connected(false);
    const upstream = net.connect({ host: this.target.host, port: this.target.port, allowHalfOpen: true });
    this.upstream = upstream;
    this.track(upstream);
    upstream.on('error', () => {});
    // A target that fails (refused, reset) is passed on as a reset; a clean close travels as a FIN
    // through the downstream pipe, in order after the data.
    upstream.once('close', (hadError) => {
      if (hadError) this.reset();
    });
    const ok = await new Promise<boolean>((resolve) => {
      upstream.once('connect', () => resolve(true));
      upstream.once('close', () => resolve(false));
    });
    this.linked = ok && !this.closed;
    connected(this.linked);
    if (ok) this.pipe('downstream', upstream, () => this.client, Promise.resolve(true));
  }

  /** One direction: chunks are handled strictly in order, one at a time, so delays never reorder bytes. */
  private pipe(dir: Direction, from: net.Socket, target: () => net.Socket, ready: Promise<boolean>): void {
    const queue: (Buffer | null)[] = [];
    let busy = false;
    const pump = async () => {
      if (busy) return;
      busy = true;
      if (!(await ready)) return;
      const to = target();
      while (queue.length && !this.closed) {
        const chunk = queue.shift()!;
        if (this.frozen) continue; // half-open: not even a FIN gets through
        if (chunk === null) {
          if (this.mode.type === 'slow-close' && !(await this.sleep(this.mode.ms))) break;
          to.end();
          continue;
        }
        await this.forward(dir, chunk, to);
        if (queue.length < HIGH_WATER_CHUNKS && !this.frozen) from.resume();
      }
      busy = false;
    };
    from.on('data', (chunk: Buffer) => {
      if (this.frozen) return;
      queue.push(chunk);
      if (queue.length >= HIGH_WATER_CHUNKS) from.pause();
      void pump();
    });
    from.once('end', () => {
      queue.push(null);
      void pump();
    });
  }

  private async forward(dir: Direction, chunk: Buffer, to: net.Socket): Promise<void> {
    const m = this.mode;
    if (this.frozen || m.type === 'blackhole') return this.freeze();
    if ((m.type === 'reset' || m.type === 'half-open') && m.direction === dir) {
      const room = m.afterBytes - this.bytes[dir];
      if (chunk.length >= room) {
        if (room > 0) await this.write(dir, chunk.subarray(0, room), to);
        // Give the peer's event loop a moment to read what was let through: an RST makes the kernel
        // drop data the application has not read yet, which would move the failure to another phase.
        if (!(await this.sleep(20))) return;
        return m.type === 'reset' ? this.reset() : this.freeze();
      }
    }
    if (m.type === 'latency' && m.at !== 'connect' && !(await this.sleep(m.ms))) return;
    if (m.type === 'bandwidth') {
      const slice = Math.max(1, Math.floor(m.bytesPerSecond * BANDWIDTH_SLICE_S));
      for (let i = 0; i < chunk.length; i += slice) {
        const part = chunk.subarray(i, i + slice);
        if (!(await this.sleep((part.length / m.bytesPerSecond) * 1000))) return;
        await this.write(dir, part, to);
      }
      return;
    }
    await this.write(dir, chunk, to);
  }

  private async write(dir: Direction, chunk: Buffer, to: net.Socket): Promise<void> {
    if (this.closed || to.destroyed) return;
    this.bytes[dir] += chunk.length;
    this.chunks[dir].push(chunk.length);
    if (to.write(chunk)) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        to.off('drain', done);
        to.off('close', done);
        resolve();
      };
      to.on('drain', done);
      to.on('close', done);
    });
  }

  /** Half-open: nothing is read or written any more, both sockets stay open. */
  private freeze(): void {
    this.frozen = true;
    // The target's bytes stay in the kernel. The client is still read, into nowhere: a socket that
    // is not read never reports its peer leaving, and the proxy must notice a client giving up.
    this.upstream?.pause();
    if (this.client.listenerCount('data') === 0) this.client.on('data', () => {});
    this.client.resume();
  }

  reset(): void {
    if (this.closed) return;
    this.client.resetAndDestroy();
    this.upstream?.resetAndDestroy();
    this.teardown(false);
  }

  teardown(hard: boolean): void {
    if (this.closed) return;
    this.closed = true;
    this.clientGone = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const w of [...this.wakeups]) w();
    if (hard) {
      this.client.resetAndDestroy();
      this.upstream?.resetAndDestroy();
    } else {
      this.client.destroy();
      this.upstream?.destroy();
    }
  }

  /** Applies a mode switched while the connection is open. */
  switchTo(mode: FaultMode): void {
    this.mode = mode;
    if (mode.type === 'blackhole') this.freeze();
  }
}

export async function startFaultProxy(target: FaultProxyTarget, initial: FaultMode = PASS): Promise<FaultProxy> {
  const to = { host: target.host ?? HOST, port: target.port };
  let mode = initial;
  const queued: FaultMode[] = [];
  const all: Connection[] = [];
  const live = new Set<Connection>();
  const sockets = new Set<net.Socket>();
  const track = (s: net.Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  };

  // Half-open allowed: each side's FIN is passed on only when the proxy decides (see slow-close).
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    track(client);
    const conn = new Connection(all.length + 1, client, queued.shift() ?? mode, to, track);
    all.push(conn);
    live.add(conn);
    client.once('close', () => live.delete(conn));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as net.AddressInfo).port;

  const open = () => [...live].filter((c) => !c.clientGone).length;
  let closing: Promise<void> | undefined;
  return {
    host: HOST,
    port,
    setMode(next, opts = {}) {
      mode = next;
      if (opts.live) for (const c of live) c.switchTo(next);
    },
    queue(...modes) {
      queued.push(...modes);
    },
    connections: all,
    open,
    async idle(ms = 2000) {
      const until = Date.now() + ms;
      while (open() > 0) {
        if (Date.now() > until) throw new Error(`${open()} client connection(s) still open through the fault proxy after ${ms}ms`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const c of live) c.teardown(false);
        for (const s of sockets) s.destroy();
      })),
  };
}
