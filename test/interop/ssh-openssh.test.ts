import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sshKind } from '../../src/kinds/ssh.js';
import { tempDir } from '../helpers/cli.js';
import { runKindOnce } from '../helpers/run-kind.js';
import { keygen, sshdAvailable, startSshd, type Sshd } from '../helpers/sshd.js';

/**
 * The ssh kind's `direct` and `jump` modes against stock OpenSSH sshd (Debian openssh-server),
 * started here on a free loopback port with keys made by ssh-keygen. The known_hosts file is
 * hashed by `ssh-keygen -H`, so the probe reads what OpenSSH itself writes.
 */

const available = sshdAvailable();

describe.skipIf(!available)('ssh kind against stock OpenSSH sshd', () => {
  let dir: string;
  let port: number;
  let sshd: Sshd;

  beforeAll(async () => {
    dir = tempDir('fleetprobe-sshd-');
    keygen(path.join(dir, 'other_host_ed25519'));
    keygen(path.join(dir, 'user_ed25519'));
    keygen(path.join(dir, 'refused_ed25519'));
    keygen(path.join(dir, 'user_rsa'), 'rsa');
    keygen(path.join(dir, 'user_ecdsa'), 'ecdsa');
    fs.writeFileSync(
      path.join(dir, 'authorized_keys'),
      ['user_ed25519', 'user_rsa', 'user_ecdsa'].map((k) => fs.readFileSync(path.join(dir, `${k}.pub`), 'utf8')).join(''),
    );
    // DEBUG1: sshd logs the algorithms negotiated and every global request it receives.
    sshd = await startSshd(dir, ['ed25519'], [], { logLevel: 'DEBUG1' });
    port = sshd.port;
    const pub = fs.readFileSync(path.join(dir, 'host_ed25519.pub'), 'utf8').split(' ').slice(0, 2).join(' ');
    fs.writeFileSync(path.join(dir, 'known_hosts'), `[127.0.0.1]:${port} ${pub}\n`);
    execFileSync('ssh-keygen', ['-H', '-f', path.join(dir, 'known_hosts')], { stdio: 'ignore' });
  }, 20_000);

  afterAll(() => sshd?.stop());

  const user = os.userInfo().username;
  const run = (fields: Record<string, unknown>) => runKindOnce(sshKind as never, fields, { name: 'openssh' });
  const direct = (extra: Record<string, unknown> = {}) => ({
    mode: 'direct',
    host: `127.0.0.1:${port}`,
    user,
    sshKey: { file: path.join(dir, 'user_ed25519') },
    hostKeys: { file: path.join(dir, 'known_hosts') },
    command: 'uname -s; echo "status-$((40+2))"',
    expect: { stdout: 'Linux\nstatus-42' },
    ...extra,
  });

  it('direct: a real shell runs the command; output and exit status are checked (hashed known_hosts)', async () => {
    const r = await run(direct());
    expect({ success: r.success, message: r.message }).toEqual({ success: true, message: null });
    expect(Object.keys(r.phases)).toEqual(['resolve', 'connect', 'handshake', 'auth', 'session', 'command']);
    const bad = await run(direct({ command: 'echo oops >&2; exit 3', expect: {} }));
    expect([bad.reason, bad.phase]).toEqual(['assertion', 'command']);
    expect(bad.message).toContain('exited with status 3');
    expect(bad.message).toContain('oops');
  });

  it('direct: curve25519 and AES-GCM are negotiated, and sshd is not asked to prove its host keys again (no hostkeys-prove round trip)', async () => {
    const before = sshd.log().length;
    const r = await run(direct());
    expect(r.success, r.message ?? '').toBe(true);
    // sshd's session lines come from its children, just after the session ends.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const log = sshd.log().slice(before);
    expect(log).toContain('kex: algorithm: curve25519-sha256 ');
    expect(log).toMatch(/client->server cipher: aes128-gcm@openssh\.com MAC: <implicit> compression: none/);
    expect(log).not.toContain('hostkeys-prove-00@openssh.com');
  });

  it('direct: RSA and ECDSA user keys sign as sshd expects (the key object made once at load)', async () => {
    for (const key of ['user_rsa', 'user_ecdsa']) {
      const r = await run(direct({ sshKey: { file: path.join(dir, key) } }));
      expect({ key, success: r.success, message: r.message }).toEqual({ key, success: true, message: null });
    }
  });

  it('direct: a pinned fingerprint from ssh-keygen -lf passes', async () => {
    const fp = execFileSync('ssh-keygen', ['-lf', path.join(dir, 'host_ed25519.pub')], { encoding: 'utf8' }).split(' ')[1];
    const r = await run(direct({ hostKeys: fp }));
    expect(r.success, r.message ?? '').toBe(true);
  });

  it('direct: a wrong host key is hostkey in handshake', async () => {
    const other = execFileSync('ssh-keygen', ['-lf', path.join(dir, 'other_host_ed25519.pub')], { encoding: 'utf8' }).split(' ')[1];
    const r = await run(direct({ hostKeys: other }));
    expect([r.success, r.reason, r.phase]).toEqual([false, 'hostkey', 'handshake']);
    expect(r.message).toContain('not a pinned key');
  });

  it('direct: a key sshd does not accept is auth in auth', async () => {
    const r = await run(direct({ sshKey: { file: path.join(dir, 'refused_ed25519') } }));
    expect([r.success, r.reason, r.phase]).toEqual([false, 'auth', 'auth']);
    expect(r.message).toContain(`refused user "${user}"`);
  });

  it('jump: through sshd as the bastion (direct-tcpip) to sshd as the device', async () => {
    const r = await run({
      mode: 'jump',
      bastion: `127.0.0.1:${port}`,
      host: `127.0.0.1:${port}`,
      user,
      deviceUser: user,
      sshKey: { file: path.join(dir, 'user_ed25519') },
      hostKeys: { file: path.join(dir, 'known_hosts') },
      command: 'echo through-the-bastion',
      expect: { stdout: 'through-the-bastion' },
    });
    expect({ success: r.success, message: r.message }).toEqual({ success: true, message: null });
  });

  it('jump: a refused key at the bastion is auth; forwarding to a closed port is connect', async () => {
    const base = {
      mode: 'jump',
      bastion: `127.0.0.1:${port}`,
      user,
      sshKey: { file: path.join(dir, 'user_ed25519') },
      hostKeys: { file: path.join(dir, 'known_hosts') },
    };
    const refused = await run({ ...base, host: `127.0.0.1:${port}`, sshKey: { file: path.join(dir, 'refused_ed25519') } });
    expect([refused.reason, refused.phase]).toEqual(['auth', 'auth']);
    const closed = await run({ ...base, host: '127.0.0.1:1' });
    expect([closed.reason, closed.phase]).toEqual(['connect', 'connect']);
  });
});
