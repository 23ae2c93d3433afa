import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DaemonProcess, metricValue, passedRuns, tempDir, writeLabConfig } from '../helpers/cli.js';
import { rawPeer } from '../helpers/http-peers.js';

/**
 * Held tunnels in a real daemon (a child process with the embedded lab): the tunnel stays open,
 * keepalives flow, the lab cuts it (`tunnel-drop`) or refuses to reopen it (`tunnel-device-offline`),
 * and what an operator sees is the metrics text.
 */

const HELD = `  - name: held
    kind: tunnel
    tunnel: 127.0.0.1:\${LAB_TUNNEL_PORT}
    tunnelTls: { caFile: "\${LAB_CA_FILE}", serverName: "\${LAB_TUNNEL_HOST}" }
    token: { file: "\${LAB_TUNNEL_TOKEN_FILE}" }
    device: \${LAB_DEVICE_UUID}
    http: { path: /health, expect: { status: [200] } }
    hold: 1h
    stepTimeout: 800ms
`;

const sel = { probe: 'held' };
const value = (text: string, name: string, labels: Record<string, string> = {}) => metricValue(text, name, { ...sel, ...labels }) ?? 0;

async function setFault(control: string, name: string, on: boolean): Promise<void> {
  const res = await fetch(`${control}/faults/${name}`, { method: on ? 'PUT' : 'DELETE' });
  expect(res.status).toBe(200);
}

/**
 * A raw CONNECT proxy whose "device" is an HTTP/1.0 app: it answers one request and closes the
 * tunnel (issue 13 item 2). Records when each CONNECT arrived.
 */
async function closingProxy(): Promise<{ port: number; opens: number[]; close: () => Promise<void> }> {
  const opens: number[] = [];
  const peer = await rawPeer((socket) => {
    socket.on('error', () => undefined);
    let buf = '';
    let connected = false;
    socket.on('data', (d) => {
      buf += d.toString('latin1');
      if (!buf.includes('\r\n\r\n')) return;
      if (!connected) {
        connected = true;
        opens.push(Date.now());
        buf = buf.slice(buf.indexOf('\r\n\r\n') + 4);
        socket.write('HTTP/1.1 200 Connection established\r\n\r\n');
        if (!buf.includes('\r\n\r\n')) return;
      }
      socket.end('HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok');
    });
  });
  return { port: peer.port, opens, close: () => peer.close() };
}

