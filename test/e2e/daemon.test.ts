import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DaemonProcess, failedRuns, LAB_URL_PROBE, metricValue, passedRuns, tempDir, writeLabConfig } from '../helpers/cli.js';
import { expectPromtoolClean } from '../helpers/promtool.js';

let daemon: DaemonProcess | undefined;
afterEach(async () => {
  await daemon?.stop();
  daemon = undefined;
});

const up = (t: string, probe: string) => metricValue(t, 'probe_success', { probe }) === 1;

describe('daemon against the embedded lab', () => {
  it('serves metrics that promtool accepts, /healthz, /readyz and /probes; follows a lab fault and its repair', async () => {
    const dir = tempDir();
    writeLabConfig(dir, LAB_URL_PROBE('url-1'));
    daemon = new DaemonProcess(['--lab', '--config', dir]);
    const base = await daemon.url();
    let text = await daemon.waitForMetrics((t) => up(t, 'url-1'));

    // Every phase series and the kind's reasons exist, labels include the static location label;
    // a reason an http probe cannot fail with has no series.
    for (const phase of ['resolve', 'connect', 'tls', 'request', 'transfer']) {
      expect(text).toMatch(new RegExp(`probe_phase_duration_seconds\\{probe="url-1",kind="http",location="test",phase="${phase}"\\} `));
    }
    expect(metricValue(text, 'probe_failures_total', { probe: 'url-1', reason: 'device_offline' })).toBe(0);
    expect(metricValue(text, 'probe_failures_total', { probe: 'url-1', reason: 'status_drift' })).toBeUndefined();
    expect(metricValue(text, 'fleetprobe_config_last_reload_successful')).toBe(1);
    expect(metricValue(text, 'probe_ssl_earliest_cert_expiry', { probe: 'url-1' })! * 1000).toBeGreaterThan(Date.now());

    expectPromtoolClean(text);

    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    expect((await fetch(`${base}/metrics`, { method: 'POST' })).status).toBe(405);
    const probes = (await (await fetch(`${base}/probes`)).json()) as any[];
    expect(probes[0]).toMatchObject({ name: 'url-1', kind: 'http', schedule: 'every 1s', labels: { location: 'test' } });
    expect(probes[0].lastRun).toMatchObject({ success: true, reason: null });

    // Break the device: the metrics follow, with the reason as a label.
    const control = await daemon.controlUrl();
    expect((await fetch(`${control}/faults/device-offline`, { method: 'PUT' })).status).toBe(200);
    text = await daemon.waitForMetrics((t) => metricValue(t, 'probe_success', { probe: 'url-1' }) === 0);
    expect(metricValue(text, 'probe_failures_total', { probe: 'url-1', reason: 'device_offline' })).toBeGreaterThan(0);
    const failed = await daemon.waitForLog((l) => l.probe === 'url-1' && l.result?.reason === 'device_offline');
    expect(failed.level).toBe('warn');
    expect(failed.stateChange).toBe(true);
    const after = (await (await fetch(`${base}/probes`)).json()) as any[];
    expect(after[0].lastRun).toMatchObject({ success: false, reason: 'device_offline', phase: 'transfer' });
    expect(after[0].consecutiveFailures).toBeGreaterThan(0);

    await fetch(`${control}/faults/device-offline`, { method: 'DELETE' });
    await daemon.waitForMetrics((t) => up(t, 'url-1'));
    await daemon.waitForLog((l) => l.probe === 'url-1' && l.stateChange === true && /recovered/.test(l.msg));
  });

  it('SIGHUP applies a good config and keeps the running one when the new one is bad', async () => {
    const dir = tempDir();
    const file = writeLabConfig(dir, LAB_URL_PROBE('url-1'));
    daemon = new DaemonProcess(['--lab', '--config', dir]);
    await daemon.waitForMetrics((t) => up(t, 'url-1'));

    writeLabConfig(dir, LAB_URL_PROBE('url-1') + LAB_URL_PROBE('url-2'));
    daemon.child.kill('SIGHUP');
    await daemon.waitForLog((l) => /configuration reloaded: 2 probes/.test(l.msg));
    await daemon.waitForMetrics((t) => up(t, 'url-2') && metricValue(t, 'fleetprobe_probes_configured', { kind: 'http' }) === 2);

    fs.writeFileSync(file, 'lab: true\nprobes:\n  - name: url-1\n    kind: http\n    url: not a url\n');
    daemon.child.kill('SIGHUP');
    const err = await daemon.waitForLog((l) => /reload failed/.test(l.msg));
    expect(err.level).toBe('error');
    expect(err.msg).toContain(`${file}:5: probes[0].url:`);
    const text = await daemon.metrics();
    expect(metricValue(text, 'fleetprobe_config_last_reload_successful')).toBe(0);
    // The running config goes on: both probes still run.
    const runs = passedRuns(text, 'url-2');
    await daemon.waitForMetrics((t) => passedRuns(t, 'url-2') > runs);

    // Removing a probe removes its series.
    writeLabConfig(dir, LAB_URL_PROBE('url-1'));
    daemon.child.kill('SIGHUP');
    await daemon.waitForMetrics((t) => metricValue(t, 'fleetprobe_config_last_reload_successful') === 1 && !t.includes('probe="url-2"'));
  });

  it('a SIGHUP while the daemon starts is kept for after the start, never fatal', async () => {
    const dir = tempDir();
    writeLabConfig(dir, LAB_URL_PROBE('url-1'));
    daemon = new DaemonProcess(['--lab', '--config', dir]);
    // The lab logs its endpoints before the daemon starts: from then on a reload may be asked for
    // (a config manager's SIGHUP does not wait for the "running" line). SIGHUP's default action
    // would end the process.
    await daemon.waitForLog((l) => l.component === 'lab' && l.endpoints !== undefined);
    const hups = setInterval(() => daemon?.child.kill('SIGHUP'), 5);
    try {
      await daemon.waitForLog((l) => /running 1 probes/.test(String(l.msg)));
      await new Promise((r) => setTimeout(r, 100));
    } finally {
      clearInterval(hups);
    }
    expect(daemon.child.exitCode).toBe(null);
    await daemon.waitForLog((l) => /configuration reloaded: 1 probes/.test(String(l.msg)));
    await daemon.waitForMetrics((t) => up(t, 'url-1'));
  });

  it('SIGTERM aborts runs in flight (not counted as failures), drains and exits 0 promptly', async () => {
    const dir = tempDir();
    writeLabConfig(dir, LAB_URL_PROBE('slow'), 'lab.yaml', 'interval: 10s\n  timeout: 9s');
    daemon = new DaemonProcess(['--lab', '--lab-fault', 'slow-url', '--config', dir, '--log-level', 'debug']);
    await daemon.url();
    // The probe's first run starts within its 10 s interval and then hangs on the slow device.
    await daemon.waitForMetrics((t) => metricValue(t, 'fleetprobe_runs_in_flight') === 1, 15_000);
    const t0 = Date.now();
    daemon.child.kill('SIGTERM');
    expect(await daemon.exit).toBe(0);
    expect(Date.now() - t0).toBeLessThan(3000);
    const aborted = await daemon.waitForLog((l) => l.probe === 'slow' && /aborted by shutdown/.test(l.msg));
    expect(aborted.result.aborted).toBe(true);
    expect(daemon.lines.some((l) => l.probe === 'slow' && (l as any).result?.success === false && !(l as any).result?.aborted)).toBe(false);
    await daemon.waitForLog((l) => l.msg === 'stopped');
  }, 30_000);

  it('refuses to start on an invalid config (exit 2, every problem named)', async () => {
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, 'bad.yaml'), 'probes:\n  - name: x\n    kind: http\n    url: https://example.test/\n    interval: soon\n');
    daemon = new DaemonProcess(['--config', dir]);
    expect(await daemon.exit).toBe(2);
    expect(daemon.raw).toContain(`${path.join(dir, 'bad.yaml')}:5: probes[0].interval: "soon" is not a duration`);
  });

  it('keeps secrets out of logs, metrics and /probes', async () => {
    const canary = 'canary-Zx9-token-do-not-leak';
    const dir = tempDir();
    const probe = LAB_URL_PROBE('secretive', '    headers:\n      authorization: { env: FP_CANARY_TOKEN }\n');
    writeLabConfig(dir, probe);
    daemon = new DaemonProcess(['--lab', '--lab-fault', 'device-offline', '--config', dir, '--log-level', 'debug'], { FP_CANARY_TOKEN: `Bearer ${canary}` });
    const base = await daemon.url();
    await daemon.waitForMetrics((t) => metricValue(t, 'probe_success', { probe: 'secretive' }) === 0);
    const all = daemon.raw + (await daemon.metrics()) + (await (await fetch(`${base}/probes`)).text());
    expect(all).not.toContain(canary);
    expect(all).not.toContain(Buffer.from(`Bearer ${canary}`).toString('base64'));
  });
});

