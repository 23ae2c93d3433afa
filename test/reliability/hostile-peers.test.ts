import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunResult } from '../../src/core/result.js';
import { runProbe } from '../../src/core/run.js';
import { KINDS } from '../../src/kinds/index.js';
import { httpPeer, type Peer } from '../helpers/http-peers.js';
import { makeSpec } from './matrix-cases.js';

/**
 * Peers that answer to hurt (issue 19): redirects to other schemes and to Locations that are not
 * URLs, and an API whose JSON is nested 100,000 deep. Each ends with a reason that names what the
 * peer did, never `internal`, and a redirect to another scheme opens no connection at all.
 */

const log = pino({ level: 'silent' });
let peers: Peer[] = [];
let gopherTarget: Peer;
let redirects: Peer;
let api: Peer;
const DEEP = 100_000;
const deep = (n: number) => '['.repeat(n) + ']'.repeat(n);

beforeAll(async () => {
  process.env.FP_HOSTILE_TOKEN = 'hostile-peers-token';
  // Any connection here would be the probe following a gopher: redirect.
  gopherTarget = await httpPeer((_req, res) => res.end('not for gopher'));
  const locations: Record<string, string> = {
    '/file': 'file:///etc/passwd',
    '/gopher': `gopher://127.0.0.1:${gopherTarget.port}/1`,
    '/javascript': 'javascript:alert(1)',
    '/bad-host': 'http://[::1/',
    '/bad-port': 'http://127.0.0.1:99999/',
    '/percent': 'http://%zz%/',
  };
  redirects = await httpPeer((req, res) => {
    req.resume();
    res.writeHead(302, { location: locations[req.url ?? ''] ?? '/' }).end();
  });
  // The API: one device nested too deep for JSON.stringify, in every place the kind quotes from.
  api = await httpPeer((req, res) => {
    req.resume();
    const url = req.url ?? '';
    const body = url.startsWith('/v7/device?')
      ? `{"d":[${deep(DEEP)}]}` // fleet listing (4 MiB limit): an item that is no device
      : url.includes('no-d')
        ? `{"x":${deep(30_000)}}` // a device read (64 KiB limit): no "d" array
        : `{"d":[{"is_online":${deep(30_000)},"is_connected_to_vpn":true,"last_connectivity_event":null,"last_vpn_event":null,"api_heartbeat_state":null}]}`;
    res.writeHead(200, { 'content-type': 'application/json' }).end(body);
  });
  peers = [gopherTarget, redirects, api];
});

afterAll(async () => {
  for (const p of peers) await p.close();
});

const run = (kind: string, fields: Record<string, unknown>): Promise<RunResult> =>
  runProbe(makeSpec(kind, `hostile-${kind}`, fields, 5000), KINDS[kind], { log });
const outcome = (r: RunResult) => ({ reason: r.reason, phase: r.phase });

describe('redirects a probe must not follow', () => {
  it.each(['/file', '/gopher', '/javascript'])('%s: assertion "redirect to a non-HTTP URL", no connection opened', async (path) => {
    const r = await run('http', { url: `${redirects.url}${path}` });
    expect(outcome(r), r.message ?? '').toEqual({ reason: 'assertion', phase: 'transfer' });
    expect(r.message).toMatch(/^redirect to a non-HTTP URL \(HTTP 302 to "[a-z]+:/);
    expect(gopherTarget.accepted()).toBe(0);
    // One connection, to the redirecting peer, and it was closed.
    await redirects.idle();
  });

  it.each(['/bad-host', '/bad-port', '/percent'])('%s: a Location that is not a URL is protocol', async (path) => {
    const r = await run('http', { url: `${redirects.url}${path}` });
    expect(outcome(r), r.message ?? '').toEqual({ reason: 'protocol', phase: 'transfer' });
    expect(r.message).toMatch(/^HTTP 302 redirect to a Location that is not a URL: "http:/);
  });
});

describe(`JSON nested ${DEEP.toLocaleString('en')} deep from the API`, () => {
  const status = (fields: Record<string, unknown>) =>
    run('device-status', { api: api.url, token: { env: 'FP_HOSTILE_TOKEN' }, tunnel: '127.0.0.1:1', tunnelTls: false, ...fields });

  it('a fleet listing whose device is a deep array: protocol, quoting it bounded', async () => {
    const r = await status({ fleet: 'org/fleet' });
    expect(outcome(r), r.message ?? '').toEqual({ reason: 'protocol', phase: 'api' });
    expect(r.message).toMatch(/has no valid uuid: \[\[\[\[/);
    expect(r.message!.length).toBeLessThanOrEqual(512);
  });

  it('a device field nested 30,000 deep (within 64 KiB): protocol', async () => {
    const r = await status({ device: 'c0ffee01' });
    expect(outcome(r), r.message ?? '').toEqual({ reason: 'protocol', phase: 'api' });
    expect(r.message).toMatch(/is_online is \[\[\[.*not true or false/);
  });

  it('an answer without "d", 30,000 deep: protocol', async () => {
    const r = await status({ device: 'c0ffee01', api: `${api.url}/no-d` });
    expect(outcome(r), r.message ?? '').toEqual({ reason: 'protocol', phase: 'api' });
    expect(r.message).toMatch(/has no "d" array: \{"x":\[\[\[/);
  });
});
