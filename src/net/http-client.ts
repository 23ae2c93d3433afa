import type net from 'node:net';
import { Client, errors as undiciErrors } from 'undici';
import { ProbeError, type ErrorCode } from '../core/errors.js';

/**
 * HTTP/1.1 over a socket a kind dialled itself (so resolve, connect and TLS are real, timed phases
 * and the connection is the run's own, never a pooled one). undici's own timeouts are off: the
 * run's deadline and the kind's per-step limits bound every wait.
 */
export function clientOverSocket(origin: string, socket: net.Socket): Client {
  closeWithError(socket);
  // The callback must come asynchronously: undici is still inside its resume loop when it asks.
  return new Client(origin, {
    connect: (_opts, cb) => queueMicrotask(() => cb(null, socket)),
    pipelining: 0,
    headersTimeout: 0,
    bodyTimeout: 0,
  });
}

// What the client is destroyed with once its exchange is over. One shared error: undici would
// otherwise make a new one per run and the socket's destroy() formats each one's stack trace
// (together about 60 us of CPU per run).
const EXCHANGE_OVER = Object.assign(new Error('the exchange is over'), { code: 'FP_EXCHANGE_OVER' satisfies ErrorCode });

/** Closes a client made by clientOverSocket after its exchange, however the exchange ended. */
export function endClient(client: Client): Promise<void> {
  return client.destroy(EXCHANGE_OVER).catch(() => {});
}

/** Why we closed a socket ourselves (a run's abort or teardown), as undici sees it. */
class ClosedByProbe extends Error {
  override name = 'AbortError';
  readonly code: ErrorCode = 'FP_CLOSED_BY_PROBE';
  constructor() {
    super('connection closed by fleetprobe');
  }
}

// Both shared, like EXCHANGE_OVER: a stream's destroy(err) formats err's stack trace, and these are
// the errors of an ordinary run's close (nothing reads them once the exchange is over).
const CLOSED_BY_PROBE = new ClosedByProbe();
// What undici closes the socket with after a complete answer marked `Connection: close` (most
// probes': their targets close, and every run dials afresh). Same class, code and message as the
// one undici makes each time, which is all undici (and anything after it) looks at.
const ANSWER_COMPLETE = new undiciErrors.InformationalError('reset');

/**
 * undici ends a response that has no length (delimited by the connection's close) when its socket
 * closes without an error, even if the request was aborted meanwhile, and then fails its own
 * assert(!this.aborted) inside the socket's close handler: an uncaught exception that ends the
 * process (a run timing out in the middle of such a body was enough; found by
 * test/reliability/fuzz.test.ts). A socket we close before the peer ended it never ends a message,
 * so our closes carry an error, which undici records instead of completing the message. A close
 * after the peer's FIN (Node's own, once both sides ended) stays a plain one.
 */
function closeWithError(socket: net.Socket): void {
  // undici listens for errors itself while it uses the socket; this one covers the time after.
  socket.on('error', () => {});
  const destroy = socket.destroy.bind(socket);
  socket.destroy = (err?: Error) => destroy(err ? sharedIfComplete(err) : socket.readableEnded ? undefined : CLOSED_BY_PROBE);
}

function sharedIfComplete(err: Error): Error {
  return err instanceof undiciErrors.InformationalError && err.message === 'reset' ? ANSWER_COMPLETE : err;
}

/**
 * undici's HTTPParserError carries no code (it looks llhttp's error number up in a name->number
 * map), so classifyError could not tell a non-HTTP answer from a bug of ours: name it here.
 */
export function asProtocolError(err: unknown): unknown {
  if (err instanceof undiciErrors.HTTPParserError && !(err as { code?: string }).code) {
    return new ProbeError('protocol', `the answer is not valid HTTP/1.1: ${(err as Error).message}`, { cause: err });
  }
  return err;
}