describe('held tunnels in the daemon', () => {
  let daemon: DaemonProcess | undefined;
  afterEach(async () => {
    await daemon?.stop();
    daemon = undefined;
  });

  it('holds a tunnel, counts interruptions, is down (probe_success 0) while it cannot reopen, and recovers', async () => {
    const file = writeLabConfig(tempDir(), HELD);
    daemon = new DaemonProcess(['--lab', '--config', file]);
    const control = await daemon.controlUrl();

    // Up, and held across keepalives (interval 1s from the test defaults) on one tunnel.
    let text = await daemon.waitForMetrics((t) => value(t, 'fleetprobe_tunnel_held_seconds') >= 1.5);
    expect(value(text, 'probe_success')).toBe(1);
    expect(passedRuns(text, 'held')).toBe(1);
    expect(value(text, 'fleetprobe_tunnel_interruptions_total')).toBe(0);
    expect(text).toMatch(/probe_phase_duration_seconds\{[^}]*probe="held"[^}]*phase="hold"/);
    // Each passed keepalive moves the last run (not a run counted): ProbeNotRunning, which compares
    // the last run with the interval, sees a tunnel held for hours as running.
    const opened = value(text, 'probe_last_run_timestamp_seconds');
    text = await daemon.waitForMetrics((t) => value(t, 'fleetprobe_tunnel_held_seconds') >= 3.5);
    expect(value(text, 'probe_last_run_timestamp_seconds')).toBeGreaterThan(opened + 1.5);
    expect(Date.now() / 1000 - value(text, 'probe_last_run_timestamp_seconds')).toBeLessThan(3 * value(text, 'probe_interval_seconds'));
    expect(value(text, 'probe_last_success_timestamp_seconds')).toBe(value(text, 'probe_last_run_timestamp_seconds'));
    expect(passedRuns(text, 'held')).toBe(1);
    const lastKeepalive = value(text, 'probe_last_run_timestamp_seconds');

    // A deploy: tunnels cut, and the device unreachable for a while.
    await setFault(control, 'tunnel-device-offline', true);
    await setFault(control, 'tunnel-drop', true);
    text = await daemon.waitForMetrics((t) => value(t, 'probe_failures_total', { reason: 'device_offline' }) >= 1);
    expect(value(text, 'probe_success')).toBe(0);
    expect(value(text, 'fleetprobe_tunnel_interruptions_total')).toBe(1);
    expect(value(text, 'fleetprobe_tunnel_held_seconds')).toBe(0);
    // The interruption (a failed run that started when the hold did) does not move the last run back.
    expect(value(text, 'probe_last_run_timestamp_seconds')).toBeGreaterThanOrEqual(lastKeepalive);
    // The cut itself: a reset of the held tunnel, in phase hold.
    const cut = await daemon.waitForLog((l) => l.result?.phase === 'hold');
    expect(cut.result).toMatchObject({ success: false, reason: 'connect', phase: 'hold' });
    expect(cut.result.message).toMatch(/the tunnel was interrupted after being held \d+\.\ds/);

    // Back: the tunnel reopens (with backoff), the interruption's length is recorded.
    // Stop cutting first, so the tunnel that reopens is not cut again (that would be a second interruption).
    await setFault(control, 'tunnel-drop', false);
    await setFault(control, 'tunnel-device-offline', false);
    text = await daemon.waitForMetrics((t) => value(t, 'probe_success') === 1 && value(t, 'fleetprobe_tunnel_last_interruption_seconds') > 0, 20_000);
    const down = value(text, 'fleetprobe_tunnel_last_interruption_seconds');
    expect(down).toBeGreaterThan(0);
    expect(value(text, 'fleetprobe_tunnel_down_seconds_total')).toBeCloseTo(down, 6);
    expect(value(text, 'fleetprobe_tunnel_interruptions_total')).toBe(1);
    await daemon.waitForLog((l) => /tunnel back after an interruption of/.test(String(l.msg)));

    // SIGTERM closes the held tunnel and exits cleanly.
    expect(await daemon.stop()).toBe(0);
    expect(daemon.raw).not.toMatch(/crashed|a bug in fleetprobe/);
  });

  it('tunnel-drop: a held tunnel cut again and again counts every interruption and keeps reconnecting', async () => {
    const file = writeLabConfig(tempDir(), HELD);
    daemon = new DaemonProcess(['--lab', '--lab-fault', 'tunnel-drop', '--config', file]);
    const text = await daemon.waitForMetrics((t) => value(t, 'fleetprobe_tunnel_interruptions_total') >= 3, 25_000);
    expect(passedRuns(text, 'held')).toBeGreaterThanOrEqual(3);
    expect(value(text, 'probe_failures_total', { reason: 'connect' })).toBeGreaterThanOrEqual(3);
    // Every interruption but the last has ended: its downtime is counted.
    expect(value(text, 'fleetprobe_tunnel_down_seconds_total')).toBeGreaterThan(0);
  });

  it('a device that closes the tunnel right after it opens: at most one open per interval, each a failure, no interruption', async () => {
    const proxy = await closingProxy();
    try {
      const dir = tempDir();
      fs.writeFileSync(
        path.join(dir, 'closing.yaml'),
        `defaults:
  interval: 1s
  timeout: 800ms
probes:
  - name: held
    kind: tunnel
    tunnel: 127.0.0.1:${proxy.port}
    tunnelTls: false
    token: { env: CLOSING_TOKEN }
    device: 0123456789abcdef0123456789abcdef
    http: { path: /health, expect: { status: [200], body: ok } }
    hold: 1h
    stepTimeout: 800ms
`,
      );
      daemon = new DaemonProcess(['--config', dir], { CLOSING_TOKEN: 'closing-token' });
      // At least 5 intervals after the first open.
      await daemon.waitForMetrics(() => proxy.opens.length > 0 && Date.now() - proxy.opens[0] >= 6000, 20_000);
      const opens = [...proxy.opens];
      const span = opens[opens.length - 1] - opens[0];
      const gaps = opens.slice(1).map((t, i) => t - opens[i]);
      // Never two opens within one interval (a little slack for when each CONNECT reaches the peer),
      // so never more opens than intervals started; the backoff grows, so fewer still.
      expect(opens.length, `opens at ${gaps.join(', ')} ms apart`).toBeGreaterThanOrEqual(3);
      expect(Math.min(...gaps), `gaps ${gaps.join(', ')} ms`).toBeGreaterThanOrEqual(950);
      expect(opens.length).toBeLessThanOrEqual(Math.floor(span / 1000) + 1);
      const failed = await daemon.waitForLog((l) => l.result?.phase === 'hold');
      expect(failed.result).toMatchObject({ success: false, reason: 'connect', phase: 'hold' });
      expect(failed.result.message).toMatch(/the device closed the tunnel right after it opened/);
      const text = await daemon.metrics();
      expect(value(text, 'fleetprobe_tunnel_interruptions_total')).toBe(0);
      expect(value(text, 'probe_failures_total', { reason: 'connect' })).toBeGreaterThanOrEqual(2);
      expect(daemon.raw).not.toMatch(/was interrupted after being held/);
    } finally {
      await proxy.close();
    }
  }, 30_000);
});
