import type net from 'node:net';
import type { Duplex } from 'node:stream';
import ssh2, { type Client, type ParsedKey } from 'ssh2';
import { ProbeError } from '../core/errors.js';
import { excerpt } from '../core/excerpt.js';
import type { ProbeContext } from '../core/kind.js';
import { withStepTimeout } from './dial.js';
import { hostKeyCheck, type HostKeyCheck, type HostKeyPolicy } from './known-hosts.js';

/**
 * The SSH client side of a probe: key exchange (`handshake`) and user authentication (`auth`) with
 * ssh2's Client over a stream someone else dialled (a TCP socket, a `direct-tcpip` channel, a
 * CONNECT tunnel), so every byte path is measured and no process is forked.
 */

/** The run context the SSH steps use; a batch of sessions gives each session its own. */
export type PhaseRunner = ProbeContext;

/** Our identity: a private key parsed once at config load, or an ssh-agent socket. Never printed. */
export interface SshCredentials {
  privateKey?: ParsedKey;
  /** Path of an ssh-agent socket (SSH_AUTH_SOCK), used when there is no private key. */
  agentSocket?: string;
}

export interface SshConnectOptions {
  /** The server as the probe names it: looked up in known_hosts and shown in messages. */
  host: string;
  port: number;
  user: string;
  credentials: SshCredentials;
  hostKeys: HostKeyPolicy;
  /** What the server is to the probe, for messages: "SSH proxy", "bastion", "device". */
  role: string;
  keepaliveMs: number;
  handshakeTimeoutMs: number;
  authTimeoutMs: number;
}

/** A step with its own time limit (dial.ts's withStepTimeout) as phase `name`. */
export function inPhase<T>(t: PhaseRunner, name: string, timeoutMs: number, what: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  return t.phase(name, () => withStepTimeout(t, timeoutMs, what, (step) => fn(step.signal)));
}

/**
 * Waiting on state that event handlers update: `wait` re-runs `test` on every `notify()` until it
 * returns true (resolve) or throws (reject), or the signal aborts. Handlers record, tests decide.
 */
export class Condition {
  private readonly waiters = new Set<() => void>();
  notify(): void {
    for (const w of [...this.waiters]) w();
  }
  wait(signal: AbortSignal, test: () => boolean): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const finish = (err?: unknown) => {
        this.waiters.delete(check);
        signal.removeEventListener('abort', onAbort);
        if (err === undefined) resolve();
        else reject(err);
      };
      const check = () => {
        try {
          if (test()) finish();
        } catch (err) {
          finish(err ?? new Error('wait failed'));
        }
      };
      const onAbort = () => finish(signal.reason);
      if (signal.aborted) return onAbort();
      this.waiters.add(check);
      signal.addEventListener('abort', onAbort, { once: true });
      check();
    });
  }
}

// What the peer sent before the handshake, kept to quote when it closes first (sshd's "Exceeded
// MaxStartups", a banner of something that is not SSH): at most this much, redacted, on one line.
const MAX_HEARD_BYTES = 512;
const MAX_QUOTED_CHARS = 200;

/** Taps `stream` for its first bytes, without taking them from ssh2 (see the `newListener` note). */
function hearPeer(stream: Duplex): { quote(): string; stop(): void } {
  const chunks: Buffer[] = [];
  let size = 0;
  const hear = (d: Buffer) => {
    chunks.push(d.subarray(0, MAX_HEARD_BYTES - size));
    size += Math.min(d.length, MAX_HEARD_BYTES - size);
    if (size >= MAX_HEARD_BYTES) stream.off('data', hear);
  };
  // A 'data' listener of ours put the stream in flowing mode before ssh2 listens (it attaches its
  // own after a promise), and ssh2 would miss the bytes: tap it only when ssh2 starts listening.
  const onListener = (event: string | symbol) => {
    if (event !== 'data') return;
    stream.off('newListener', onListener);
    stream.on('data', hear);
  };
  if (stream.listenerCount('data') > 0) stream.on('data', hear);
  else stream.on('newListener', onListener);
  return {
    quote() {
      const text = Buffer.concat(chunks)
        .toString('latin1')
        .replace(/[^\x20-\x7e]+/g, ' ')
        .trim();
      return text ? `; the server said: "${excerpt(text, { max: MAX_QUOTED_CHARS, ellipsisWithin: true, redact: true })}"` : '';
    },
    stop() {
      stream.off('newListener', onListener);
      stream.off('data', hear);
    },
  };
}

type Level = string | undefined;
const levelOf = (err: unknown): Level => (err as { level?: string } | null)?.level;

