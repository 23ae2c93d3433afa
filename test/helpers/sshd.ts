import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { freePort } from './cli.js';

/**
 * Stock OpenSSH sshd (Debian openssh-server) as a test peer: started on a free loopback port with
 * host keys made by ssh-keygen, public-key login only, for the keys in `authorized_keys`.
 */

export const SSHD = '/usr/sbin/sshd';

/** Whether sshd and ssh-keygen are installed; under CI=true their absence is a failure, not a skip. */
export function sshdAvailable(): boolean {
  const available = fs.existsSync(SSHD) && fs.existsSync('/usr/bin/ssh-keygen');
  if (!available && process.env.CI === 'true') throw new Error(`${SSHD} and ssh-keygen are required under CI=true (Debian openssh-server, openssh-client)`);
  return available;
}

/** A key pair made by ssh-keygen at `file` (and `file.pub`), of the given type. */
export function keygen(file: string, type = 'ed25519'): void {
  execFileSync('ssh-keygen', ['-q', '-t', type, '-N', '', '-C', path.basename(file), '-f', file]);
}

export interface Sshd {
  port: number;
  /** The host keys' private files, in the order sshd was given them. */
  hostKeys: string[];
  /** What sshd logged so far (its sessions' lines too, at `logLevel`). */
  log(): string;
  stop(): Promise<void>;
}

async function waitForBanner(port: number, child: ChildProcess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('data', (d) => (s.destroy(), resolve(d.toString().startsWith('SSH-2.0-'))));
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`sshd did not start: ${stderr()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Starts sshd in `dir` with a host key of each of `hostKeyTypes` (made here as `host_<type>`) and
 * `dir/authorized_keys` for every user, plus `extraConfig` lines (e.g. a `ForceCommand`). Stop it
 * with `stop()`.
 */
export async function startSshd(
  dir: string,
  hostKeyTypes: string[] = ['ed25519'],
  extraConfig: string[] = [],
  opts: { logLevel?: string } = {},
): Promise<Sshd> {
  const hostKeys = hostKeyTypes.map((t) => path.join(dir, `host_${t}`));
  hostKeys.forEach((file, i) => keygen(file, hostKeyTypes[i]));
  if (!fs.existsSync(path.join(dir, 'authorized_keys'))) fs.writeFileSync(path.join(dir, 'authorized_keys'), '');
  const port = await freePort();
  fs.writeFileSync(
    path.join(dir, 'sshd_config'),
    [
      'ListenAddress 127.0.0.1',
      `Port ${port}`,
      ...hostKeys.map((k) => `HostKey ${k}`),
      `AuthorizedKeysFile ${dir}/authorized_keys`,
      `PidFile ${dir}/sshd.pid`,
      'UsePAM no',
      'StrictModes no',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PermitRootLogin prohibit-password',
      'AllowTcpForwarding yes',
      'LogLevel ERROR',
      // Debian's bash sources ~/.bashrc for commands run by sshd. A root ~/.bashrc that does slow or
      // locking work (pyenv's rehash waits on a lock file a killed session can leave behind) then
      // stalls every session of the test; a HOME with no rc file keeps the peer stock and quick.
      `SetEnv HOME=${dir}`,
      ...extraConfig,
      '',
    ].join('\n'),
  );
  fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  // -o comes before the file, and sshd keeps the first value it reads of a keyword.
  const logLevel = opts.logLevel ? ['-o', `LogLevel=${opts.logLevel}`] : [];
  const sshd = spawn(SSHD, ['-D', '-e', ...logLevel, '-f', path.join(dir, 'sshd_config')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  sshd.stderr!.on('data', (d) => (stderr += d));
  await waitForBanner(port, sshd, () => stderr);
  return {
    port,
    hostKeys,
    log: () => stderr,
    async stop() {
      if (sshd.exitCode !== null) return;
      const exited = new Promise((r) => sshd.once('exit', r));
      sshd.kill('SIGTERM');
      await exited;
    },
  };
}