describe('daemon: probes that read a companion', () => {
  it('runs a companion that has no result yet instead of failing the reader at start', async () => {
    const dir = tempDir();
    // Offsets from the names: the reader fires ~1.8 s after start, the companion not before ~29 s.
    const probes = `  - name: banner-companion
    kind: tunnel
    interval: 60s
    tunnel: 127.0.0.1:\${LAB_TUNNEL_PORT}
    tunnelTls: { caFile: "\${LAB_CA_FILE}", serverName: "\${LAB_TUNNEL_HOST}" }
    user: probe-bot
    token: { file: "\${LAB_TUNNEL_TOKEN_FILE}" }
    device: \${LAB_DEVICE3_UUID}
    port: 22222
    expect: { banner: "^SSH-2\\\\.0-" }
  - name: status-reader
    kind: device-status
    interval: 2s
    timeout: 1500ms
    api: \${LAB_API_URL}
    tls: { caFile: "\${LAB_CA_FILE}" }
    token: { file: "\${LAB_BUILDER_TOKEN_FILE}" }
    device: \${LAB_DEVICE3_UUID}
    reachability: banner-companion
`;
    writeLabConfig(dir, probes, 'lab.yaml', 'timeout: 5s');
    daemon = new DaemonProcess(['--lab', '--config', dir]);
    const text = await daemon.waitForMetrics((t) => up(t, 'status-reader') && up(t, 'banner-companion'), 15_000);
    expect(failedRuns(text, 'status-reader')).toBe(0);
    expect(metricValue(text, 'probe_latency_seconds_count', { probe: 'status-reader' })).toBeGreaterThanOrEqual(1);
    expect(daemon.lines.some((l) => (l as any).probe === 'status-reader' && (l as any).level === 'warn')).toBe(false);
  });
});
