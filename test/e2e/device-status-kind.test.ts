import fs from 'node:fs';
import type http from 'node:http';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/core/errors.js';
import type { CompanionStatus, ProbeSpec, ProbeState } from '../../src/core/kind.js';
import type { RunResult } from '../../src/core/result.js';
import { runProbe } from '../../src/core/run.js';
import { deviceStatusKind } from '../../src/kinds/device-status.js';
import { sampleOf } from '../../src/kinds/shared/fleet-pick.js';
import { tunnelKind } from '../../src/kinds/tunnel.js';
import { LAB_FLEET_SLUG, labDeviceUuid, startLab, type Lab } from '../../src/lab/index.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { DaemonProcess, metricValue, runCli, tempDir, writeLabConfig } from '../helpers/cli.js';
import { httpPeer, type Peer } from '../helpers/http-peers.js';

/**
 * The device-status kind through runProbe (what the daemon does) against the lab's API and tunnel
 * proxy, against raw API peers that answer as real and broken APIs do, and end to end through the
 * CLI and a daemon.
 */

const log = pino({ level: 'silent' });
const CANARY = 'canary-device-status-token-7c41a2';
process.env.FP_TEST_STATUS_TOKEN = CANARY;
const DEVICE3 = labDeviceUuid(3);

type Fields = Record<string, unknown>;

function specOf(fields: Fields, name = 'status-e2e', timeoutMs = 5000): ProbeSpec {
  const config = deviceStatusKind.schema.parse(fields);
  const problems = deviceStatusKind.check!(config);
  if (problems.length) throw new Error(JSON.stringify(problems));
  return { name, kind: 'device-status', intervalMs: 60_000, timeoutMs, labels: {}, source: { file: 'test' }, config, digest: 'test' };
}

function runStatus(
  fields: Fields,
  opts: { name?: string; timeoutMs?: number; companion?: (name: string) => CompanionStatus | undefined } = {},
): Promise<RunResult> {
  const spec = specOf(fields, opts.name, opts.timeoutMs);
  // Each probe's drift memory, kept between its runs as the daemon keeps it (ProbeContext.state).
  const state = states.get(spec.name) ?? states.set(spec.name, {}).get(spec.name)!;
  return runProbe(spec, deviceStatusKind, { log, companion: opts.companion, state });
}

function expectOutcome(r: RunResult, success: boolean, reason: string | null, phase: string | null, ...message: (string | RegExp)[]): void {
  expect({ success: r.success, reason: r.reason, phase: r.phase }, JSON.stringify(r)).toEqual({ success, reason, phase });
  for (const m of message) {
    if (typeof m === 'string') expect(r.message).toContain(m);
    else expect(r.message).toMatch(m);
  }
  expect(JSON.stringify(r)).not.toContain(CANARY);
}

let lab: Lab;
beforeAll(async () => {
  lab = await startLab();
});
afterAll(async () => {
  await lab?.close();
});
const states = new Map<string, ProbeState>();
beforeEach(() => states.clear());
afterEach(() => {
  for (const f of lab.faults.active()) lab.faults.set(f, false);
  for (let n = 1; n <= 47; n++) lab.deviceStates.setOnline(labDeviceUuid(n), true);
});

const viaLab = (extra: Fields = {}): Fields => ({
  api: lab.vars.LAB_API_URL,
  tls: { caFile: lab.caFile },
  token: { file: lab.vars.LAB_BUILDER_TOKEN_FILE },
  tunnel: `127.0.0.1:${lab.vars.LAB_TUNNEL_PORT}`,
  tunnelTls: { caFile: lab.caFile, serverName: lab.vars.LAB_TUNNEL_HOST },
  user: 'probe-bot',
  device: DEVICE3,
  ...extra,
});

