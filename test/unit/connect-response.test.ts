import { describe, expect, it } from 'vitest';
import { ProbeError } from '../../src/core/errors.js';
import { ConnectResponseParser, connectStatusError, deviceAuthority } from '../../src/net/connect-tunnel.js';
import { parseHostPort } from '../../src/kinds/shared/host-port.js';

/** The CONNECT answer parser, fed the way networks deliver bytes: whole, split anywhere, coalesced. */

const REAL_200 = 'HTTP/1.0 200 Connection Established\r\nProxy-agent: balena-io/node-tunnel\r\n\r\n';
const BANNER = 'SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n';

function feed(parser: ConnectResponseParser, chunks: Buffer[]) {
  let answer;
  for (const c of chunks) {
    const a = parser.push(c);
    if (a) {
      expect(answer, 'an answer is returned exactly once').toBeUndefined();
      answer = a;
    }
  }
  return answer;
}

function protocolError(fn: () => unknown): ProbeError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ProbeError);
    expect((err as ProbeError).reason).toBe('protocol');
    return err as ProbeError;
  }
  throw new Error('expected a protocol error');
}

describe('ConnectResponseParser', () => {
  it('parses the real proxy answer and keeps the banner that came in the same packet', () => {
    const a = new ConnectResponseParser().push(Buffer.from(REAL_200 + BANNER));
    expect(a).toMatchObject({ httpVersion: '1.0', status: 200, statusText: 'Connection Established', headers: [['proxy-agent', 'balena-io/node-tunnel']] });
    expect(a!.rest.toString()).toBe(BANNER);
  });

  it('gives the same answer and tunneled bytes when split at every byte boundary', () => {
    const whole = Buffer.from(REAL_200 + BANNER);
    for (let i = 1; i < whole.length; i++) {
      const parser = new ConnectResponseParser();
      const first = parser.push(whole.subarray(0, i));
      const answer = first ?? parser.push(whole.subarray(i));
      expect(answer, `split at ${i}`).toBeDefined();
      expect(answer!.status).toBe(200);
      // Split inside the banner: the first push already completes the head and holds part of it.
      const rest = first ? Buffer.concat([first.rest, whole.subarray(i)]) : answer!.rest;
      expect(rest.toString(), `split at ${i}`).toBe(BANNER);
    }
  });

  it('parses an answer that arrives one byte at a time', () => {
    const parser = new ConnectResponseParser();
    const bytes = Buffer.from(REAL_200);
    const answer = feed(
      parser,
      [...bytes].map((b) => Buffer.from([b])),
    );
    expect(answer!.status).toBe(200);
    expect(answer!.rest.length).toBe(0);
  });

  it.each([
    ['HTTP/1.1 with an odd reason phrase', 'HTTP/1.1 200 Tunnel Is Go\r\nVia: 1.1 x\r\n\r\n', 200, 'Tunnel Is Go'],
    ['no reason phrase at all', 'HTTP/1.0 200\r\n\r\n', 200, ''],
    ["tinyproxy's lower-case phrase", 'HTTP/1.0 200 Connection established\r\nProxy-agent: tinyproxy/1.11.1\r\n\r\n', 200, 'Connection established'],
    ['bare LF line ends', 'HTTP/1.0 407 Proxy Authentication Required\n\n', 407, 'Proxy Authentication Required'],
    ['a non-ASCII reason phrase', 'HTTP/1.1 503 Service Indisponible \xe9\r\n\r\n', 503, 'Service Indisponible \xe9'],
  ])('accepts %s', (_name, text, status, statusText) => {
    const a = new ConnectResponseParser().push(Buffer.from(text, 'latin1'));
    expect(a).toMatchObject({ status, statusText });
  });

  it.each([
    ['an SSH banner instead of HTTP', 'SSH-2.0-OpenSSH_9.2\r\n'],
    ['binary garbage', '\x16\x03\x01\x00\xa5\x01'],
    ['HTTP/2', 'HTTP/2 200\r\n\r\n'],
    ['a status that is not three digits', 'HTTP/1.1 20 OK\r\n\r\n'],
    ['a malformed header line', 'HTTP/1.0 200 OK\r\nthis is not a header\r\n\r\n'],
  ])('rejects %s as protocol', (_name, text) => {
    protocolError(() => new ConnectResponseParser().push(Buffer.from(text, 'latin1')));
  });

  it('recognises a non-HTTP peer on its first byte, without waiting for a blank line', () => {
    const err = protocolError(() => new ConnectResponseParser().push(Buffer.from('S')));
    expect(err.message).toContain('not HTTP');
  });

  it('refuses an answer head beyond the size limit', () => {
    const parser = new ConnectResponseParser(256);
    parser.push(Buffer.from('HTTP/1.0 200 OK\r\n'));
    const err = protocolError(() => parser.push(Buffer.from(`X-Pad: ${'a'.repeat(300)}\r\n`)));
    expect(err.message).toContain('longer than 256 bytes');
  });

  it('knows the status line before the head is complete (for a proxy that closes early)', () => {
    const parser = new ConnectResponseParser();
    expect(parser.push(Buffer.from('HTTP/1.0 503 Service Unavailable\r\n'))).toBeUndefined();
    expect(parser.statusLine()).toEqual({ httpVersion: '1.0', status: 503, statusText: 'Service Unavailable' });
  });
});

describe('connectStatusError', () => {
  it.each([
    [200, null],
    [407, 'auth'],
    [401, 'auth'],
    [403, 'denied'],
    [503, 'device_offline'],
    [500, 'device_offline'],
    [502, 'device_offline'],
    [400, 'proxy'],
    [405, 'proxy'],
    [418, 'proxy'],
    [504, 'proxy'],
  ])('HTTP %i → %s', (status, reason) => {
    const err = connectStatusError({ status, statusText: 'Whatever' }, 'CONNECT x via y');
    expect(err?.reason ?? null).toBe(reason);
    if (err) expect(err.message).toContain(`HTTP ${status} Whatever`);
    if (status === 500 || status === 502) expect(err!.message).toContain('port refused or device unreachable');
  });
});

describe('targets', () => {
  it('formats the platform target and parses host:port', () => {
    expect(deviceAuthority('C0FFEE01', 22222)).toBe('c0ffee01.balena:22222');
    expect(parseHostPort('tunnel.balena-cloud.com:443')).toEqual({ host: 'tunnel.balena-cloud.com', port: 443 });
    expect(parseHostPort('[::1]:3128')).toEqual({ host: '::1', port: 3128 });
    expect(parseHostPort('no-port')).toBeUndefined();
    expect(parseHostPort('host:70000')).toBeUndefined();
  });
});