/** One place that turns what ssh2 reports into a reason a user can act on. */
function translate(err: unknown, opts: SshConnectOptions, stage: 'handshake' | 'auth', refusal: string | undefined, heard = ''): unknown {
  if (err instanceof ProbeError) return err;
  const where = `${opts.role} ${opts.host}:${opts.port}`;
  const msg = (err as Error)?.message ?? String(err);
  if (refusal) return new ProbeError('hostkey', `${where}: ${refusal}`, { cause: err });
  const level = levelOf(err);
  if (level === 'client-authentication' || level === 'agent' || (stage === 'auth' && /authentication|agent/i.test(msg))) {
    const how = opts.credentials.privateKey ? `key ${opts.credentials.privateKey.type}` : 'the keys of the ssh-agent';
    return new ProbeError('auth', `${where} refused user "${opts.user}" with ${how}: ${msg}`, { cause: err });
  }
  if (level === 'client-timeout') return new ProbeError('timeout', `${where}: ${msg}`, { cause: err });
  if (level === 'client-socket') return err; // a Node socket error: classified by its code
  // ssh2's identification parser throws bare Errors with no level ("Invalid header: expected
  // newline" for a peer that is not SSH): during the handshake those are the peer's fault. Other
  // classes (TypeError, RangeError) stay unexplained, as the bugs of ours they would be.
  const bare = (err as Error | null)?.constructor === Error && !(err as { code?: unknown }).code;
  if (level === 'protocol' || level === 'handshake' || (stage === 'handshake' && bare && level === undefined)) {
    return new ProbeError('protocol', `${stage === 'handshake' ? 'SSH handshake' : 'SSH authentication'} with ${where} failed: ${msg}${heard}`, {
      cause: err,
    });
  }
  return err;
}

// Shorter than "SSH-2.0-": a peer that closed after this little sent no banner, it hung up in it.
const BANNER_PREFIX_BYTES = 8;

/**
 * ssh2 says "Connection lost before handshake" when the stream ends before a whole identification
 * line, whether the peer answered in another protocol and closed (`protocol`) or the connection
 * was cut inside the banner. A reset can reach Node as a plain end of stream (when a write took
 * the error first), so the bytes received tell them apart: fewer than a banner's first 8 is a
 * connection cut (`connect`).
 */
function cutInBanner(err: unknown, stream: Duplex, opts: SshConnectOptions): Error | undefined {
  const bytesRead = (stream as Partial<net.Socket>).bytesRead;
  if ((err as Error | null)?.message !== 'Connection lost before handshake' || typeof bytesRead !== 'number' || bytesRead >= BANNER_PREFIX_BYTES)
    return undefined;
  const where = `${opts.role} ${opts.host}:${opts.port}`;
  return Object.assign(new Error(`${where} closed the connection inside its SSH banner (after ${bytesRead} bytes)`), { code: 'ECONNRESET', cause: err });
}

/**
 * What we offer, led by what is fast here: curve25519 key exchange, AES-GCM (AES-NI) and
 * chacha20-poly1305, no compression; a few widely deployed fallbacks after them. ssh2's defaults
 * lead with NIST ECDH and offer zlib. The host-key algorithms follow the known_hosts entries when
 * they say which (else ssh2's list, led by ssh-ed25519).
 */
const KEX = ['curve25519-sha256', 'curve25519-sha256@libssh.org', 'ecdh-sha2-nistp256', 'diffie-hellman-group14-sha256', 'diffie-hellman-group16-sha512'];
const CIPHERS = ['aes128-gcm@openssh.com', 'chacha20-poly1305@openssh.com', 'aes256-gcm@openssh.com', 'aes128-ctr', 'aes256-ctr'];
const MACS = ['hmac-sha2-256-etm@openssh.com', 'hmac-sha2-256', 'hmac-sha2-512'];
function offer(serverHostKey: string[] | undefined): ssh2.Algorithms {
  // Copies: ssh2 keeps the lists it is given.
  return {
    kex: [...KEX],
    cipher: [...CIPHERS],
    hmac: [...MACS],
    compress: ['none'],
    ...(serverHostKey ? { serverHostKey: [...serverHostKey] } : {}),
  } as ssh2.Algorithms;
}

/**
 * OpenSSH's sshd announces all its host keys after authentication (`hostkeys-00@openssh.com`, for
 * UpdateHostKeys). ssh2 answers by asking the server to prove each one (a round trip, a signature
 * per key on the server and a verification per key here) only to emit a 'hostkeys' event that a
 * probe never reads; OpenSSH's own client does not ask when given its known_hosts file. The one
 * host key that matters was verified in the key exchange. This reaches into ssh2's protocol
 * handlers (private: test/unit/ssh-client-handlers.test.ts fails if they move); without them,
 * ssh2's default stands.
 */
