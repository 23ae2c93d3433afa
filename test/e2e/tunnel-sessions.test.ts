import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ProbeSpec } from '../../src/core/kind.js';
import type { RunResult } from '../../src/core/result.js';
import { runProbe } from '../../src/core/run.js';
import { KINDS } from '../../src/kinds/index.js';
import { tunnelKind } from '../../src/kinds/tunnel.js';
import { startLab, type Lab } from '../../src/lab/index.js';
import { Metrics } from '../../src/metrics/metrics.js';
import { metricValue } from '../helpers/cli.js';
import { expectPromtoolClean } from '../helpers/promtool.js';
import { kindSpec } from '../helpers/run-kind.js';

/**
 * The tunnel kind's concurrency mode (`sessions: N`, shared with the ssh kind) through runProbe
 * against the lab's TLS tunnel proxy: N tunnels at once, their ratio and percentiles, and
 * `maxLatency` catching a proxy that queues CONNECTs instead of refusing them (`tunnel-queue`).
 */

const log = pino({ level: 'silent' });
type Fields = Record<string, unknown>;

let lab: Lab;
beforeAll(async () => {
  lab = await startLab();
});
afterAll(async () => {
  await lab?.close();
});
afterEach(() => {
  for (const f of lab.faults.active()) lab.faults.set(f, false);
});

const spec = (fields: Fields, timeoutMs: number): ProbeSpec =>
  kindSpec(
    tunnelKind,
    {
      tunnel: `127.0.0.1:${lab.vars.LAB_TUNNEL_PORT}`,
      tunnelTls: { caFile: lab.caFile, serverName: lab.vars.LAB_TUNNEL_HOST },
      token: { file: lab.vars.LAB_TUNNEL_TOKEN_FILE },
      device: lab.vars.LAB_DEVICE_UUID,
      port: 80,
      http: { path: '/health', expect: { status: [200] } },
      ...fields,
    },
    { name: 'tunnel-sessions', timeoutMs },
  );
const run = (fields: Fields, timeoutMs = 5000): Promise<RunResult> => runProbe(spec(fields, timeoutMs), tunnelKind, { log });

function outcome(r: RunResult) {
  return { success: r.success, reason: r.reason, phase: r.phase };
}

describe('tunnel sessions: N tunnels at once', () => {
  it('sessions: 6 open six tunnels at once and all pass; ratio and percentiles exported', async () => {
    lab.tunnelProxy.resetPeak();
    const r = await run({ sessions: 6 });
    expect(outcome(r), JSON.stringify(r)).toEqual({ success: true, reason: null, phase: null });
    expect(lab.tunnelProxy.peakConnections()).toBeGreaterThanOrEqual(6);
    expect(r.observations.tunnel_sessions_success_ratio).toBe(1);
    expect(r.observations['tunnel_session_latency_seconds.100']).toBeGreaterThan(0);
    expect(r.observations['tunnel_session_latency_seconds.50']).toBeLessThanOrEqual(r.observations['tunnel_session_latency_seconds.100'] as number);
    expect(Object.keys(r.phases)).toEqual(['resolve', 'connect', 'tls', 'proxy_connect', 'target']);
  });

  it('every tunnel refused: the batch fails with their reason and phase, each counted, and the series render', async () => {
    lab.faults.set('tunnel-device-offline', true);
    const s = spec({ sessions: 3 }, 5000);
    const r = await runProbe(s, tunnelKind, { log });
    expect(outcome(r), JSON.stringify(r)).toEqual({ success: false, reason: 'device_offline', phase: 'proxy_connect' });
    expect(r.message).toContain('3 of 3 sessions failed (success ratio 0.00 < 1; device_offline x3)');
    expect(r.message).toContain('HTTP 503');
    const m = new Metrics('test', KINDS);
    m.configure([s]);
    m.record(r);
    const { body } = await m.render();
    expect(metricValue(body, 'probe_tunnel_session_failures_total', { probe: 'tunnel-sessions', reason: 'device_offline' })).toBe(3);
    expect(metricValue(body, 'probe_tunnel_session_failures_total', { probe: 'tunnel-sessions', reason: 'timeout' })).toBe(0);
    expect(metricValue(body, 'probe_tunnel_sessions_success_ratio', { probe: 'tunnel-sessions' })).toBe(0);
    expectPromtoolClean(body);
  });

  it("the run's deadline cuts the batch as timeout in proxy_connect, not proxy, and the verdict still counts the sessions", async () => {
    // tunnel-slow-connect holds every CONNECT for 30 s; the batch's own deadline ends the sessions
    // just inside the run's, destroying their TLS sockets while they wait for the proxy's answer.
    lab.faults.set('tunnel-slow-connect', true);
    const r = await run({ sessions: 2 }, 1000);
    expect(outcome(r), JSON.stringify(r)).toEqual({ success: false, reason: 'timeout', phase: 'proxy_connect' });
    expect(r.message).toContain('2 of 2 sessions failed (success ratio 0.00 < 1; timeout x2)');
    expect(r.message).toContain("did not finish within the run's timeout");
    expect(r.observations['tunnel_session_failures.timeout']).toBe(2);
  });
});

