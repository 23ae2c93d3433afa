import type { Client, ClientChannel } from 'ssh2';
import { ProbeError } from '../core/errors.js';
import { excerpt } from '../core/excerpt.js';
import { Condition } from './ssh-client.js';

/**
 * What the channel of a probe's command did, recorded by its event handlers: stdout (bounded),
 * stderr (bounded), the exit status, close and error, of the channel and of the client under it.
 * Handlers only record and notify `changed`; the waits of each mode decide what it means.
 */

const MAX_STDERR_BYTES = 4096;

/** A bounded, redacted, one-line excerpt of remote output for a failure message. */
export function outputExcerpt(text: string, max = 200): string {
  return excerpt(text, { max, redact: true, collapse: true, empty: '(empty)' });
}

export class ChannelWatch {
  private readonly chunks: Buffer[] = [];
  stdoutBytes = 0;
  stderr = '';
  exit?: { code?: number; signal?: string };
  closed = false;
  error?: unknown;
  readonly changed = new Condition();

  /** `keepBytes`: stdout kept; more is read and dropped. `target`: who runs the command, for messages. */
  constructor(
    readonly keepBytes: number,
    private readonly target: string,
  ) {}

  /** Stdout so far, as text. */
  text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }

  /** Records what the channel does; called inside ssh2's exec callback, before later packets are parsed. */
  listen(ch: ClientChannel): void {
    ch.on('data', (d: Buffer) => {
      if (this.stdoutBytes < this.keepBytes) {
        this.chunks.push(d);
        this.stdoutBytes += d.length;
      }
      this.changed.notify();
    });
    ch.stderr.on('data', (d: Buffer) => {
      if (this.stderr.length < MAX_STDERR_BYTES) this.stderr += d.toString('utf8').slice(0, MAX_STDERR_BYTES - this.stderr.length);
      this.changed.notify();
    });
    ch.on('exit', (code: number | null, sig?: string) => {
      this.exit = { code: code ?? undefined, signal: sig ?? undefined };
      this.changed.notify();
    });
    ch.on('close', () => ((this.closed = true), this.changed.notify()));
    ch.on('error', (err: Error) => ((this.error ??= err), this.changed.notify()));
  }

  /** The client may die under the channel (keepalive timeout, reset): that ends the waits too. Returns the detach function. */
  watchClient(client: Client): () => void {
    const onError = (err: Error) => ((this.error ??= err), this.changed.notify());
    const onClose = () => ((this.closed = true), this.changed.notify());
    client.on('error', onError);
    client.on('close', onClose);
    return () => {
      client.off('error', onError);
      client.off('close', onClose);
    };
  }

  /** The session ended before `awaited` came (`when`: "mid-command"). */
  cut(when: string, awaited: string): ProbeError {
    const stderr = this.stderr ? `; stderr: ${outputExcerpt(this.stderr)}` : '';
    return new ProbeError(
      'connect',
      `the session with ${this.target} was cut ${when} (no ${awaited} came; stdout so far: ${outputExcerpt(this.text())}${stderr})`,
      {
        cause: this.error,
      },
    );
  }
}

/** Closes a command's channel, whatever state it is in, and stops recording it. */
export function closeChannel(channel: ClientChannel): void {
  channel.removeAllListeners('data');
  channel.stderr.removeAllListeners('data');
  try {
    channel.close();
  } catch {
    /* already closed */
  }
  channel.destroy();
}
