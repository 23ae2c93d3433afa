import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProbeSpec } from '../../src/core/kind.js';
import { Secret } from '../../src/core/redact.js';
import type { RunResult } from '../../src/core/result.js';
import { runProbe } from '../../src/core/run.js';
import { httpKind } from '../../src/kinds/http.js';
import { startLab, type Lab } from '../../src/lab/index.js';
import { closedPort, httpPeer, httpsPeer, rawPeer, readRequestBody, selfSignedCert, type Peer } from '../helpers/http-peers.js';

/**
 * The real http kind, run through runProbe (exactly what the daemon does) against real servers:
 * the embedded lab's public URL front, and tiny raw peers for answers the lab never gives.
 */

const log = pino({ level: 'silent' });
type Fields = Record<string, unknown>;
type HttpConfig = ReturnType<typeof httpKind.schema.parse>;

function makeSpec(fields: Fields, timeoutMs = 5000, tweak?: (c: HttpConfig) => void): ProbeSpec {
  const config = httpKind.schema.parse(fields);
  tweak?.(config);
  return {
    name: 'http-e2e',
    kind: 'http',
    intervalMs: 60_000,
    timeoutMs,
    labels: {},
    source: { file: 'test/e2e/http-kind.test.ts' },
    config,
    digest: 'test',
  };
}

function runHttp(fields: Fields, timeoutMs?: number, tweak?: (c: HttpConfig) => void): Promise<RunResult> {
  return runProbe(makeSpec(fields, timeoutMs, tweak), httpKind, { log });
}

interface Outcome {
  success: boolean;
  reason: string | null;
  phase: string | null;
  /** Fragments the message must contain. */
  message?: (string | RegExp)[];
}

function expectOutcome(r: RunResult, want: Outcome): void {
  // One assertion on the triple, so a failure shows the whole result at once.
  expect({ success: r.success, reason: r.reason, phase: r.phase }, JSON.stringify(r)).toEqual({
    success: want.success,
    reason: want.reason,
    phase: want.phase,
  });
  if (want.success) expect(r.message).toBeNull();
  for (const m of want.message ?? []) {
    if (typeof m === 'string') expect(r.message).toContain(m);
    else expect(r.message).toMatch(m);
  }
}

const PASS: Outcome = { success: true, reason: null, phase: null };
const fail = (reason: string, phase: string, ...message: (string | RegExp)[]): Outcome => ({ success: false, reason, phase, message });

