// Stock OpenSSH sshd (Debian openssh-server) as the platform's SSH proxy, for the SSH benchmark: a
// `ForceCommand` script that, like the real proxy, takes `host <uuid>` and hands stdin to a shell
// "on the device" (here: this machine), or says "host error" on stderr and exits 0. Keys are made
// by ssh-keygen: an ed25519 host key and an ed25519 user key, as on the lab's proxy.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { freePort, startChild, waitForPort } from './lib.mjs';

export const SSHD = '/usr/sbin/sshd';

function keygen(file) {
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', path.basename(file), '-f', file]);
}

/** Starts sshd in `dir` for device `uuid`; `{port, keyFile, knownHosts, stop}`. */
export async function startStockProxy(dir, uuid) {
  if (!fs.existsSync(SSHD)) throw new Error(`${SSHD} is missing (apt-get install openssh-server)`);
  const hostKey = path.join(dir, 'host_ed25519');
  const keyFile = path.join(dir, 'user_ed25519');
  keygen(hostKey);
  keygen(keyFile);
  fs.copyFileSync(`${keyFile}.pub`, path.join(dir, 'authorized_keys'));
  const script = path.join(dir, 'proxy.sh');
  fs.writeFileSync(script, `#!/bin/sh\n[ "$SSH_ORIGINAL_COMMAND" = "host ${uuid}" ] && exec /bin/sh\necho "error: host error" >&2\nexit 0\n`, { mode: 0o755 });
  const port = await freePort();
  const config = path.join(dir, 'sshd_config');
  fs.writeFileSync(
    config,
    [
      'ListenAddress 127.0.0.1',
      `Port ${port}`,
      `HostKey ${hostKey}`,
      `AuthorizedKeysFile ${dir}/authorized_keys`,
      `PidFile ${dir}/sshd.pid`,
      'UsePAM no',
      'StrictModes no',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PermitRootLogin prohibit-password',
      // Many sessions a second from one address: sshd's defaults (10:30:100) would drop some.
      'MaxStartups 200',
      `ForceCommand ${script}`,
      // The user's shell runs the ForceCommand; bash started by sshd sources ~/.bashrc (here root's,
      // which runs pyenv init: seconds, and it hangs under load) unless SHLVL says it is nested.
      'SetEnv SHLVL=1',
      'LogLevel ERROR',
      '',
    ].join('\n'),
  );
  fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const proc = startChild(SSHD, ['-D', '-e', '-f', config]);
  await waitForPort(port);
  const knownHosts = path.join(dir, 'known_hosts');
  const pub = fs.readFileSync(`${hostKey}.pub`, 'utf8').split(' ').slice(0, 2).join(' ');
  fs.writeFileSync(knownHosts, `[127.0.0.1]:${port} ${pub}\n`);
  return { port, keyFile, knownHosts, proc, stop: () => proc.stop() };
}
