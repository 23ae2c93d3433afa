import { describe, expect, it } from 'vitest';
import { classifyError, describeError, errorCode, walkErrorChain } from '../../src/core/classify.js';
import { ConfigError, ProbeError } from '../../src/core/errors.js';
import { REASONS, isReason } from '../../src/core/reasons.js';
import { RunTimeoutError, ShutdownError } from '../../src/core/run.js';

function coded(code: string, message = `failed with ${code}`): Error {
  return Object.assign(new Error(message), { code });
}

// The codes Node, undici and OpenSSL actually produce, by the reason a user should see.
const TABLE: Record<string, string[]> = {
  dns: ['ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL', 'EAI_NONAME', 'ENODATA', 'ESERVFAIL', 'ENOTIMP', 'EREFUSED'],
  connect: [
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
  ],
  resources: ['EMFILE', 'ENFILE'],
  timeout: ['ETIMEDOUT', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ERR_SOCKET_CONNECTION_TIMEOUT'],
  tls: [
    'CERT_HAS_EXPIRED',
    'CERT_NOT_YET_VALID',
    'DEPTH_ZERO_SELF_SIGNED_CERT',
    'SELF_SIGNED_CERT_IN_CHAIN',
    'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
    'ERR_TLS_CERT_ALTNAME_INVALID',
    'ERR_SSL_WRONG_VERSION_NUMBER',
    'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE',
    'EPROTO',
    'HOSTNAME_MISMATCH',
    'CERT_REVOKED',
  ],
  protocol: [
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
    'HPE_SOMETHING_NEW',
  ],
};

describe('classifyError', () => {
  for (const [reason, codes] of Object.entries(TABLE)) {
    it(`maps ${reason} codes, bare, as a cause and inside AggregateErrors`, () => {
      for (const code of codes) {
        const forms: unknown[] = [
          coded(code),
          new TypeError('fetch failed', { cause: coded(code) }),
          new Error('a', { cause: new Error('b', { cause: new Error('c', { cause: coded(code) }) }) }),
          new AggregateError([new Error('no code here'), coded(code)], 'all attempts failed'),
          new TypeError('fetch failed', { cause: new AggregateError([coded(code)]) }),
          // Node's own AggregateError from happy eyeballs carries the code itself.
          Object.assign(new AggregateError([new Error('x')]), { code }),
          // Some libraries reject with plain objects.
          { code, message: 'plain object' },
        ];
        for (const err of forms) expect(classifyError(err), `${code} in ${describeError(err)}`).toBe(reason);
      }
    });
  }

  it('a ProbeError anywhere in the chain wins, even over a recognised code found earlier', () => {
    expect(classifyError(new ProbeError('auth', 'token refused'))).toBe('auth');
    expect(classifyError(Object.assign(new Error('outer', { cause: new ProbeError('denied', 'no') }), { code: 'ECONNREFUSED' }))).toBe('denied');
    expect(classifyError(new AggregateError([coded('ENOTFOUND'), new ProbeError('hostkey', 'key mismatch')]))).toBe('hostkey');
    expect(classifyError(new ProbeError('device_offline', 'offline', { cause: coded('ETIMEDOUT') }))).toBe('device_offline');
  });

  it('the first recognised code in the chain wins', () => {
    expect(classifyError(Object.assign(new Error('outer', { cause: coded('ECONNREFUSED') }), { code: 'ENOTFOUND' }))).toBe('dns');
    expect(classifyError(Object.assign(new Error('outer', { cause: coded('ECONNREFUSED') }), { code: 'ERR_SOMETHING' }))).toBe('connect');
  });

  it('TimeoutError by name is a timeout (AbortSignal.timeout, our own deadline)', async () => {
    const signal = AbortSignal.timeout(1);
    await new Promise((r) => setTimeout(r, 20));
    expect(signal.aborted).toBe(true);
    expect(classifyError(signal.reason)).toBe('timeout');
    expect(classifyError(new Error('wrapped', { cause: signal.reason }))).toBe('timeout');
    expect(classifyError(new RunTimeoutError(100))).toBe('timeout');
  });

  it('anything unexplained is internal', () => {
    for (const err of [
      new Error('boom'),
      new TypeError('x is not a function'),
      coded('ERR_INVALID_ARG_TYPE'),
      coded('UND_ERR_ABORTED'),
      new ShutdownError(),
      new ConfigError([{ file: 'f.yaml', path: 'x', message: 'bad' }]),
      new AggregateError([]),
      Object.assign(new Error('numeric code'), { code: 42 }),
      'a string',
      42,
      null,
      undefined,
      {},
    ]) {
      expect(classifyError(err)).toBe('internal');
    }
  });

  it('always returns a known reason, and never loops on cyclic chains', () => {
    const a = new Error('a') as Error & { cause?: unknown };
    const b = new Error('b', { cause: a });
    a.cause = b;
    expect(classifyError(a)).toBe('internal');
    const agg = new AggregateError([]) as AggregateError & { errors: unknown[] };
    agg.errors.push(agg);
    expect(classifyError(agg)).toBe('internal');
    expect(isReason(classifyError(a))).toBe(true);
    for (const r of REASONS) expect(classifyError(new ProbeError(r, r))).toBe(r);
  });
});

describe('walkErrorChain', () => {
  it('yields the error, its causes and the members of AggregateErrors, depth first', () => {
    const leaf1 = coded('ENOTFOUND');
    const leaf2 = coded('ECONNREFUSED');
    const agg = new AggregateError([leaf1, leaf2], 'both failed', { cause: 'why' });
    const top = new Error('top', { cause: agg });
    expect([...walkErrorChain(top)]).toEqual([top, agg, leaf1, leaf2, 'why']);
    expect([...walkErrorChain(null)]).toEqual([]);
    expect([...walkErrorChain(undefined)]).toEqual([]);
  });

  it('is bounded on deep or cyclic chains', () => {
    const a = new Error('a') as Error & { cause?: unknown };
    a.cause = a;
    expect([...walkErrorChain(a)].length).toBeLessThanOrEqual(10);
  });
});

describe('errorCode', () => {
  it('reads string codes only', () => {
    expect(errorCode(coded('EPIPE'))).toBe('EPIPE');
    expect(errorCode({ code: 20 })).toBeUndefined();
    expect(errorCode(null)).toBeUndefined();
    expect(errorCode('ENOTFOUND')).toBeUndefined();
  });
});

describe('describeError', () => {
  it('joins the chain as "what failed: why (CODE)"', () => {
    const err = new TypeError('fetch failed', { cause: coded('ECONNREFUSED', 'connect refused 10.0.0.1:443') });
    expect(describeError(err)).toBe('fetch failed: connect refused 10.0.0.1:443 (ECONNREFUSED)');
  });

  it('does not repeat a code the message already names, nor a message already included', () => {
    expect(describeError(coded('ENOTFOUND', 'getaddrinfo ENOTFOUND api.example'))).toBe('getaddrinfo ENOTFOUND api.example');
    const inner = coded('ETIMEDOUT', 'connect ETIMEDOUT');
    expect(describeError(new Error('connect ETIMEDOUT', { cause: inner }))).toBe('connect ETIMEDOUT');
  });

  it('hides our internal FP_ codes and uses the code when there is no message', () => {
    expect(describeError(new ProbeError('assertion', 'expected 200, got 500'))).toBe('expected 200, got 500');
    expect(describeError(new RunTimeoutError(100))).toBe('run deadline of 100ms exceeded');
    expect(describeError(coded('ECONNRESET', ''))).toBe('ECONNRESET');
  });

  it('skips an AggregateError without a message, describing its members instead', () => {
    const agg = new AggregateError([coded('ECONNREFUSED', 'connect ECONNREFUSED ::1:443'), coded('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:443')]);
    expect(describeError(agg)).toBe('connect ECONNREFUSED ::1:443: connect ECONNREFUSED 127.0.0.1:443');
  });

  it('describes non-errors and empty chains', () => {
    expect(describeError('plain text')).toBe('plain text');
    expect(describeError(null)).toBe('unknown error');
    expect(describeError(undefined)).toBe('unknown error');
    expect(describeError(new Error(''))).toBe('unknown error');
  });

  it('describes plain objects by their message, not as [object Object]', () => {
    expect(describeError({ code: 'ENOTFOUND', message: 'lookup failed' })).toBe('lookup failed (ENOTFOUND)');
  });

  it("says OpenSSL's reason once, not its internals twice (a TLS failure wrapping its cause)", () => {
    const openssl = Object.assign(
      new Error('80CC61D7877F0000:error:0A00010B:SSL routines:ssl3_get_record:wrong version number:../deps/openssl/openssl/ssl/record/ssl3_record.c:350:\n'),
      { code: 'ERR_SSL_WRONG_VERSION_NUMBER' },
    );
    expect(describeError(openssl)).toBe('wrong version number (ERR_SSL_WRONG_VERSION_NUMBER)');
    const wrapped = new ProbeError('tls', `TLS handshake with x failed: ${describeError(openssl)}`, { cause: openssl });
    expect(describeError(wrapped)).toBe('TLS handshake with x failed: wrong version number (ERR_SSL_WRONG_VERSION_NUMBER)');
  });
});