describe('http kind against the embedded lab', () => {
  let lab: Lab;
  const UNKNOWN_UUID = 'deadbeef'.repeat(4);

  beforeAll(async () => {
    lab = await startLab();
  });
  afterAll(async () => {
    await lab?.close();
  });

  /** `https://<uuid>.<domain>:PORT<path>` pinned to 127.0.0.1 (curl --resolve), trusting the lab CA. */
  function labProbe(opts: { uuid?: string; path?: string; tls?: Fields } & Fields = {}): Fields {
    const { uuid = lab.vars.LAB_DEVICE_UUID, path = '/health', tls, ...rest } = opts;
    return {
      url: `https://${uuid}.${lab.vars.LAB_URL_DOMAIN}:${lab.vars.LAB_URL_FRONT_PORT}${path}`,
      resolve: '127.0.0.1',
      tls: tls ?? { caFile: lab.caFile },
      ...rest,
    };
  }

  interface LabCase {
    name: string;
    faults?: string[];
    fields: () => Fields;
    timeoutMs?: number;
    want: Outcome;
    check?: (r: RunResult, elapsedMs: number) => void;
  }

  const cases: LabCase[] = [
    {
      name: 'healthy device passes status, body and header checks',
      fields: () => labProbe({ expect: { status: [200], body: `ok ${lab.vars.LAB_DEVICE_UUID}`, headers: { 'content-type': '^text/plain' } } }),
      want: PASS,
      check: (r) => {
        expect(Object.keys(r.phases).sort()).toEqual(['connect', 'request', 'resolve', 'tls', 'transfer']);
        for (const v of Object.values(r.phases)) expect(v).toBeGreaterThanOrEqual(0);
        expect(r.observations.http_status).toBe(200);
        // The lab issues leaves for 30 days (its CA lives a year): the earliest expiry is the leaf's.
        const expiry = r.observations.ssl_earliest_cert_expiry;
        expect(typeof expiry).toBe('number');
        const now = Date.now() / 1000;
        expect(expiry as number).toBeGreaterThan(now);
        expect(Math.abs((expiry as number) - (now + 30 * 86400))).toBeLessThan(3600);
      },
    },
    {
      name: 'device-offline: the platform error page is device_offline, never a pass',
      faults: ['device-offline'],
      fields: () => labProbe(),
      want: fail('device_offline', 'transfer', 'HTTP 502', 'reaching this'),
    },
    {
      name: 'device-offline with platformErrorPage off is a plain status assertion',
      faults: ['device-offline'],
      fields: () => labProbe({ platformErrorPage: false }),
      want: fail('assertion', 'transfer', 'HTTP status 502 is not one of 2xx'),
    },
    {
      name: 'expired-cert fails the handshake',
      faults: ['expired-cert'],
      fields: () => labProbe(),
      want: fail('tls', 'tls', 'CERT_HAS_EXPIRED'),
    },
    {
      name: 'expired-cert with insecureSkipVerify passes',
      faults: ['expired-cert'],
      fields: () => labProbe({ tls: { caFile: lab.caFile, insecureSkipVerify: true } }),
      want: PASS,
      check: (r) => expect(r.observations.ssl_earliest_cert_expiry as number).toBeLessThan(Date.now() / 1000),
    },
    {
      name: 'slow-url is a timeout in the request phase, ended at the deadline',
      faults: ['slow-url'],
      fields: () => labProbe(),
      timeoutMs: 500,
      want: fail('timeout', 'request', 'request did not finish within the run timeout of 500ms'),
      check: (r, elapsed) => {
        expect(elapsed).toBeGreaterThanOrEqual(450);
        expect(elapsed).toBeLessThan(800);
        expect(r.durationSeconds).toBeLessThan(0.8);
      },
    },
    {
      name: 'no caFile: the system store does not trust the lab CA',
      fields: () => labProbe({ tls: {} }),
      want: fail('tls', 'tls', /UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED|UNABLE_TO_GET_ISSUER/),
    },
    {
      name: 'a serverName the certificate does not cover fails the handshake',
      fields: () => labProbe({ tls: { caFile: lab.caFile, serverName: 'other.example' } }),
      want: fail('tls', 'tls', 'other.example', 'ERR_TLS_CERT_ALTNAME_INVALID'),
    },
    {
      name: 'unknown device: 404 fails the default 2xx check',
      fields: () => labProbe({ uuid: UNKNOWN_UUID }),
      want: fail('assertion', 'transfer', 'HTTP status 404 is not one of 2xx', 'device not found'),
    },
    {
      name: 'unknown device with expect.status [404] passes',
      fields: () => labProbe({ uuid: UNKNOWN_UUID, expect: { status: [404] } }),
      want: PASS,
      check: (r) => expect(r.observations.http_status).toBe(404),
    },
    {
      name: 'status given as a class and a range',
      fields: () => labProbe({ uuid: UNKNOWN_UUID, expect: { status: ['2xx', '400-403'] } }),
      want: fail('assertion', 'transfer', 'HTTP status 404 is not one of 2xx, 400-403'),
    },
    {
      name: 'body mismatch',
      fields: () => labProbe({ expect: { body: 'not in the body' } }),
      want: fail('assertion', 'transfer', 'body does not contain "not in the body"', `body: ok ${'c0ffee'}`),
    },
    {
      name: 'bodyRegex matches',
      fields: () => labProbe({ expect: { bodyRegex: '^ok [0-9a-f]{32}\\s*$' } }),
      want: PASS,
    },
    {
      name: 'bodyRegex does not match',
      fields: () => labProbe({ expect: { bodyRegex: '^healthy' } }),
      want: fail('assertion', 'transfer', 'body does not match /^healthy/'),
    },
    {
      name: 'bodyNotRegex absent passes',
      fields: () => labProbe({ expect: { bodyNotRegex: 'error|fail' } }),
      want: PASS,
    },
    {
      name: 'bodyNotRegex present fails',
      fields: () => labProbe({ expect: { bodyNotRegex: '^ok' } }),
      want: fail('assertion', 'transfer', 'body matches /^ok/, which it must not'),
    },
    {
      name: 'missing response header',
      fields: () => labProbe({ expect: { headers: { 'x-device-version': '.' } } }),
      want: fail('assertion', 'transfer', 'response header x-device-version is missing'),
    },
    {
      name: 'header present but not matching',
      fields: () => labProbe({ expect: { headers: { 'Content-Type': '^application/json' } } }),
      want: fail('assertion', 'transfer', 'response header Content-Type "text/plain" does not match /^application\\/json/'),
    },
    {
      name: 'a redirect is followed to /health',
      fields: () => labProbe({ path: '/redirect', expect: { status: [200], body: 'ok ' } }),
      want: PASS,
      check: (r) => expect(r.observations.http_status).toBe(200),
    },
    {
      name: 'followRedirects 0: the 302 itself fails the default 2xx check',
      fields: () => labProbe({ path: '/redirect', followRedirects: 0 }),
      want: fail('assertion', 'transfer', 'HTTP status 302 is not one of 2xx'),
    },
    {
      name: 'followRedirects 0 and expect 302 passes',
      fields: () => labProbe({ path: '/redirect', followRedirects: 0, expect: { status: [302], headers: { location: '^/health$' } } }),
      want: PASS,
    },
    {
      name: 'a redirect loop gives up after followRedirects hops',
      fields: () => labProbe({ path: '/redirect-loop', followRedirects: 3 }),
      want: fail('assertion', 'transfer', 'more than 3 redirects', 'HTTP 302'),
    },
    {
      name: 'HEAD request',
      fields: () => labProbe({ method: 'HEAD', expect: { status: [200], headers: { 'content-type': '^text/plain$' } } }),
      want: PASS,
    },
    {
      name: 'maxBodyBytes truncates: text beyond the limit is not seen',
      // "ok <uuid>\n": the first 8 bytes are "ok c0ffe".
      fields: () => labProbe({ maxBodyBytes: 8, expect: { body: lab.vars.LAB_DEVICE_UUID } }),
      want: fail('assertion', 'transfer', 'within the first 8 bytes', 'body: ok c0ffe'),
    },
    {
      name: 'maxBodyBytes truncates: text within the limit still matches',
      fields: () => labProbe({ maxBodyBytes: 8, expect: { body: 'ok c0' } }),
      want: PASS,
    },
    {
      name: 'maxBodyBytes exactly the body length is not a truncation',
      fields: () => labProbe({ maxBodyBytes: 36, expect: { body: 'not there' } }),
      want: fail('assertion', 'transfer', 'body does not contain "not there"; body:'),
    },
  ];

  it.each(cases)('$name', async (c) => {
    for (const f of c.faults ?? []) lab.faults.set(f, true);
    try {
      const t0 = performance.now();
      const r = await runHttp(c.fields(), c.timeoutMs);
      const elapsed = performance.now() - t0;
      expectOutcome(r, c.want);
      expect(r.aborted).toBe(false);
      c.check?.(r, elapsed);
    } finally {
      for (const f of c.faults ?? []) lab.faults.set(f, false);
    }
  });
});

