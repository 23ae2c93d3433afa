import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DaemonProcess, metricValue, tempDir } from '../helpers/cli.js';

/**
 * A device that never stops writing. A CONNECT proxy of our own answers 200, then the "device"
 * floods the tunnel at about 50 MB/s (with a `pong` line now and then, so the held
 * tunnel's keepalive still matches). The daemon keeps a bounded window of what it reads: its RSS
 * stays within 50 MB of where it started, for held tunnels between keepalives and for scheduled
 * runs alike (issue 19: a held tunnel used to grow until `RangeError: Invalid string length`).
 */

const FLOOD_SECONDS = Number(process.env.FLEETPROBE_FLOOD_SECONDS ?? 30);
const CHUNK = Buffer.from(('x'.repeat(1000) + '\n').repeat(63) + 'pong\n');

function floodingProxy(): Promise<{ port: number; bytes: () => number; close: () => void }> {
  let bytes = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
    let head = '';
    const onHead = (d: Buffer) => {
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      socket.off('data', onHead);
      socket.resume();
      socket.write('HTTP/1.1 200 Connection established\r\n\r\nSSH-2.0-flood\r\n');
      // About 50 MB/s (8 chunks every 10 ms), paused while the socket is full: eight times the
      // 6 MB/s that grew a held tunnel by 258 MB in 40 s, and steady enough that what is measured
      // is the daemon's buffering, not how far the GC lags behind a machine-speed flood.
      let full = false;
      socket.on('drain', () => (full = false));
      const timer = setInterval(() => {
        if (socket.destroyed || !socket.writable) return clearInterval(timer);
        for (let i = 0; i < 8 && !full; i++) {
          bytes += CHUNK.length;
          full = !socket.write(CHUNK);
        }
      }, 10);
      socket.on('close', () => clearInterval(timer));
    };
    socket.on('data', onHead);
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({
        port: (server.address() as net.AddressInfo).port,
        bytes: () => bytes,
        close: () => {
          for (const s of sockets) s.destroy();
          server.close();
        },
      }),
    ),
  );
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) / 1024;
}

describe('a device that floods the tunnel', () => {
  let daemon: DaemonProcess | undefined;
  let proxy: Awaited<ReturnType<typeof floodingProxy>> | undefined;
  afterAll(async () => {
    await daemon?.stop();
    proxy?.close();
  });

  it(
    `keeps the daemon's RSS within 50 MB over ${FLOOD_SECONDS}s, held and scheduled`,
    async () => {
      proxy = await floodingProxy();
      const dir = tempDir();
      const common = `    kind: tunnel
    tunnel: 127.0.0.1:${proxy.port}
    tunnelTls: false
    token: { env: FLOOD_TOKEN }
    device: 0123456789abcdef0123456789abcdef
    port: 22222
    stepTimeout: 1s
`;
      fs.writeFileSync(
        path.join(dir, 'flood.yaml'),
        `defaults:
  interval: 2s
  timeout: 1500ms
probes:
  - name: flood-held
${common}    steps: [{ send: "ping\\n", expect: pong }]
    hold: 1h
  - name: flood-scheduled
${common}    steps: [{ send: "ping\\n", expect: "never-sent" }]
`,
      );
      daemon = new DaemonProcess(['--config', dir], { FLOOD_TOKEN: 'flood-token' });
      const pid = daemon.child.pid!;
      await daemon.waitForMetrics((t) => metricValue(t, 'probe_success', { probe: 'flood-held' }) === 1);
      // Let it settle (first runs, JIT, heap growth to its working size), then take the baseline.
      await new Promise((r) => setTimeout(r, 3000));
      const start = rssMb(pid);
      const startBytes = proxy.bytes();
      let max = start;
      for (let s = 0; s < FLOOD_SECONDS; s++) {
        await new Promise((r) => setTimeout(r, 1000));
        expect(daemon.child.exitCode, daemon.raw.slice(-2000)).toBeNull();
        max = Math.max(max, rssMb(pid));
      }
      const sentMb = (proxy.bytes() - startBytes) / 1024 / 1024;
      const text = await daemon.metrics();
      console.log(`flood: ${sentMb.toFixed(0)} MB sent in ${FLOOD_SECONDS}s; daemon RSS ${start.toFixed(0)} -> max ${max.toFixed(0)} MB`);
      // The flood was real (well beyond any window), and the memory did not follow it.
      expect(sentMb).toBeGreaterThan(FLOOD_SECONDS * 20);
      expect(max - start).toBeLessThan(50);
      // The held tunnel stayed up on one connection: its keepalives matched inside the window.
      expect(metricValue(text, 'probe_success', { probe: 'flood-held' })).toBe(1);
      expect(metricValue(text, 'fleetprobe_tunnel_interruptions_total', { probe: 'flood-held' })).toBe(0);
      // The scheduled probe fails as an assertion on its window, and says so.
      expect(metricValue(text, 'probe_failures_total', { probe: 'flood-scheduled', reason: 'assertion' })).toBeGreaterThan(0);
      const failed = await daemon.waitForLog((l) => l.probe === 'flood-scheduled' && l.result?.reason === 'assertion');
      expect(failed.result.message).toMatch(/not found in a window of 65536 characters/);

      // A stop closes the held tunnel and reports what was discarded.
      expect(await daemon.stop()).toBe(0);
      const dropped = daemon.lines.find((l) => l.probe === 'flood-held' && typeof l.discardedChars === 'number');
      expect(dropped?.discardedChars).toBeGreaterThan(1024 * 1024);
      daemon = undefined;
    },
    (FLOOD_SECONDS + 30) * 1000,
  );
});
