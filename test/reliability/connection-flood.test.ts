import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateLabKey } from '../../src/lab/ssh-server.js';
import { DaemonProcess, failedRuns, metricValue, passedRuns, runCli, tempDir } from '../helpers/cli.js';
import { httpPeer, rawPeer, type Peer } from '../helpers/http-peers.js';

/**
 * The daemon's own server under a connection flood, with few file descriptors (issue 19). The
 * daemon runs under `ulimit -n 400` with the default --max-connections (128); a flood keeps 1,000
 * idle connections and 100 slowloris clients (a header byte now and then) coming at it. Without a
 * cap the server would take every descriptor and the probes would fail to connect. With it, the
 * probes keep running and passing, /metrics answers throughout, and the server never holds more
 * than the cap. A probe that does run out of descriptors fails as `resources`, never `internal`.
 */

const FD_LIMIT = 400;
const FLOOD_SECONDS = 8;
let dir: string;
let target: Peer;
let silent: Peer;

beforeAll(async () => {
  dir = tempDir('fleetprobe-connflood-');
  target = await httpPeer((req, res) => {
    req.resume();
    res.end('ok');
  });
  silent = await rawPeer(() => undefined);
});
afterAll(async () => {
  await target.close();
  await silent.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Keeps `n` connections to `port` coming (each reopened a second after the server closes it) until stopped. */
function flood(port: number, n: number, slowloris: boolean): { stop(): void; opened(): number } {
  let stopped = false;
  let opened = 0;
  const sockets = new Set<net.Socket>();
  const open = () => {
    if (stopped) return;
    opened++;
    const s = net.connect(port, '127.0.0.1');
    sockets.add(s);
    let drip: NodeJS.Timeout | undefined;
    if (slowloris) s.on('connect', () => (drip = setInterval(() => s.write('X'), 500)).unref());
    s.on('connect', () => slowloris && s.write('GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: '));
    s.on('error', () => undefined);
    s.on('close', () => {
      clearInterval(drip);
      sockets.delete(s);
      setTimeout(open, 1000).unref();
    });
  };
  for (let i = 0; i < n; i++) open();
  return {
    opened: () => opened,
    stop() {
      stopped = true;
      for (const s of sockets) s.destroy();
    },
  };
}

describe('a flood of connections to the daemon', () => {
  it(`keeps probes running and /metrics answering under ulimit -n ${FD_LIMIT}`, async () => {
    const probes = Array.from({ length: 6 }, (_, i) => `  - { name: p${i}, kind: http, url: "${target.url}/${i}" }\n`).join('');
    fs.writeFileSync(path.join(dir, 'probes.yaml'), `defaults:\n  interval: 1s\n  timeout: 800ms\nprobes:\n${probes}`);
    const daemon = new DaemonProcess(['--config', dir], {}, { fdLimit: FD_LIMIT });
    try {
      const base = await daemon.url();
      const port = Number(new URL(base).port);
      const runs = (t: string) => Array.from({ length: 6 }, (_, i) => passedRuns(t, `p${i}`));
      const before = runs(await daemon.waitForMetrics((t) => runs(t).every((n) => n >= 1)));

      const idle = flood(port, 1000, false);
      const slow = flood(port, 100, true);
      let maxOpen = 0;
      let maxFds = 0;
      let scrapes = 0;
      let last = '';
      try {
        for (let s = 0; s < FLOOD_SECONDS; s++) {
          await new Promise((r) => setTimeout(r, 1000));
          const res = await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(5000) });
          expect(res.status).toBe(200);
          last = await res.text();
          scrapes++;
          maxOpen = Math.max(maxOpen, metricValue(last, 'fleetprobe_http_connections') ?? Infinity);
          maxFds = Math.max(maxFds, metricValue(last, 'process_open_fds') ?? Infinity);
        }
        // The flood was real: far more connections than the cap were opened.
        expect(idle.opened() + slow.opened()).toBeGreaterThan(1500);
      } finally {
        idle.stop();
        slow.stop();
      }
      console.log(`connection flood: ${maxOpen} server connections at most, ${maxFds} fds of ${FD_LIMIT}, ${scrapes} scrapes answered`);
      expect(daemon.child.exitCode).toBeNull();
      expect(metricValue(last, 'process_max_fds')).toBe(FD_LIMIT);
      expect(maxOpen).toBeLessThanOrEqual(128);
      expect(maxFds).toBeLessThan(FD_LIMIT * 0.75);
      expect(metricValue(last, 'fleetprobe_http_connections_dropped_total')).toBeGreaterThan(1000);
      // Every probe ran on through the flood and passed every time.
      const after = runs(last);
      after.forEach((n, i) => expect(n - before[i], `p${i}`).toBeGreaterThanOrEqual(FLOOD_SECONDS - 3));
      for (let i = 0; i < 6; i++) expect(failedRuns(last, `p${i}`), `p${i}`).toBe(0);
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
    } finally {
      expect(await daemon.stop()).toBe(0);
    }
  }, 60_000);

  it('a probe that runs out of file descriptors fails as resources, not internal', async () => {
    // 256 sessions at once under ulimit -n 120: most cannot get a socket (EMFILE).
    const key = path.join(dir, 'key');
    fs.writeFileSync(key, generateLabKey('flood').private, { mode: 0o600 });
    fs.writeFileSync(
      path.join(dir, 'many.yaml'),
      `probes:\n  - name: many\n    kind: ssh\n    mode: direct\n    host: 127.0.0.1:${silent.port}\n    user: u\n    sshKey: { file: key }\n` +
        `    hostKeys: "SHA256:${'A'.repeat(43)}"\n    sessions: 256\n    timeout: 5s\n    timeouts: { connect: 1s, handshake: 500ms }\n`,
    );
    const r = await runCli(['run', 'many', '--config', path.join(dir, 'many.yaml'), '--json'], { fdLimit: 120, timeoutMs: 20_000 });
    expect(r.code, r.stderr).toBe(1);
    const result = JSON.parse(r.stdout) as { reason: string; phase: string; message: string };
    expect(result.reason, result.message).toBe('resources');
    expect(result.message).toMatch(/^fleetprobe itself is out of file descriptors \(see process_open_fds and process_max_fds\), not the target: .*EMFILE/);
  }, 30_000);
});
