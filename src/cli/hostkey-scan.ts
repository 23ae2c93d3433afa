import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import ssh2 from 'ssh2';
import { ProbeError } from '../core/errors.js';
import type { ProbeContext } from '../core/kind.js';
import { Condition } from '../net/ssh-client.js';

/**
 * Collecting an SSH server's host keys, as `ssh-keyscan` does: one handshake per key type, because
 * a server shows only the one key of the type the handshake agreed on. Each key is taken only after
 * the server has proved it holds the private half (ssh2 checks the key exchange's signature before
 * it emits `handshake`); authentication is never attempted.
 */

/** The key types fleetprobe can check, each with the host-key algorithms that present it. */
export const KEY_TYPES: readonly { type: string; algorithms: string[] }[] = [
  { type: 'ssh-ed25519', algorithms: ['ssh-ed25519'] },
  { type: 'ecdsa-sha2-nistp256', algorithms: ['ecdsa-sha2-nistp256'] },
  { type: 'ecdsa-sha2-nistp384', algorithms: ['ecdsa-sha2-nistp384'] },
  { type: 'ecdsa-sha2-nistp521', algorithms: ['ecdsa-sha2-nistp521'] },
  { type: 'ssh-rsa', algorithms: ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] },
];

/**
 * A run context for one connection of a command (no probe, no metrics): every network step of
 * src/net takes one. Its signal aborts with a `timeout` ProbeError after `timeoutMs`.
 */
export function oneShotContext(timeoutMs: number, what: string, log: Logger): { ctx: ProbeContext; done(): void } {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new ProbeError('timeout', `${what}: no answer within ${timeoutMs}ms`)), timeoutMs);
  const deadline = Date.now() + timeoutMs;
  const ctx: ProbeContext = {
    signal: controller.signal,
    log,
    deadline,
    remainingMs: () => Math.max(0, deadline - Date.now()),
    async phase(_name, fn) {
      controller.signal.throwIfAborted();
      return fn();
    },
    observe() {},
    progress() {},
    teardown() {},
    state: (init) => init(),
  };
  return {
    ctx,
    done() {
      clearTimeout(timer);
      // Whatever is still tied to the signal (the socket) closes with the connection's end.
      if (!controller.signal.aborted) controller.abort(new ProbeError('timeout', `${what}: finished`));
    },
  };
}

/**
 * One handshake over `stream`, offering only `algorithms`. Resolves with the key blob the server
 * proved it holds, or undefined when it has no key of that type; rejects on anything else (not SSH,
 * a close, the signal). Closes the client and the stream either way.
 */
export async function handshakeKey(ctx: ProbeContext, stream: Duplex, algorithms: string[], where: string): Promise<Buffer | undefined> {
  const client = new ssh2.Client();
  let presented: Buffer | undefined;
  let handshaken = false;
  let closed = false;
  let failure: Error | undefined;
  const changed = new Condition();
  client.on('handshake', () => ((handshaken = true), changed.notify()));
  client.on('error', (err) => ((failure ??= err), changed.notify()));
  client.on('close', () => ((closed = true), changed.notify()));
  try {
    client.connect({
      sock: stream as never,
      username: 'fleetprobe-hostkey',
      // Accepted here so the handshake goes on to the signature check; kept only after it.
      hostVerifier: (key: Buffer) => ((presented = key), true),
      algorithms: { serverHostKey: algorithms as never },
      readyTimeout: 0,
      ident: 'fleetprobe',
    });
    let offered = true;
    await changed.wait(ctx.signal, () => {
      if (handshaken) return true;
      if (failure && /no matching host key/i.test(failure.message)) return !(offered = false);
      // A socket error keeps its code (reset, refused: `connect`); anything else is the peer's SSH.
      if (failure)
        throw (failure as { code?: unknown }).code
          ? failure
          : new ProbeError('protocol', `SSH handshake with ${where} failed: ${failure.message}`, { cause: failure });
      if (closed) throw Object.assign(new Error(`${where} closed the connection before the SSH handshake finished`), { code: 'ECONNRESET' });
      return false;
    });
    return offered ? presented : undefined;
  } finally {
    try {
      client.end();
    } catch {
      /* already closed */
    }
    setImmediate(() => stream.destroy());
  }
}