describe('one device against the lab', () => {
  it('passes when the API and the tunnel agree the device is online', async () => {
    const r = await runStatus(viaLab());
    expectOutcome(r, true, null, null);
    expect(Object.keys(r.phases)).toEqual(['api', 'reachability']);
    expect(r.observations).toEqual({ device_api_online: 1, device_status_drift_seconds: 0 });
  });

  it('passes when both say offline (device-3-offline, the API follows)', async () => {
    lab.faults.set('device-3-offline', true);
    const r = await runStatus(viaLab());
    expectOutcome(r, true, null, null);
    expect(r.observations).toEqual({ device_api_online: 0, device_status_drift_seconds: 0 });
  });

  it('API online, device unreachable (status-stale): passes within maxDrift, status_drift past it', async () => {
    lab.faults.set('status-stale', true);
    lab.faults.set('device-3-offline', true);
    const first = await runStatus(viaLab({ maxDrift: '1s' }));
    expectOutcome(first, true, null, null);
    expect(first.observations).toMatchObject({ device_api_online: 1, device_status_drift_seconds: 0 });
    await sleep(1200);
    const later = await runStatus(viaLab({ maxDrift: '1s' }));
    expectOutcome(
      later,
      false,
      'status_drift',
      'reachability',
      `the API says device ${DEVICE3} is online (is_online true`,
      'unreachable for 1.',
      'not less than maxDrift 1s',
      'HTTP 503',
    );
    expect(later.observations.device_status_drift_seconds).toBeGreaterThan(1);
    // The API catches up: agreement again, drift back to 0.
    lab.faults.set('status-stale', false);
    const after = await runStatus(viaLab({ maxDrift: '1s' }));
    expectOutcome(after, true, null, null);
    expect(after.observations).toMatchObject({ device_api_online: 0, device_status_drift_seconds: 0 });
  });

  it('a device taken offline through the control server: the API follows unless status-stale', async () => {
    const put = await fetch(`${lab.controlUrl}/devices/${DEVICE3}/offline`, { method: 'PUT' });
    expect(put.status).toBe(200);
    expect((await runStatus(viaLab())).observations.device_api_online).toBe(0);
    await fetch(`${lab.controlUrl}/devices/${DEVICE3}/offline`, { method: 'DELETE' });
    expect((await runStatus(viaLab())).observations.device_api_online).toBe(1);
    expect((await fetch(`${lab.controlUrl}/devices/abc123/offline`, { method: 'PUT' })).status).toBe(404);
  });

  it('the tunnel token refused: auth in reachability, not drift', async () => {
    const r = await runStatus(viaLab({ tunnelToken: { env: 'FP_TEST_STATUS_TOKEN' } }));
    expectOutcome(r, false, 'auth', 'reachability', 'HTTP 407');
  });

  it('an unknown device: "d" is empty → assertion in api', async () => {
    expectOutcome(await runStatus(viaLab({ device: 'deadbeef' })), false, 'assertion', 'api', 'knows no device deadbeef', '"d" is empty');
  });

  it('a wrong API token: auth in api', async () => {
    expectOutcome(await runStatus(viaLab({ token: { env: 'FP_TEST_STATUS_TOKEN' } })), false, 'auth', 'api', 'HTTP 401');
  });

  it('api-errors: a 503, then malformed JSON, then a slow answer', async () => {
    lab.faults.set('api-errors', true);
    const fields = viaLab({ stepTimeout: '300ms' });
    expectOutcome(await runStatus(fields), false, 'proxy', 'api', 'HTTP 503', 'upstream connect error');
    expectOutcome(await runStatus(fields), false, 'protocol', 'api', 'is not JSON', '{"d": [{"is_online": tr');
    expectOutcome(await runStatus(fields), false, 'timeout', 'api', "the API's answer: no answer within 300ms");
  });
});

