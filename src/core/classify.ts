import { ProbeError } from './errors.js';
import type { Reason } from './reasons.js';

// Node and OpenSSL error codes by what they mean to a user. Kept as data so the mapping reads as a
// table and a test can walk it.
const DNS_CODES = new Set(['ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL', 'EAI_NONAME', 'ENODATA', 'ESERVFAIL', 'ENOTIMP', 'EREFUSED']);
const CONNECT_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENETDOWN',
  'EPIPE',
  'EADDRNOTAVAIL',
  'ECONNABORTED',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'ERR_SOCKET_CLOSED',
  'ENOENT',
]);
// The prober's own limits, not the target's fault: an alert must not send anyone to the platform.
const RESOURCE_CODES = new Set(['EMFILE', 'ENFILE']);
const TIMEOUT_CODES = new Set(['ETIMEDOUT', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ERR_SOCKET_CONNECTION_TIMEOUT']);
const PROTOCOL_CODES = new Set([
  'HPE_INVALID_CONSTANT',
  'HPE_INVALID_VERSION',
  'HPE_INVALID_STATUS',
  'HPE_INVALID_HEADER_TOKEN',
  'HPE_INVALID_CHUNK_SIZE',
  'HPE_UNEXPECTED_CONTENT_LENGTH',
  'HPE_CR_EXPECTED',
  'HPE_LF_EXPECTED',
  'UND_ERR_INFO',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
  'UND_ERR_HEADERS_OVERFLOW',
  'HPE_HEADER_OVERFLOW',
  'UND_ERR_RESPONSE_STATUS_CODE',
  'HPE_INVALID_METHOD',
]);

function isTlsCode(code: string): boolean {
  return (
    code.startsWith('ERR_TLS_') ||
    code.startsWith('ERR_SSL_') ||
    code.startsWith('CERT_') ||
    code.includes('CERT') ||
    code.startsWith('UNABLE_TO_') ||
    code === 'EPROTO' ||
    code === 'HOSTNAME_MISMATCH' ||
    code === 'SELF_SIGNED_CERT_IN_CHAIN' ||
    code === 'DEPTH_ZERO_SELF_SIGNED_CERT'
  );
}

/** Every error in a chain: the error, its `cause`s and the members of AggregateErrors. */
export function* walkErrorChain(err: unknown, depth = 0): Generator<unknown> {
  if (err == null || depth > 8) return;
  yield err;
  if (err instanceof AggregateError) for (const e of err.errors) yield* walkErrorChain(e, depth + 1);
  if (typeof err === 'object' && 'cause' in err) yield* walkErrorChain((err as { cause: unknown }).cause, depth + 1);
}

export function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * Decides the failure reason of anything a probe kind threw. A ProbeError anywhere in the chain
 * wins (the kind knew); then the first error code we recognise; then `internal`, because an error
 * we cannot explain is most likely ours.
 */
export function classifyError(err: unknown): Reason {
  for (const e of walkErrorChain(err)) if (e instanceof ProbeError) return e.reason;
  for (const e of walkErrorChain(err)) {
    const code = errorCode(e);
    if (!code) continue;
    if (RESOURCE_CODES.has(code)) return 'resources';
    if (DNS_CODES.has(code)) return 'dns';
    if (TIMEOUT_CODES.has(code)) return 'timeout';
    if (CONNECT_CODES.has(code)) return 'connect';
    if (PROTOCOL_CODES.has(code) || code.startsWith('HPE_')) return 'protocol';
    if (isTlsCode(code)) return 'tls';
  }
  for (const e of walkErrorChain(err)) {
    const name = (e as { name?: unknown } | null)?.name;
    if (name === 'TimeoutError') return 'timeout';
  }
  return 'internal';
}

/** A one-line description of an error chain: "what failed: why (CODE)". */
/** RFC 4254 5.1: why a peer refused to open an SSH channel. */
const CHANNEL_OPEN_FAILURES: Record<number, string> = {
  1: 'administratively prohibited',
  2: 'connect failed',
  3: 'unknown channel type',
  4: 'resource shortage',
};

/**
 * A message that ends on a colon because the peer gave no detail (ssh2's "(SSH) Channel open
 * failure: " with an empty description) ends with what is known instead: the RFC 4254 reason code.
 */
function withoutEmptyTail(msg: string, e: unknown): string {
  if (!/:\s*$/.test(msg)) return msg;
  const reason = (e as { reason?: unknown } | null)?.reason;
  const known = typeof reason === 'number' ? CHANNEL_OPEN_FAILURES[reason] : undefined;
  return msg.replace(/:\s*$/, '') + (known ? `: ${known} (reason ${reason}), no description given` : ' (no detail given)');
}

/**
 * OpenSSL's own line, `80CC…:error:0A00010B:SSL routines:ssl3_get_record:wrong version number:…/ssl3_record.c:350:`,
 * as its reason ("wrong version number"): the rest is OpenSSL's internals, and the error code follows anyway.
 */
function opensslReason(msg: string): string {
  return /^[0-9A-F]+:error:[0-9A-F]+:[^:\n]*:[^:\n]*:([^:\n]+):/.exec(msg)?.[1] ?? msg;
}

export function describeError(err: unknown): string {
  const parts: string[] = [];
  for (const e of walkErrorChain(err)) {
    if (e instanceof AggregateError && e.errors.length && !e.message) continue;
    // Some libraries reject with plain objects ({ code, message }): use their message, not "[object Object]".
    const objMsg = (e as { message?: unknown } | null)?.message;
    const msg = withoutEmptyTail(opensslReason(e instanceof Error ? e.message : typeof objMsg === 'string' ? objMsg : String(e)), e);
    const code = errorCode(e)?.startsWith('FP_') ? undefined : errorCode(e);
    const text = code && msg && !msg.includes(code) ? `${msg} (${code})` : msg || code || '';
    if (text && !parts.some((p) => p.includes(text))) parts.push(text);
  }
  return parts.join(': ') || 'unknown error';
}