describe('http kind against raw peers', () => {
  const peers: Peer[] = [];
  afterAll(async () => {
    await Promise.all(peers.map((p) => p.close()));
  });
  async function peer(p: Promise<Peer>): Promise<Peer> {
    const started = await p;
    peers.push(started);
    return started;
  }

  const TOKEN = 'canary-token-123456';
  const selfSigned = selfSignedCert();

  interface PeerCase {
    name: string;
    /** Starts whatever the case needs; returns the probe fields and the peer to check for leaks. */
    setup: () => Promise<{ fields: Fields; peer?: Peer; tweak?: (c: HttpConfig) => void; after?: (r: RunResult) => void }>;
    timeoutMs?: number;
    want: Outcome;
  }

  const cases: PeerCase[] = [
    {
      name: 'connection refused',
      setup: async () => ({ fields: { url: `http://127.0.0.1:${await closedPort()}/` } }),
      want: fail('connect', 'connect', 'ECONNREFUSED'),
    },
    {
      name: 'DNS failure',
      setup: async () => ({ fields: { url: 'http://does-not-exist.invalid/' } }),
      want: fail('dns', 'resolve', 'does-not-exist.invalid'),
    },
    {
      name: 'a server that accepts and never answers is a request timeout',
      setup: async () => {
        const p = await peer(rawPeer((s) => s.resume()));
        return { fields: { url: `${p.url}/` }, peer: p };
      },
      timeoutMs: 300,
      want: fail('timeout', 'request', 'request did not finish within the run timeout of 300ms'),
    },
    {
      name: 'a server that answers garbage is a protocol failure',
      setup: async () => {
        const p = await peer(rawPeer((s) => s.once('data', () => s.end('NOT HTTP\r\n\r\n'))));
        return { fields: { url: `${p.url}/` }, peer: p };
      },
      want: fail('protocol', 'request', 'not valid HTTP/1.1', 'Expected HTTP/'),
    },
    {
      name: 'a server that closes right after accepting is a connect failure (reset before any answer)',
      setup: async () => {
        const p = await peer(rawPeer((s) => s.destroy()));
        return { fields: { url: `${p.url}/` }, peer: p };
      },
      want: fail('connect', 'request', /closed|reset|ECONNRESET|UND_ERR_SOCKET/i),
    },
    {
      name: 'a server that closes after reading the request is a connect failure',
      setup: async () => {
        const p = await peer(rawPeer((s) => s.once('data', () => s.end())));
        return { fields: { url: `${p.url}/` }, peer: p };
      },
      want: fail('connect', 'request', /closed|reset|UND_ERR_SOCKET/i),
    },
    {
      name: 'a TLS peer that closes before the handshake is a connect failure in the tls phase',
      setup: async () => {
        const p = await peer(rawPeer((s) => s.destroy()));
        return { fields: { url: `https://127.0.0.1:${p.port}/`, tls: { insecureSkipVerify: true } }, peer: p };
      },
      want: fail('connect', 'tls', /closed|reset|ECONNRESET/i),
    },
    {
      name: 'HTTP 500: assertion with the body excerpt',
      setup: async () => {
        const p = await peer(
          httpPeer((_req, res) => res.writeHead(500, { 'content-type': 'text/html' }).end('<h1>Internal error</h1>\n<p>database is down</p>')),
        );
        return { fields: { url: `${p.url}/status` }, peer: p };
      },
      want: fail('assertion', 'transfer', 'HTTP status 500 is not one of 2xx; body: Internal error database is down'),
    },
    {
      name: 'a bare 503 from a front with no page match is assertion (the default)',
      setup: async () => {
        const p = await peer(httpPeer((_req, res) => res.writeHead(503, { 'content-type': 'text/html' }).end('<h1>Upstream device unreachable</h1>')));
        return { fields: { url: `${p.url}/` }, peer: p };
      },
      want: fail('assertion', 'transfer', 'HTTP status 503 is not one of 2xx'),
    },
    {
      name: "a custom front's page matched by platformErrorPage: device_offline",
      setup: async () => {
        const p = await peer(httpPeer((_req, res) => res.writeHead(503, { 'content-type': 'text/html' }).end('<h1>Upstream device unreachable</h1>')));
        return { fields: { url: `${p.url}/`, platformErrorPage: 'Upstream device unreachable' }, peer: p };
      },
      want: fail('device_offline', 'transfer', 'HTTP 503', 'Upstream device unreachable'),
    },
    {
      name: 'the platform error page served with 200 is device_offline, never a pass',
      setup: async () => {
        const p = await peer(
          httpPeer((_req, res) =>
            res
              .writeHead(200, { 'content-type': 'text/html' })
              .end('<p>We encountered an error when reaching this balena.io device: tunneling socket could not be established: 500</p>'),
          ),
        );
        return { fields: { url: `${p.url}/` }, peer: p };
      },
      want: fail('device_offline', 'transfer', 'HTTP 200', 'cannot reach this device'),
    },
    {
      name: 'a self-signed certificate without caFile fails the handshake',
      setup: async () => {
        const p = await peer(httpsPeer(selfSigned, (_req, res) => res.end('ok')));
        return { fields: { url: `${p.url}/` }, peer: p };
      },
      want: fail('tls', 'tls', 'DEPTH_ZERO_SELF_SIGNED_CERT'),
    },
    {
      name: 'a self-signed certificate with insecureSkipVerify passes',
      setup: async () => {
        const p = await peer(httpsPeer(selfSigned, (_req, res) => res.end('ok')));
        return { fields: { url: `${p.url}/`, tls: { insecureSkipVerify: true }, expect: { body: 'ok' } }, peer: p };
      },
      want: PASS,
    },
    {
      name: 'POST with a body reaches the server',
      setup: async () => {
        const got: { method?: string; body?: string; type?: string }[] = [];
        const p = await peer(
          httpPeer(async (req, res) => {
            got.push({ method: req.method, type: req.headers['content-type'], body: await readRequestBody(req) });
            res.writeHead(201).end('created');
          }),
        );
        return {
          fields: { url: `${p.url}/items`, method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"probe":true}', expect: { status: [201] } },
          peer: p,
          after: () => expect(got).toEqual([{ method: 'POST', type: 'application/json', body: '{"probe":true}' }]),
        };
      },
      want: PASS,
    },
    {
      name: 'query strings, Host and user-agent reach the server',
      setup: async () => {
        const seen: { url?: string; host?: string; ua?: string }[] = [];
        const p = await peer(
          httpPeer((req, res) => {
            seen.push({ url: req.url, host: req.headers.host, ua: req.headers['user-agent'] });
            res.end('ok');
          }),
        );
        return {
          fields: { url: `${p.url}/a/b?x=1&y=2` },
          peer: p,
          after: () => expect(seen).toEqual([{ url: '/a/b?x=1&y=2', host: `127.0.0.1:${p.port}`, ua: 'fleetprobe' }]),
        };
      },
      want: PASS,
    },
    {
      name: 'a secret header reaches the server but never the message',
      setup: async () => {
        const received: (string | undefined)[] = [];
        const p = await peer(
          httpPeer((req, res) => {
            received.push(req.headers.authorization);
            res.writeHead(500, { 'content-type': 'text/plain' }).end(`denied for ${req.headers.authorization}`);
          }),
        );
        return {
          fields: { url: `${p.url}/` },
          tweak: (c) => (c.headers = { Authorization: new Secret(TOKEN, 'test') }),
          peer: p,
          after: (r) => {
            expect(received).toEqual([TOKEN]);
            expect(r.message).not.toContain(TOKEN);
            expect(r.message).not.toContain('canary');
          },
        };
      },
      want: fail('assertion', 'transfer', 'denied for [redacted]'),
    },
    {
      name: 'a secret cut in half by the body excerpt is still not shown',
      setup: async () => {
        const p = await peer(
          // The excerpt keeps 160 characters: put the token across that boundary.
          httpPeer((req, res) => res.writeHead(500).end(`${'x'.repeat(150)} ${req.headers.authorization} trailing`)),
        );
        return {
          fields: { url: `${p.url}/` },
          tweak: (c) => (c.headers = { Authorization: new Secret(TOKEN, 'test') }),
          peer: p,
          after: (r) => {
            expect(r.message).not.toContain('canary');
            expect(r.message).not.toContain('123456');
          },
        };
      },
      want: fail('assertion', 'transfer', 'HTTP status 500'),
    },
    {
      name: 'a secret header is not forwarded to another origin on redirect',
      setup: async () => {
        const seen: (string | undefined)[] = [];
        const other = await peer(
          httpPeer((req, res) => {
            seen.push(req.headers.authorization);
            res.end('elsewhere');
          }),
        );
        const p = await peer(
          httpPeer((req, res) => {
            seen.push(req.headers.authorization);
            res.writeHead(302, { location: `${other.url}/landing` }).end();
          }),
        );
        return {
          fields: { url: `${p.url}/`, expect: { body: 'elsewhere' } },
          tweak: (c) => (c.headers = { Authorization: new Secret(TOKEN, 'test'), 'X-Plain': 'kept' }),
          peer: p,
          after: async () => {
            expect(seen).toEqual([TOKEN, undefined]);
            await other.idle();
          },
        };
      },
      want: PASS,
    },
    {
      name: '`resolve` pins only the configured host, not a redirect target on another host',
      setup: async () => {
        const p = await peer(httpPeer((_req, res) => res.writeHead(302, { location: 'http://does-not-exist.invalid/elsewhere' }).end()));
        return { fields: { url: `http://device.fleetprobe.test:${p.port}/`, resolve: '127.0.0.1' }, peer: p };
      },
      want: fail('dns', 'resolve', 'does-not-exist.invalid'),
    },
    {
      name: 'a 303 after POST is followed with GET',
      setup: async () => {
        const seen: string[] = [];
        const p = await peer(
          httpPeer(async (req, res) => {
            await readRequestBody(req);
            seen.push(`${req.method} ${req.url}`);
            if (req.url === '/form') res.writeHead(303, { location: '/done' }).end();
            else res.end('done');
          }),
        );
        return {
          fields: { url: `${p.url}/form`, method: 'POST', body: 'a=1', expect: { body: 'done' } },
          peer: p,
          after: () => expect(seen).toEqual(['POST /form', 'GET /done']),
        };
      },
      want: PASS,
    },
  ];

  it.each(cases)('$name', async (c) => {
    const { fields, peer: p, tweak, after } = await c.setup();
    const r = await runHttp(fields, c.timeoutMs ?? 3000, tweak);
    expectOutcome(r, c.want);
    await after?.(r);
    if (p) {
      // Nothing the probe opened may outlive the run, pass or fail.
      expect(p.accepted()).toBeGreaterThan(0);
      await p.idle();
      expect(p.open()).toBe(0);
    }
  });
});