describe('one device with a companion probe', () => {
  const now = () => Date.now();
  const companionOf = (c: CompanionStatus | undefined) => (name: string) => (name === 'tunnel-3' ? c : undefined);
  const ok = (agoMs: number): CompanionStatus => ({
    last: { success: true, startedAt: now() - agoMs, reason: null, phase: null, message: null },
    lastSuccessAt: now() - agoMs,
    intervalMs: 10_000,
  });
  const failed = (reason: string, agoMs: number, lastSuccessAgoMs?: number): CompanionStatus => ({
    last: { success: false, startedAt: now() - agoMs, reason, phase: 'proxy_connect', message: `CONNECT ...: HTTP 503 (a ${reason} failure)` },
    lastSuccessAt: lastSuccessAgoMs === undefined ? undefined : now() - lastSuccessAgoMs,
    intervalMs: 10_000,
  });
  const withCompanion = (extra: Fields = {}) => viaLab({ reachability: 'tunnel-3', ...extra });

  it('a fresh pass agrees with the API', async () => {
    const r = await runStatus(withCompanion(), { companion: companionOf(ok(2000)) });
    expectOutcome(r, true, null, null);
    expect(r.observations).toEqual({ device_api_online: 1, device_status_drift_seconds: 0 });
  });

  it('a stale result (older than two intervals) fails naming the companion', async () => {
    const r = await runStatus(withCompanion(), { companion: companionOf(ok(25_000)) });
    expectOutcome(r, false, 'assertion', 'reachability', 'companion probe "tunnel-3" is stale', '25.0s old', 'two of its intervals (2 × 10s)');
  });

  it('no result yet fails clearly', async () => {
    const r = await runStatus(withCompanion(), { companion: companionOf(undefined) });
    expectOutcome(r, false, 'assertion', 'reachability', 'companion probe "tunnel-3" has no result yet');
  });

  it('unreachable since its last success, longer than maxDrift: status_drift at once', async () => {
    const r = await runStatus(withCompanion({ maxDrift: '1s' }), { companion: companionOf(failed('device_offline', 1000, 6000)) });
    expectOutcome(r, false, 'status_drift', 'reachability', 'unreachable for 6.0s', 'companion probe "tunnel-3" failed 1.0s ago with device_offline');
  });

  it('maxDrift: 0s is drift at once, and the message says "0s" as the config does', async () => {
    const r = await runStatus(withCompanion({ maxDrift: '0s' }), { companion: companionOf(failed('device_offline', 500)) });
    expectOutcome(r, false, 'status_drift', 'reachability', 'not less than maxDrift 0s:');
    expect(r.message).not.toContain('0h');
  });

  it('unreachable but within maxDrift passes and reports the drift', async () => {
    const r = await runStatus(withCompanion({ maxDrift: '10s' }), { companion: companionOf(failed('device_offline', 500, 3000)) });
    expectOutcome(r, true, null, null);
    expect(r.observations.device_status_drift_seconds).toBeGreaterThan(2.9);
    expect(r.observations.device_status_drift_seconds).toBeLessThan(5);
  });

  it('a companion failing on the path (auth, proxy, connect, timeout) is inconclusive: its own reason, never drift', async () => {
    for (const reason of ['auth', 'proxy', 'connect', 'timeout']) {
      const r = await runStatus(withCompanion({ maxDrift: '0s' }), { companion: companionOf(failed(reason, 1000, 6000)) });
      expectOutcome(r, false, reason, 'reachability', `failed 1.0s ago with ${reason}`, 'is about the path, not the device: inconclusive');
      expect(r.observations.device_status_drift_seconds).toBeUndefined();
    }
  });

  it('an inconclusive run leaves the drift memory as it was', async () => {
    const fields = withCompanion({ maxDrift: '10s' });
    // A drift begins (device_offline), the path fails for a while, the drift goes on from where it began.
    const first = await runStatus(fields, { companion: companionOf(failed('device_offline', 100)) });
    expectOutcome(first, true, null, null);
    await sleep(300);
    expectOutcome(await runStatus(fields, { companion: companionOf(failed('proxy', 100)) }), false, 'proxy', 'reachability');
    const after = await runStatus(fields, { companion: companionOf(failed('device_offline', 100)) });
    expectOutcome(after, true, null, null);
    expect(after.observations.device_status_drift_seconds).toBeGreaterThanOrEqual(0.3);
  });

  it('API offline while the companion reaches the device: status_drift after offlineGrace', async () => {
    lab.deviceStates.setOnline(DEVICE3, false); // the API says offline; the companion says reachable
    const fields = withCompanion({ offlineGrace: '1s' });
    expectOutcome(await runStatus(fields, { companion: companionOf(ok(100)) }), true, null, null);
    await sleep(1200);
    const r = await runStatus(fields, { companion: companionOf(ok(100)) });
    expectOutcome(
      r,
      false,
      'status_drift',
      'reachability',
      `the API says device ${DEVICE3} is offline (is_online false`,
      'reachable for 1.',
      'not less than offlineGrace 1s',
      'companion probe "tunnel-3" passed',
    );
  });
});

