import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProbeSpec } from '../../src/core/kind.js';
import type { RunResult } from '../../src/core/result.js';
import { runProbe } from '../../src/core/run.js';
import { buildKind } from '../../src/kinds/build.js';
import { ROOT } from '../helpers/cli.js';
import { dockerdPath, startDockerd, type Dockerd } from '../helpers/dockerd.js';

/**
 * The `docker` target against a real Docker engine (Debian `docker.io`), started by the test as root
 * on a private socket and data root, with no iptables and no bridge so it touches nothing of the host
 * (INTEROP.md, test/helpers/dockerd.ts). One dockerd for the file: it takes a few seconds to start;
 * each build about one.
 */

const dockerd = dockerdPath();
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

describe.skipIf(!dockerd || !isRoot)('build kind, docker target, against a real dockerd', () => {
  let daemon: Dockerd | undefined;

  beforeAll(async () => {
    daemon = await startDockerd();
  }, 30_000);

  afterAll(async () => {
    await daemon?.stop();
  }, 45_000);

  const docker = () => daemon!.host;

  it('a FROM scratch + COPY build passes, and its image is removed afterwards', async () => {
    const r: RunResult = await runProbe(spec({ target: 'docker', docker: docker(), context: path.join(ROOT, 'probes', 'build-context') }), buildKind, { log });
    expect({ success: r.success, reason: r.reason, phase: r.phase }, JSON.stringify(r)).toEqual({ success: true, reason: null, phase: null });
    expect(Object.keys(r.phases)).toEqual(['pack', 'connect', 'upload', 'queue', 'build']);
    const id = r.observations.image_id as string;
    expect(id).toMatch(/^sha256:[0-9a-f]{64}$/);
    // runProbe waits for the kind's teardown: the image is already gone.
    expect((await daemon!.engine('GET', `/images/${id}/json`)).status).toBe(404);
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