describe('maxLatency: a proxy that queues instead of refusing (lab fault tunnel-queue)', () => {
  it('one tunnel at a time passes: it waits one turn (250 ms)', async () => {
    lab.faults.set('tunnel-queue', true);
    const r = await run({ maxLatency: { proxy_connect: '1s' } });
    expect(outcome(r), JSON.stringify(r)).toEqual({ success: true, reason: null, phase: null });
    expect(r.phases.proxy_connect).toBeGreaterThanOrEqual(0.2);
  });

  it('one tunnel over a tighter bound fails as timeout with its own time (no percentile for one)', async () => {
    lab.faults.set('tunnel-queue', true);
    const r = await run({ maxLatency: { proxy_connect: '100ms' } });
    expect(outcome(r), JSON.stringify(r)).toEqual({ success: false, reason: 'timeout', phase: 'proxy_connect' });
    expect(r.message).toMatch(/^proxy_connect \d+\.\dms > maxLatency 100ms$/);
  });

  it('eight at once: every tunnel opens, but proxy_connect p95 is past the bound: timeout with the percentile', async () => {
    lab.faults.set('tunnel-queue', true);
    const r = await run({ sessions: 8, maxLatency: { proxy_connect: '1s' } });
    expect(outcome(r), JSON.stringify(r)).toEqual({ success: false, reason: 'timeout', phase: 'proxy_connect' });
    expect(r.message).toMatch(/^proxy_connect p95 (1\.9|2\.\d)\d*s > maxLatency 1s \(8 sessions: p50 \d/);
    // None was refused: the ratio says all passed, the latency says how long they waited.
    expect(r.observations.tunnel_sessions_success_ratio).toBe(1);
    expect(r.observations['tunnel_session_latency_seconds.100']).toBeGreaterThan(1.9);
  });

  it('a bound on the whole session (total) at another percentile, failing in the phase that took the time', async () => {
    lab.faults.set('tunnel-queue', true);
    const r = await run({ sessions: 4, maxLatency: { total: '400ms', percentile: 50 } });
    expect(outcome(r), JSON.stringify(r)).toEqual({ success: false, reason: 'timeout', phase: 'proxy_connect' });
    expect(r.message).toMatch(/^total p50 \d+(\.\d+)?(ms|s) > maxLatency 400ms \(4 sessions: /);
  });

  it('the same bounds pass on a proxy that does not queue', async () => {
    const r = await run({ sessions: 8, maxLatency: { proxy_connect: '1s', total: '3s' } });
    expect(outcome(r), JSON.stringify(r)).toEqual({ success: true, reason: null, phase: null });
  });
});