describe('non-standard and broken API answers (raw peers)', () => {
  let api: Peer;
  let answer: (req: http.IncomingMessage, res: http.ServerResponse) => void = () => undefined;
  const seen: { url: string; auth: string }[] = [];
  beforeAll(async () => {
    api = await httpPeer((req, res) => {
      seen.push({ url: req.url ?? '', auth: req.headers.authorization ?? '' });
      req.resume();
      answer(req, res);
    });
  });
  afterAll(async () => {
    await api?.close();
  });
  const send =
    (status: number, body: string, type = 'application/json') =>
    (_req: http.IncomingMessage, res: http.ServerResponse) => {
      res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
      res.end(body);
    };
  const device = (over: Record<string, unknown> = {}) => ({
    is_online: true,
    is_connected_to_vpn: true,
    last_connectivity_event: '2025-09-10T10:00:00.000Z',
    last_vpn_event: '2025-09-10T10:00:00.000Z',
    api_heartbeat_state: 'online',
    ...over,
  });
  // The canary is the API token here; the lab's tunnel takes its own.
  const viaRaw = (extra: Fields = {}) =>
    viaLab({ api: api.url, token: { env: 'FP_TEST_STATUS_TOKEN' }, tunnelToken: { file: lab.vars.LAB_TUNNEL_TOKEN_FILE }, ...extra });

  it('asks for the selected fields of the device with the Bearer token', async () => {
    seen.length = 0;
    answer = send(200, JSON.stringify({ d: [device()] }));
    expectOutcome(await runStatus(viaRaw()), true, null, null);
    expect(decodeURIComponent(seen[0].url)).toBe(
      `/v7/device(uuid='${DEVICE3}')?$select=is_online,is_connected_to_vpn,last_connectivity_event,last_vpn_event,api_heartbeat_state`,
    );
    expect(seen[0].auth).toBe(`Bearer ${CANARY}`);
  });

  const cases: [string, () => typeof answer, [boolean, string | null, string | null, ...string[]]][] = [
    [
      'extra fields and nulls, as a real API gives them',
      () =>
        send(
          200,
          JSON.stringify({
            d: [
              device({
                is_connected_to_vpn: null,
                last_vpn_event: null,
                last_connectivity_event: null,
                api_heartbeat_state: null,
                __metadata: { uri: '/resin/device(@id)' },
                overall_status: 'idle',
              }),
            ],
            __count: 1,
          }),
        ),
      [true, null, null],
    ],
    [
      'an unknown heartbeat state is accepted',
      () => send(200, JSON.stringify({ d: [device({ api_heartbeat_state: 'reduced-polling' })] })),
      [true, null, null],
    ],
    ['401', () => send(401, 'Unauthorized', 'text/plain'), [false, 'auth', 'api', 'refused our token (HTTP 401)']],
    ['403', () => send(403, '{"message":"forbidden"}'), [false, 'auth', 'api', 'HTTP 403']],
    ['500', () => send(500, '{"message":"Internal Server Error"}'), [false, 'proxy', 'api', 'the API failed (HTTP 500)', 'Internal Server Error']],
    [
      'a load balancer 502 page',
      () => send(502, '<html><body><h1>502 Bad Gateway</h1></body></html>', 'text/html'),
      [false, 'proxy', 'api', 'HTTP 502', '502 Bad Gateway'],
    ],
    ['404', () => send(404, 'Not Found', 'text/plain'), [false, 'proxy', 'api', 'unexpected HTTP 404']],
    ['malformed JSON', () => send(200, '{"d": [{"is_online": tru'), [false, 'protocol', 'api', 'is not JSON']],
    ['an empty body', () => send(200, ''), [false, 'protocol', 'api', 'is not JSON: (empty)']],
    ['no "d"', () => send(200, JSON.stringify({ results: [device()] })), [false, 'protocol', 'api', 'has no "d" array']],
    ['"d" empty', () => send(200, JSON.stringify({ d: [] })), [false, 'assertion', 'api', 'knows no device']],
    ['two devices for one uuid', () => send(200, JSON.stringify({ d: [device(), device()] })), [false, 'protocol', 'api', 'answered 2 devices']],
    [
      'is_online null',
      () => send(200, JSON.stringify({ d: [device({ is_online: null })] })),
      [false, 'protocol', 'api', 'is_online is null, not true or false'],
    ],
    ['is_online as a string', () => send(200, JSON.stringify({ d: [device({ is_online: 'true' })] })), [false, 'protocol', 'api', 'is_online is "true"']],
    ['a selected field missing', () => send(200, JSON.stringify({ d: [{ is_online: true }] })), [false, 'protocol', 'api', 'has no is_connected_to_vpn']],
    [
      'a timestamp that is not one',
      () => send(200, JSON.stringify({ d: [device({ last_vpn_event: 'yesterday' })] })),
      [false, 'protocol', 'api', 'last_vpn_event is "yesterday", not a timestamp or null'],
    ],
    ['the device is not an object', () => send(200, JSON.stringify({ d: ['c0ffee'] })), [false, 'protocol', 'api', 'not an object']],
    ['an API that echoes the token in its error', () => send(500, JSON.stringify({ message: `bad token ${CANARY}` })), [false, 'proxy', 'api', 'HTTP 500']],
    // Written by hand: JSON.stringify (ours in the test as much as the kind's) overflows the stack on it.
    [
      'a field nested 20,000 deep',
      () => send(200, `{"d":[{"is_online":${'['.repeat(20_000)}${']'.repeat(20_000)}}]}`),
      [false, 'protocol', 'api', `is_online is ${'['.repeat(60)}…, not true or false`],
    ],
    [
      'an answer nested 20,000 deep',
      () => send(200, '['.repeat(20_000) + ']'.repeat(20_000)),
      [false, 'protocol', 'api', `has no "d" array: ${'['.repeat(160)}…`],
    ],
  ];
  for (const [name, make, want] of cases) {
    it(name, async () => {
      answer = make();
      expectOutcome(await runStatus(viaRaw()), ...want);
      await api.idle(2000);
    });
  }

  it('an API that never answers: timeout in api, connection closed', async () => {
    answer = () => undefined;
    expectOutcome(await runStatus(viaRaw({ stepTimeout: '300ms' })), false, 'timeout', 'api', 'no answer within 300ms');
    await api.idle(2000);
  });

  it('API offline while the own tunnel check reaches it: drift after offlineGrace', async () => {
    answer = send(200, JSON.stringify({ d: [device({ is_online: false, is_connected_to_vpn: false, api_heartbeat_state: 'offline' })] }));
    const fields = viaRaw({ offlineGrace: '1s' });
    const first = await runStatus(fields);
    expectOutcome(first, true, null, null);
    expect(first.observations).toEqual({ device_api_online: 0, device_status_drift_seconds: 0 });
    await sleep(1200);
    expectOutcome(await runStatus(fields), false, 'status_drift', 'reachability', 'is offline', 'reachable for 1.', 'a tunnel to');
  });
  it('fleetprobe run: API offline while the device is reachable fails at once, saying the daemon allows offlineGrace', async () => {
    answer = send(200, JSON.stringify({ d: [device({ is_online: false, is_connected_to_vpn: false, api_heartbeat_state: 'offline' })] }));
    const dir = tempDir();
    const file = path.join(dir, 'status.yaml');
    fs.writeFileSync(
      file,
      `probes:
  - name: canary-status
    kind: device-status
    api: ${api.url}
    token: { env: FP_TEST_STATUS_TOKEN }
    tunnel: 127.0.0.1:${lab.vars.LAB_TUNNEL_PORT}
    tunnelTls: { caFile: "${lab.caFile}", serverName: "${lab.vars.LAB_TUNNEL_HOST}" }
    tunnelToken: { file: "${lab.vars.LAB_TUNNEL_TOKEN_FILE}" }
    user: probe-bot
    device: ${DEVICE3}
    offlineGrace: 2m
`,
    );
    const r = await runCli(['run', 'canary-status', '--config', file, '--json']);
    expect(r.code, r.stdout + r.stderr).toBe(1);
    const out = JSON.parse(r.stdout) as { reason: string; phase: string; message: string };
    expect(out).toMatchObject({ reason: 'status_drift', phase: 'reachability' });
    expect(out.message).toContain(`the API says device ${DEVICE3} is offline but it is reachable now.`);
    expect(out.message).toContain('the daemon alerts (status_drift) once it lasts offlineGrace 2m');
    expect(out.message).toContain('a tunnel to');
    expect(r.stdout + r.stderr).not.toContain(CANARY);
  });
});

