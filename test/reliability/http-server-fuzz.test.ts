import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DaemonProcess, tempDir } from '../helpers/cli.js';

/**
 * The daemon's own HTTP server under hostile requests, from raw sockets: whatever arrives, the
 * process stays up and /healthz keeps answering. A daemon listens on 0.0.0.0 unattended, so one
 * request that kills it stops all monitoring (issue 19: `GET //%/` used to exit it with code 1).
 */

const SEED = 20261130;
let daemon: DaemonProcess;
let port: number;

beforeAll(async () => {
  const dir = tempDir();
  // One probe that fails fast: the daemon is busy with runs while it is attacked.
  fs.writeFileSync(
    path.join(dir, 'probes.yaml'),
    'defaults:\n  interval: 1s\n  timeout: 500ms\nprobes:\n  - name: refused\n    kind: http\n    url: http://127.0.0.1:1/\n',
  );
  daemon = new DaemonProcess(['--config', dir]);
  port = Number(new URL(await daemon.url()).port);
}, 20_000);

afterAll(async () => {
  await daemon?.stop();
});

/** Sends raw bytes, returns what came back (status line first) once the server closes or goes quiet. */
function raw(bytes: string | Buffer, quietMs = 300): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let got = '';
    let timer: NodeJS.Timeout | undefined;
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(got);
    };
    const idle = () => {
      clearTimeout(timer);
      timer = setTimeout(done, quietMs);
    };
    socket.on('data', (d) => {
      got += d.toString('latin1');
      idle();
    });
    socket.on('error', done);
    socket.on('close', done);
    socket.on('connect', () => {
      socket.write(bytes);
      idle();
    });
  });
}

async function stillServing(): Promise<void> {
  expect(daemon.child.exitCode, `the daemon exited; its log:\n${daemon.raw.slice(-3000)}`).toBeNull();
  const res = await fetch(`http://127.0.0.1:${port}/healthz`);
  expect(res.status).toBe(200);
  expect(await res.text()).toBe('ok\n');
}

describe("the daemon's HTTP server under hostile requests", () => {
  it.each(['//%/', 'http://[/', '//:99999/', '/%', '/%ZZ', 'http://', '*', '%', '/metrics?%zz'])(
    'answers request target %s and keeps serving',
    async (target) => {
      const answer = await raw(`GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
      expect(answer).toMatch(/^HTTP\/1\.1 (200|400|404) /);
      await stillServing();
    },
  );

  it('answers an unparsable target with 400', async () => {
    expect(await raw('GET http://[/ HTTP/1.1\r\nHost: x\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 /);
  });

  it('survives random request lines, methods, headers and targets (fast-check, raw sockets)', async () => {
    const token = fc.stringMatching(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,12}$/);
    const target = fc.oneof(
      fc.string({ maxLength: 40 }).map((s) => `/${s}`),
      fc.string({ unit: 'binary', maxLength: 40 }),
      fc.constantFrom('//%/', 'http://[/', '//:99999/', '/metrics', '/probes', '/healthz', '*', 'http://a:b@[::1]:0/x', '/%c0%af'),
      fc
        .tuple(fc.constantFrom('/', '//', 'http://', 'https://'), fc.string({ maxLength: 20 }), fc.constantFrom('', ':', ':99999', ':-1', '%', '[', ']'))
        .map((t) => t.join('')),
    );
    const method = fc.oneof(fc.constantFrom('GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'CONNECT', 'TRACE', 'PRI'), token);
    const header = fc.tuple(fc.oneof(token, fc.string({ maxLength: 10 })), fc.string({ unit: 'binary', maxLength: 30 })).map(([k, v]) => `${k}: ${v}`);
    const request = fc.oneof(
      // A well-formed frame around hostile parts.
      fc
        .tuple(method, target, fc.constantFrom('HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/9', ''), fc.array(header, { maxLength: 5 }))
        .map(([m, t, v, hs]) => `${m} ${t} ${v}\r\n${hs.join('\r\n')}${hs.length ? '\r\n' : ''}\r\n`),
      // Or anything at all.
      fc.string({ unit: 'binary', maxLength: 200 }),
    );
    let batch = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(request, { minLength: 1, maxLength: 20 }), async (requests) => {
        await Promise.all(requests.map((r) => raw(Buffer.from(r, 'latin1'), 100)));
        batch++;
        await stillServing();
      }),
      { seed: SEED, numRuns: 40 },
    );
    expect(batch).toBe(40);
  }, 60_000);
});
