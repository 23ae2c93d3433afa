import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { runCommand, toolPath, type CliResult } from './cli.js';

export { runCommand };

/**
 * A real Docker engine (Debian `docker.io`) for interop tests, started by the test as root on a
 * private socket, data root and exec root, with no iptables and no bridge so that it touches
 * nothing of the host (INTEROP.md). Without a bridge, builds and containers that need the network
 * use `--network host`. Ready in a few seconds; each test file starts one and stops it in afterAll.
 * Storage: `vfs` by default, which works on any filesystem but copies a whole image for every layer
 * and container; `storageDriver: ''` lets dockerd choose (overlay2 where the kernel and the
 * filesystem allow it, else vfs), for tests that build and run real images.
 */

export const dockerdPath = () => toolPath('dockerd', 'docker.io');

/**
 * The CLI of the same package: another `docker` earlier on PATH may be a newer client that wants
 * the buildx plugin for BuildKit builds, which this engine's own CLI has built in.
 */
export const dockerCliPath = () => (fs.existsSync('/usr/bin/docker') ? '/usr/bin/docker' : toolPath('docker', 'docker.io'));

/** What a finished command left: its exit code and output. */
export type CommandResult = CliResult;

export interface Dockerd {
  socketPath: string;
  /** For DOCKER_HOST. */
  host: string;
  /** One request to the engine's API over its socket. */
  engine(method: string, urlPath: string): Promise<{ status: number; body: string }>;
  /** Runs the docker CLI against this engine to completion (BuildKit on), failing after timeoutMs. */
  cli(args: string[], timeoutMs?: number): Promise<CommandResult>;
  /** Stops the engine (and its containers) and removes its folder. */
  stop(): Promise<void>;
}

export function engineRequest(socketPath: string, method: string, urlPath: string): Promise<{ status: number; body: string }> {
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

/**
 * Unmounts what dockerd leaves mounted under its folder (the `exec/netns/default` namespace after
 * any container ran; overlay mounts if it was killed), deepest first, so the folder can be removed.
 */
function unmountUnder(dir: string): void {
  const mounts = fs
    .readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1])
    .filter((m): m is string => m !== undefined && m.startsWith(dir + '/'))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) spawnSync('umount', ['-l', m]);
}

export async function startDockerd(opts: { storageDriver?: string } = {}): Promise<Dockerd> {
  const dockerd = dockerdPath();
  if (!dockerd) throw new Error('dockerd is not installed (Debian package docker.io)');
  // Short: a unix socket path is limited to 107 bytes.
  const dir = fs.mkdtempSync('/tmp/fp-dockerd-');
  const socketPath = path.join(dir, 'docker.sock');
  const host = `unix://${socketPath}`;
  const driver = opts.storageDriver ?? 'vfs';
  const child: ChildProcess = spawn(
    dockerd,
    [
      ...(driver ? [`--storage-driver=${driver}`] : []),
      '--iptables=false',
      '--bridge=none',
      '--ip-masq=false',
      '-H',
      host,
      '--data-root',
      path.join(dir, 'data'),
      '--exec-root',
      path.join(dir, 'exec'),
      '--pidfile',
      path.join(dir, 'docker.pid'),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));

  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      // It stops its containers and containerd first: seconds on a loaded machine.
      const t = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(t);
    }
    unmountUnder(dir);
    fs.rmSync(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + 25_000;
  for (;;) {
    if (child.exitCode !== null) {
      await stop();
      throw new Error(`dockerd exited with ${child.exitCode}:\n${output.slice(-2000)}`);
    }
    const ping = await engineRequest(socketPath, 'GET', '/_ping').catch(() => undefined);
    if (ping?.status === 200 && ping.body === 'OK') break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`dockerd did not answer /_ping within 25s:\n${output.slice(-2000)}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }

  const cli = dockerCliPath();
  return {
    socketPath,
    host,
    engine: (method, urlPath) => engineRequest(socketPath, method, urlPath),
    cli: (args, timeoutMs) => {
      if (!cli) throw new Error('the docker CLI is not installed (Debian package docker.io)');
      return runCommand(cli, args, { env: { ...process.env, DOCKER_HOST: host, DOCKER_BUILDKIT: '1' }, timeoutMs });
    },
    stop,
  };
}