describe('fleet sample mode against the lab fleet', () => {
  const fleet = (extra: Fields = {}) => viaLab({ device: undefined, fleet: LAB_FLEET_SLUG, port: 80, ...extra });

  it('lists the online devices (paged) and finds a sample of them reachable', async () => {
    lab.tunnelProxy.resetPeak();
    const r = await runStatus(fleet({ sample: 20, concurrency: 3, pageSize: 7 }));
    expectOutcome(r, true, null, null);
    expect(r.observations).toEqual({ device_fleet_online_devices: 47, device_sample_reachable_ratio: 1, device_sample_drifted_devices: 0 });
    // Bounded concurrency, as the proxy saw it, and really concurrent.
    expect(lab.tunnelProxy.peakConnections()).toBeLessThanOrEqual(3);
    expect(lab.tunnelProxy.peakConnections()).toBeGreaterThan(1);
  });

  it('maxDevices bounds the listing', async () => {
    const r = await runStatus(fleet({ sample: 5, maxDevices: 20, pageSize: 8 }));
    expectOutcome(r, true, null, null);
    expect(r.observations.device_fleet_online_devices).toBe(20);
  });

  it('status-stale with 10 devices gone: the right fraction, status_drift under the threshold', async () => {
    lab.faults.set('status-stale', true);
    const gone = [5, 9, 12, 20, 21, 30, 33, 40, 44, 47].map(labDeviceUuid);
    for (const u of gone) lab.deviceStates.setOnline(u, false);
    lab.tunnelProxy.resetPeak();
    const r = await runStatus(fleet({ sample: 100, concurrency: 8 }), { timeoutMs: 10_000 });
    expectOutcome(
      r,
      false,
      'status_drift',
      'reachability',
      '37 of 47 sampled devices of fleet lab/sample-fleet',
      '79%',
      'below minReachableRatio 0.9',
      'and 5 more',
    );
    expect(gone.some((u) => r.message!.includes(u))).toBe(true);
    expect(r.observations).toEqual({ device_fleet_online_devices: 47, device_sample_reachable_ratio: 37 / 47, device_sample_drifted_devices: 10 });
    expect(lab.tunnelProxy.peakConnections()).toBeLessThanOrEqual(8);
    // A lower threshold passes with the same fraction.
    const lenient = await runStatus(fleet({ sample: 100, concurrency: 8, minReachableRatio: 0.75 }), { timeoutMs: 10_000 });
    expectOutcome(lenient, true, null, null);
    expect(lenient.observations.device_sample_reachable_ratio).toBe(37 / 47);
    // Without status-stale the API drops them from the listing: all reachable again.
    lab.faults.set('status-stale', false);
    const fresh = await runStatus(fleet({ sample: 100, concurrency: 8 }), { timeoutMs: 10_000 });
    expect(fresh.observations).toEqual({ device_fleet_online_devices: 37, device_sample_reachable_ratio: 1, device_sample_drifted_devices: 0 });
  });

  it('a refused tunnel token stops the sample with auth', async () => {
    const r = await runStatus(fleet({ tunnelToken: { env: 'FP_TEST_STATUS_TOKEN' } }));
    expectOutcome(r, false, 'auth', 'reachability', 'HTTP 407');
  });

  it('a fleet with no online devices passes with nothing to sample', async () => {
    const r = await runStatus(fleet({ fleet: 'lab/empty' }));
    expectOutcome(r, true, null, null);
    expect(r.observations).toEqual({ device_fleet_online_devices: 0, device_sample_drifted_devices: 0 });
  });

  it('sampleOf takes distinct items, all of them when k is larger', () => {
    const items = Array.from({ length: 50 }, (_, i) => i);
    const s = sampleOf(items, 10);
    expect(new Set(s).size).toBe(10);
    expect(sampleOf(items, 80).sort((a, b) => a - b)).toEqual(items);
  });
});

