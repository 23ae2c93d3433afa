import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import zlib from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { DaemonProcess, metricValue, tempDir } from '../helpers/cli.js';
import { expectPromtoolClean } from '../helpers/promtool.js';

/**
 * /metrics as Prometheus fetches it: `Accept-Encoding: gzip`. The daemon runs the package's lab
 * probes (every kind) against the embedded lab.
 */

let daemon: DaemonProcess | undefined;
let big: DaemonProcess | undefined;
afterAll(async () => {
  await Promise.all([daemon?.stop(), big?.stop()]);
});

/** One raw GET (no client that decompresses on its own): status, headers and the bytes as sent. */
function get(url: string, headers: Record<string, string>): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
  });
}

describe('/metrics with Accept-Encoding: gzip', () => {
  it('is gzip that decompresses to the exposition, which `promtool check metrics` accepts', { timeout: 60_000 }, async () => {
    daemon = new DaemonProcess(['--lab']);
    const base = await daemon.url();
    // Each lab probe starts at its own offset within its interval (15 s): wait for a few kinds to have run.
    await daemon.waitForMetrics((t) => ['lab-url', 'lab-ssh', 'lab-tunnel-http'].every((probe) => metricValue(t, 'probe_success', { probe }) === 1), 40_000);

    // What Prometheus sends.
    const gz = await get(`${base}/metrics`, { 'accept-encoding': 'gzip', accept: 'text/plain;version=0.0.4;q=0.9,*/*;q=0.1' });
    expect(gz.status).toBe(200);
    expect(gz.headers['content-encoding']).toBe('gzip');
    expect(gz.headers.vary).toMatch(/accept-encoding/i);
    expect(gz.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    expect([...gz.body.subarray(0, 2)]).toEqual([0x1f, 0x8b]);
    const text = zlib.gunzipSync(gz.body).toString('utf8');
    expect(gz.body.length).toBeLessThan(text.length / 3);
    expect(metricValue(text, 'probe_success', { probe: 'lab-url' })).toBe(1);
    expect(metricValue(text, 'fleetprobe_build_info', {})).toBe(1);

    expectPromtoolClean(text);

    // Without gzip among the accepted codings (absent, or refused with q=0): plain text, the same families.
    for (const headers of [{}, { 'accept-encoding': 'gzip;q=0, identity' }, { 'accept-encoding': 'br' }] as Record<string, string>[]) {
      const plain = await get(`${base}/metrics`, headers);
      expect(plain.headers['content-encoding'], JSON.stringify(headers)).toBeUndefined();
      const families = (t: string) => [...t.matchAll(/^# TYPE (\S+)/gm)].map((m) => m[1]);
      expect(families(plain.body.toString('utf8'))).toEqual(families(text));
    }
  });

  it('a body of several MB (compressed in 1 MB output chunks) is whole, and promtool accepts it', { timeout: 60_000 }, async () => {
    // 4,000 http probes, none due within the test (a day apart): every series at 0, about 6 MB.
    const dir = tempDir();
    const probes = Array.from({ length: 4000 }, (_, i) => `  - { name: many-${i}, kind: http, url: "http://127.0.0.1:1/${i}" }`).join('\n');
    fs.writeFileSync(path.join(dir, 'many.yaml'), `defaults:\n  interval: 1d\n  labels: { location: test }\nprobes:\n${probes}\n`);
    big = new DaemonProcess(['--config', dir]);
    const base = await big.url();
    await big.waitForMetrics((t) => metricValue(t, 'fleetprobe_probes_configured', { kind: 'http' }) === 4000, 30_000);
    const gz = await get(`${base}/metrics`, { 'accept-encoding': 'gzip' });
    expect(gz.headers['content-encoding']).toBe('gzip');
    const text = zlib.gunzipSync(gz.body).toString('utf8');
    const plain = (await get(`${base}/metrics`, {})).body.toString('utf8');
    expect(text.length).toBeGreaterThan(4 << 20);
    expect(gz.body.length).toBeLessThan(text.length / 5);
    // Every probe's series either way (20 a probe that has not run: 5 phases, 7 reasons, 4 buckets,
    // +Inf, _sum, _count and its interval; a probe whose turn came meanwhile has a few more).
    for (const t of [text, plain]) {
      expect(t.split('\n').filter((l) => l.startsWith('probe_interval_seconds{probe="many-'))).toHaveLength(4000);
      expect(t.split('\n').filter((l) => l.includes('probe="many-')).length).toBeGreaterThanOrEqual(4000 * 20);
    }
    expect(metricValue(text, 'probe_interval_seconds', { probe: 'many-3999' })).toBe(86400);
    expectPromtoolClean(text);
  });
});