function ignoreHostKeyAnnouncements(client: Client): void {
  type GlobalRequest = (p: unknown, name: string, wantReply: boolean, data: unknown) => void;
  const handlers = (client as unknown as { _protocol?: { _handlers?: { GLOBAL_REQUEST?: GlobalRequest } } })._protocol?._handlers;
  const original = handlers?.GLOBAL_REQUEST;
  if (!handlers || typeof original !== 'function') return;
  handlers.GLOBAL_REQUEST = (p, name, wantReply, data) => {
    if (name === 'hostkeys-00@openssh.com' && !wantReply) return;
    original(p, name, wantReply, data);
  };
}

/**
 * Does the SSH handshake and authentication over `stream`, as phases `handshake` and `auth`.
 * The returned client is authenticated; the caller closes it with `closeClient`. On failure
 * everything (client and stream) is closed before the error is thrown.
 */
export async function openSshClient(t: PhaseRunner, stream: Duplex, opts: SshConnectOptions): Promise<Client> {
  const client = new ssh2.Client();
  // Read in the handshake phase (a known_hosts file is read asynchronously, at most once per change).
  let check: HostKeyCheck = { verify: () => false };
  // Both milestones are watched from the start: ssh2 emits them as soon as the bytes arrive, which
  // may be before the phase that waits for them begins.
  let failure: unknown;
  let closed = false;
  let handshaken = false;
  let ready = false;
  const changed = new Condition();
  client.on('handshake', () => ((handshaken = true), changed.notify()));
  client.on('ready', () => ((ready = true), changed.notify()));
  client.on('error', (err) => ((failure ??= err), changed.notify()));
  client.on('close', () => ((closed = true), changed.notify()));
  const peer = hearPeer(stream);
  // Quoted only when the connection ends before the handshake: after it, the bytes are SSH's.
  const heard = (stage: 'handshake' | 'auth') => (stage === 'handshake' && !handshaken ? peer.quote() : '');

  const waitUntil = (done: () => boolean, signal: AbortSignal, stage: 'handshake' | 'auth') =>
    changed.wait(signal, () => {
      if (failure !== undefined) throw translate(cutInBanner(failure, stream, opts) ?? failure, opts, stage, check.refusal, heard(stage));
      if (done()) return true;
      if (closed) {
        const what = stage === 'handshake' ? 'before the SSH handshake finished' : 'during SSH authentication';
        throw Object.assign(new Error(`${opts.role} ${opts.host}:${opts.port} closed the connection ${what}${heard(stage)}`), { code: 'ECONNRESET' });
      }
      return false;
    });

  try {
    await inPhase(t, 'handshake', opts.handshakeTimeoutMs, `SSH handshake with ${opts.role} ${opts.host}:${opts.port}`, async (signal) => {
      check = await hostKeyCheck(opts.hostKeys, opts.host, opts.port);
      client.connect({
        sock: stream as never,
        username: opts.user,
        // One method, no `none` probe first: a round trip saved, and a refusal is unambiguous.
        // (ssh2 takes an already-parsed key only through authHandler, so a key is parsed once.)
        authHandler: [
          opts.credentials.privateKey
            ? { type: 'publickey', username: opts.user, key: opts.credentials.privateKey }
            : { type: 'agent', username: opts.user, agent: opts.credentials.agentSocket! },
        ] as never,
        hostVerifier: (key: Buffer) => check.verify(key),
        algorithms: offer(check.algorithms),
        keepaliveInterval: opts.keepaliveMs,
        keepaliveCountMax: 3,
        readyTimeout: 0,
        ident: 'fleetprobe',
      });
      ignoreHostKeyAnnouncements(client);
      return waitUntil(() => handshaken, signal, 'handshake').finally(() => peer.stop());
    });
    await inPhase(t, 'auth', opts.authTimeoutMs, `SSH authentication of "${opts.user}" to ${opts.role} ${opts.host}:${opts.port}`, (signal) =>
      waitUntil(() => ready, signal, 'auth'),
    );
  } catch (err) {
    closeClient(client, stream);
    throw err;
  }
  // After `ready`, errors (keepalive timeout, socket reset) are the session's to report: the
  // listener above stays so an 'error' event never goes unhandled.
  return client;
}

/** Closes an SSH client and the stream under it, whatever state they are in. Idempotent. */
export function closeClient(client: Client, stream?: Duplex): void {
  try {
    client.end();
  } catch {
    /* already closed */
  }
  // end() queued a DISCONNECT: let it reach the socket before tearing the stream down.
  if (stream) setImmediate(() => stream.destroy());
}