describe('the tunnel proxy down while the API and the device are fine', () => {
  // The companion is a real tunnel probe run against the lab through a TCP forwarder that stands for
  // the tunnel proxy's address; closing the forwarder is the proxy stopped (connections refused).
  let front: FaultProxy;
  beforeEach(async () => {
    front = await startFaultProxy({ port: Number(lab.vars.LAB_TUNNEL_PORT) });
  });
  afterEach(async () => {
    await front.close();
  });
  const tunnelFields = () => ({
    tunnel: `127.0.0.1:${front.port}`,
    tunnelTls: { caFile: lab.caFile, serverName: lab.vars.LAB_TUNNEL_HOST },
    user: 'probe-bot',
    token: { file: lab.vars.LAB_BUILDER_TOKEN_FILE },
  });

  async function companionRun(history: CompanionStatus): Promise<RunResult> {
    const config = tunnelKind.schema.parse({ ...tunnelFields(), device: DEVICE3, port: 22222, stepTimeout: '500ms' });
    const spec: ProbeSpec = { name: 'tunnel-3', kind: 'tunnel', intervalMs: 1000, timeoutMs: 1000, labels: {}, source: { file: 'test' }, config, digest: 't' };
    const r = await runProbe(spec, tunnelKind, { log, state: {} });
    history.last = { success: r.success, startedAt: r.startedAt, reason: r.reason, phase: r.phase, message: r.message };
    if (r.success) history.lastSuccessAt = r.startedAt;
    return r;
  }

  it("a companion tunnel probe: never status_drift while the proxy is stopped or silent, the path's reason instead", async () => {
    const history: CompanionStatus = { intervalMs: 1000 };
    const status = () => runStatus(viaLab({ reachability: 'tunnel-3', maxDrift: '0s' }), { companion: (n) => (n === 'tunnel-3' ? history : undefined) });
    expectOutcome(await companionRun(history), true, null, null);
    expectOutcome(await status(), true, null, null);

    // Silent (connections accepted, nothing answers): timeout on the way to the proxy.
    front.setMode({ type: 'blackhole' }, { live: true });
    const silent = await companionRun(history);
    expect(silent.success).toBe(false);
    const r1 = await status();
    expectOutcome(r1, false, silent.reason, 'reachability', 'is about the path, not the device: inconclusive');

    // Stopped: connections refused, run after run past maxDrift 0s.
    await front.close();
    const seen: string[] = [];
    for (let i = 0; i < 4; i++) {
      const c = await companionRun(history);
      expect(c.reason).toBe('connect');
      const r = await status();
      seen.push(String(r.reason));
      expectOutcome(r, false, 'connect', 'reachability', 'failed', 'with connect');
      await sleep(200);
    }
    expect(seen).not.toContain('status_drift');
  });

  it("the kind's own tunnel check: the proxy stopped fails with connect, never status_drift", async () => {
    const fields = viaLab({ ...tunnelFields(), maxDrift: '0s' });
    expectOutcome(await runStatus(fields), true, null, null);
    await front.close();
    for (let i = 0; i < 3; i++) expectOutcome(await runStatus(fields), false, 'connect', 'reachability');
  });
});

