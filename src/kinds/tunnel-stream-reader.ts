import type net from 'node:net';
import { StringDecoder } from 'node:string_decoder';
import { ProbeError } from '../core/errors.js';
import { printable } from '../net/connect-tunnel.js';

// What the device sent is kept this far while waiting for a line or a match.
export const MAX_BUFFER_CHARS = 64 * 1024;

/**
 * Text arriving through the tunnel, consumed by the checks as it matches. It keeps a bounded
 * window: a device that keeps writing (between a held tunnel's keepalives, or past what a check
 * waits for) has its oldest text discarded and counted, never buffered without end.
 */
export class StreamReader {
  private text = '';
  private end: Error | null = null;
  private waiter: (() => void) | null = null;
  private readonly decoder = new StringDecoder('utf8');
  /** Characters dropped from the front of the window since the tunnel opened. */
  discarded = 0;

  constructor(
    socket: net.Socket,
    private readonly windowChars = MAX_BUFFER_CHARS,
  ) {
    socket.on('data', (d: Buffer) => {
      this.text += this.decoder.write(d);
      // With a waiter the check sees the text first (and fails past the window); without one,
      // only the newest window can matter to the next check.
      if (!this.waiter) this.trim();
      this.waiter?.();
      if (this.text.length > this.windowChars) this.trim();
    });
    const onEnd = (err?: Error) => {
      this.end ??= err ?? new Error('closed');
      this.waiter?.();
    };
    socket.on('end', () => onEnd());
    socket.on('close', () => onEnd());
    socket.on('error', onEnd);
  }

  private trim(): void {
    const excess = this.text.length - this.windowChars;
    if (excess <= 0) return;
    this.discarded += excess;
    this.text = this.text.slice(excess);
  }

  /** How much text the window holds now. */
  get buffered(): number {
    return this.text.length;
  }

  /** Waits until `take` finds what it wants in the text; consumes what it used. */
  wait<T>(signal: AbortSignal, what: string, take: (text: string) => { value: T; used: number } | undefined): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const done = (fn: () => void) => {
        this.waiter = null;
        signal.removeEventListener('abort', onAbort);
        fn();
      };
      const check = () => {
        const found = take(this.text);
        if (found) {
          this.text = this.text.slice(found.used);
          return done(() => resolve(found.value));
        }
        const got = this.text ? `; received: "${printable(this.text, 120)}"` : '';
        if (this.text.length > this.windowChars) {
          const dropped = this.discarded ? ` (${this.discarded} earlier characters discarded)` : '';
          return done(() => reject(new ProbeError('assertion', `${what}: not found in a window of ${this.windowChars} characters${dropped}${got}`)));
        }
        if (this.end) {
          const why = this.end.message === 'closed' ? '' : `: ${this.end.message}`;
          const err = new ProbeError('connect', `${what}: the tunnel was closed by the far end${this.text ? '' : ' before anything arrived'}${why}${got}`, {
            cause: this.end,
          });
          return done(() => reject(err));
        }
      };
      const onAbort = () => {
        const reason = signal.reason;
        // Say what did arrive: "no answer" and "an answer that never matched" are different stories.
        if (reason instanceof ProbeError && this.text) {
          done(() => reject(new ProbeError(reason.reason, `${reason.message}; received: "${printable(this.text, 120)}"`, { cause: reason })));
        } else done(() => reject(reason));
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiter = check;
      check();
    });
  }
}
