import type net from 'node:net';
import { Client, errors as undiciErrors } from 'undici';
import { ProbeError } from '../core/errors.js';

/**
 * HTTP/1.1 over a socket a kind dialled itself (so resolve, connect and TLS are real, timed phases
 * and the connection is the run's own, never a pooled one). undici's own timeouts are off: the
 * run's deadline and the kind's per-step limits bound every wait.
 */
export function clientOverSocket(origin: string, socket: net.Socket): Client {
  // The callback must come asynchronously: undici is still inside its resume loop when it asks.
  return new Client(origin, {
    connect: (_opts, cb) => queueMicrotask(() => cb(null, socket)),
    pipelining: 0,
    headersTimeout: 0,
    bodyTimeout: 0,
  });
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