describe('configuration', () => {
  let dir: string;
  beforeAll(() => {
    dir = tempDir();
    fs.writeFileSync(path.join(dir, 'token'), 'x\n');
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const load = (probes: string) => {
    const file = path.join(dir, 'p.yaml');
    fs.writeFileSync(file, `platform:\n  token: { file: token }\nprobes:\n${probes}`);
    try {
      loadConfig({ paths: [file] });
      return [];
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      return err.issues.map((i) => `${i.path}: ${i.message}`);
    }
  };
  const tunnel = (name: string, extra = ', expect: { banner: "^SSH" }') => `  - { name: ${name}, kind: tunnel, device: c0ffee01, port: 22222${extra} }\n`;
  const status = (name: string, extra: string) => `  - { name: ${name}, kind: device-status, ${extra} }\n`;

  it('a companion that exists passes', () => {
    expect(load(tunnel('t') + status('s', 'device: c0ffee01, reachability: t'))).toEqual([]);
  });
  it('rejects a missing, self, held or chained companion, and bad mode combinations', () => {
    expect(load(status('s', 'device: c0ffee01, reachability: nope'))).toEqual(['probes[0].reachability: no enabled probe is named "nope"']);
    expect(load(status('s', 'device: c0ffee01, reachability: s'))).toEqual([
      'probes[0].reachability: names this probe itself; name another probe (e.g. a tunnel probe of the same device)',
    ]);
    expect(load(tunnel('t', ', http: { path: / }, hold: 1h, interval: 5s') + status('s', 'device: c0ffee01, reachability: t'))).toEqual([
      'probes[1].reachability: "t" is a held probe (hold): its last result is not refreshed while it stays up; name a scheduled probe',
    ]);
    expect(load(tunnel('t') + status('a', 'device: c0ffee01, reachability: t') + status('b', 'device: c0ffee01, reachability: a'))).toEqual([
      'probes[2].reachability: "a" reads a companion probe itself; a companion must check the device directly',
    ]);
    expect(load(status('s', 'fleet: o/f, device: c0ffee01'))).toEqual(['probes[0].fleet: set either device or fleet (sample mode), not both']);
    expect(load(status('s', 'interval: 1m'))).toEqual(['probes[0].device: is required (or `fleet: <org>/<fleet>` for sample mode)']);
    expect(load(tunnel('t') + status('s', 'fleet: o/f, reachability: t'))).toEqual([
      'probes[1].reachability: sample mode checks its devices itself: a companion probe is for one device',
    ]);
  });
});

describe('CLI and daemon', () => {
  it('fleetprobe run <lab status probes> --lab --json pass', async () => {
    for (const name of ['lab-device-status', 'lab-device-status-companion', 'lab-fleet-sample']) {
      const r = await runCli(['run', name, '--lab', '--json']);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ name, success: true });
    }
  });

  it('fleetprobe run of a companion-based probe runs the companion first', async () => {
    const r = await runCli(['run', 'lab-device-status-companion', '--lab', '--lab-fault', 'status-stale,device-3-offline']);
    expect(r.stdout).toContain('companion lab-tunnel-ssh-banner: failed (device_offline in proxy_connect');
    expect(r.stdout).toContain('device_api_online: 1');
  });

  // A one-shot run has no earlier run to time a drift from: it fails on what it sees now, naming
  // both views and how long the daemon waits (maxDrift) before it alerts.
  it('fleetprobe run lab-device-status with status-stale + device-3-offline: status_drift at once, both views named', async () => {
    const r = await runCli(['run', 'lab-device-status', '--lab', '--lab-fault', 'status-stale,device-3-offline', '--json']);
    expect(r.code, r.stdout + r.stderr).toBe(1);
    const out = JSON.parse(r.stdout) as { reason: string; phase: string; message: string };
    expect(out).toMatchObject({ name: 'lab-device-status', success: false, reason: 'status_drift', phase: 'reachability' });
    expect(out.message).toMatch(new RegExp(`^the API says device ${DEVICE3} is online but it is unreachable now\\. `));
    expect(out.message).toContain('the daemon alerts (status_drift) once it lasts maxDrift 30s');
    expect(out.message).toContain('API: is_online true');
    expect(out.message).toContain('device: CONNECT');
    expect(out.message).toContain('not connected');
    const human = await runCli(['run', 'lab-device-status-companion', '--lab', '--lab-fault', 'status-stale,device-3-offline']);
    expect(human.code, human.stdout + human.stderr).toBe(1);
    expect(human.stdout).toContain('is online but it is unreachable now');
    expect(human.stdout).toContain('device: companion probe "lab-tunnel-ssh-banner" failed');
  });

  it('a daemon: status-stale plus an offline device fails with status_drift once past maxDrift, with both modes', async () => {
    const dir = tempDir();
    const common = `    api: \${LAB_API_URL}
    tls: { caFile: "\${LAB_CA_FILE}" }
    token: { file: "\${LAB_BUILDER_TOKEN_FILE}" }
    tunnel: 127.0.0.1:\${LAB_TUNNEL_PORT}
    tunnelTls: { caFile: "\${LAB_CA_FILE}", serverName: "\${LAB_TUNNEL_HOST}" }
    user: probe-bot
`;
    const config = writeLabConfig(
      dir,
      `  - name: t3
    kind: tunnel
    tunnel: 127.0.0.1:\${LAB_TUNNEL_PORT}
    tunnelTls: { caFile: "\${LAB_CA_FILE}", serverName: "\${LAB_TUNNEL_HOST}" }
    token: { file: "\${LAB_BUILDER_TOKEN_FILE}" }
    device: \${LAB_DEVICE3_UUID}
    port: 22222
    expect: { banner: "^SSH-2" }
  - name: own
    kind: device-status
${common}    device: \${LAB_DEVICE3_UUID}
    maxDrift: 2s
  - name: comp
    kind: device-status
${common}    device: \${LAB_DEVICE3_UUID}
    reachability: t3
    maxDrift: 2s
`,
    );
    const d = new DaemonProcess(['--config', config, '--lab']);
    try {
      await d.waitForMetrics((t) => metricValue(t, 'probe_success', { probe: 'own' }) === 1 && metricValue(t, 'probe_success', { probe: 'comp' }) === 1);
      const control = await d.controlUrl();
      await fetch(`${control}/faults/status-stale`, { method: 'PUT' });
      await fetch(`${control}/faults/device-3-offline`, { method: 'PUT' });
      const text = await d.waitForMetrics(
        (t) => ['own', 'comp'].every((p) => (metricValue(t, 'probe_failures_total', { probe: p, reason: 'status_drift' }) ?? 0) >= 1),
        20_000,
      );
      for (const p of ['own', 'comp']) {
        expect(metricValue(text, 'fleetprobe_device_api_online', { probe: p })).toBe(1);
        expect(metricValue(text, 'fleetprobe_device_status_drift_seconds', { probe: p })).toBeGreaterThan(2);
      }
      const status = (await (await fetch(`${await d.url()}/probes`)).json()) as { name: string; lastRun: { reason: string; message: string } }[];
      expect(status.find((s) => s.name === 'comp')!.lastRun.message).toContain('companion probe "t3" failed');
      // The API catches up: both agree again.
      await fetch(`${control}/faults/status-stale`, { method: 'DELETE' });
      const healed = await d.waitForMetrics((t) =>
        ['own', 'comp'].every((p) => metricValue(t, 'probe_success', { probe: p }) === 1 && metricValue(t, 'fleetprobe_device_api_online', { probe: p }) === 0),
      );
      expect(metricValue(healed, 'fleetprobe_device_status_drift_seconds', { probe: 'own' })).toBe(0);
    } finally {
      await d.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
