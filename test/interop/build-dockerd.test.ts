import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProbeSpec } from '../../src/core/kind.js';
import type { RunResult } from '../../src/core/result.js';
import { runProbe } from '../../src/core/run.js';
import { buildKind } from '../../src/kinds/build.js';
import { ROOT, toolPath } from '../helpers/cli.js';

/**
 * The `docker` target against a real Docker engine (Debian `docker.io`), started by the test as root
 * on a private socket and data root, with no iptables and no bridge so it touches nothing of the host
 * (INTEROP.md). One dockerd for the file: it takes a few seconds to start; each build about one.
 */

const dockerd = toolPath('dockerd', 'docker.io');
const isRoot = process.getuid?.() === 0;
if (dockerd && !isRoot && process.env.CI === 'true') throw new Error('the dockerd interop test must run as root under CI=true');

const log = pino({ level: 'silent' });

function spec(fields: Record<string, unknown>): ProbeSpec {
  return {
    name: 'build-dockerd',
    kind: 'build',
    intervalMs: 30 * 60_000,
    timeoutMs: 60_000,
    labels: {},
    source: { file: 'test/interop/build-dockerd.test.ts' },
    config: buildKind.schema.parse(fields),
    digest: 'test',
  };
}

/** One request to the engine's API over its socket. */
function engine(socketPath: string, method: string, urlPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, method, path: urlPath, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

describe.skipIf(!dockerd || !isRoot)('build kind, docker target, against a real dockerd', () => {
  // Short: a unix socket path is limited to 107 bytes.
  const dir = fs.mkdtempSync('/tmp/fp-dockerd-');
  const socketPath = path.join(dir, 'docker.sock');
  let child: ChildProcess | undefined;
  let output = '';

  beforeAll(async () => {
    child = spawn(
      dockerd!,
      [
        '--storage-driver=vfs',
        '--iptables=false',
        '--bridge=none',
        '--ip-masq=false',
        '-H',
        `unix://${socketPath}`,
        '--data-root',
        path.join(dir, 'data'),
        '--exec-root',
        path.join(dir, 'exec'),
        '--pidfile',
        path.join(dir, 'docker.pid'),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child.stdout!.on('data', (d) => (output += d));
    child.stderr!.on('data', (d) => (output += d));
    const deadline = Date.now() + 25_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`dockerd exited with ${child.exitCode}:\n${output.slice(-2000)}`);
      const ping = await engine(socketPath, 'GET', '/_ping').catch(() => undefined);
      if (ping?.status === 200 && ping.body === 'OK') break;
      if (Date.now() > deadline) throw new Error(`dockerd did not answer /_ping within 25s:\n${output.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }, 30_000);

  afterAll(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child!.once('exit', r));
      child.kill('SIGTERM');
      const t = setTimeout(() => child!.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }, 20_000);

  const docker = () => `unix://${socketPath}`;

  it('a FROM scratch + COPY build passes, and its image is removed afterwards', async () => {
    const r: RunResult = await runProbe(spec({ target: 'docker', docker: docker(), context: path.join(ROOT, 'probes', 'build-context') }), buildKind, { log });
    expect({ success: r.success, reason: r.reason, phase: r.phase }, JSON.stringify(r)).toEqual({ success: true, reason: null, phase: null });
    expect(Object.keys(r.phases)).toEqual(['pack', 'connect', 'upload', 'queue', 'build']);
    const id = r.observations.image_id as string;
    expect(id).toMatch(/^sha256:[0-9a-f]{64}$/);
    // runProbe waits for the kind's teardown: the image is already gone.
    expect((await engine(socketPath, 'GET', `/images/${id}/json`)).status).toBe(404);
  });

  it("a Dockerfile with a bad instruction fails as build_failed with dockerd's error text", async () => {
    const r = await runProbe(spec({ target: 'docker', docker: docker(), dockerfile: 'FROMM scratch\nCOPY fleetprobe-nonce /\n' }), buildKind, { log });
    expect({ success: r.success, reason: r.reason, phase: r.phase }, JSON.stringify(r)).toEqual({ success: false, reason: 'build_failed', phase: 'upload' });
    expect(r.message).toContain('dockerfile parse error line 1: unknown instruction: FROMM');
  });

  it('a step that fails during the build is build_failed in build, quoting the engine', async () => {
    const r = await runProbe(spec({ target: 'docker', docker: docker(), dockerfile: 'FROM scratch\nCOPY no-such-file /\n' }), buildKind, { log });
    expect({ success: r.success, reason: r.reason, phase: r.phase }, JSON.stringify(r)).toEqual({ success: false, reason: 'build_failed', phase: 'build' });
    expect(r.message).toMatch(/the Docker engine reported that the build failed: COPY failed: .*no-such-file/);
  });
});
