import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sshKind } from '../../src/kinds/ssh.js';
import { runCli, tempDir } from '../helpers/cli.js';
import { runKindOnce } from '../helpers/run-kind.js';
import { keygen, sshdAvailable, startSshd, type Sshd } from '../helpers/sshd.js';

/**
 * `fleetprobe hostkey` against stock OpenSSH sshd holding an ed25519, an ECDSA and an RSA host
 * key: what it prints is what ssh-keygen says of sshd's own key files, OpenSSH's `ssh` logs in with
 * it as its only known_hosts under StrictHostKeyChecking=yes (with each key type), and the ssh
 * kind pins the host with it.
 */

const available = sshdAvailable();
const user = os.userInfo().username;

describe.skipIf(!available)('fleetprobe hostkey against stock OpenSSH sshd', () => {
  let dir: string;
  let sshd: Sshd;
  let out: { code: number | null; stdout: string; stderr: string };
  let knownHosts: string;

  beforeAll(async () => {
    dir = tempDir('fleetprobe-hostkey-');
    keygen(path.join(dir, 'user_ed25519'));
    keygen(path.join(dir, 'impostor_ed25519'));
    fs.copyFileSync(path.join(dir, 'user_ed25519.pub'), path.join(dir, 'authorized_keys'));
    sshd = await startSshd(dir, ['ed25519', 'ecdsa', 'rsa']);
    out = await runCli(['hostkey', `127.0.0.1:${sshd.port}`]);
    knownHosts = path.join(dir, 'known_hosts');
    fs.writeFileSync(knownHosts, out.stdout);
  }, 30_000);

  afterAll(() => sshd?.stop());

  /** OpenSSH's client with nothing but `knownHosts` to trust, logging in with the user key. */
  const ssh = (file: string, hostKeyAlgorithm: string) =>
    spawnSync(
      'ssh',
      [
        '-F',
        '/dev/null',
        '-o',
        'BatchMode=yes',
        '-o',
        'StrictHostKeyChecking=yes',
        '-o',
        `UserKnownHostsFile=${file}`,
        '-o',
        'GlobalKnownHostsFile=/dev/null',
        '-o',
        `HostKeyAlgorithms=${hostKeyAlgorithm}`,
        '-o',
        'IdentitiesOnly=yes',
        '-i',
        path.join(dir, 'user_ed25519'),
        '-p',
        String(sshd.port),
        `${user}@127.0.0.1`,
        'echo logged-in',
      ],
      { encoding: 'utf8', timeout: 15_000 },
    );

  it("prints one known_hosts line per host key, equal to sshd's key files, and the fingerprints ssh-keygen -lf prints", () => {
    expect(out.code, out.stderr).toBe(0);
    const name = `[127.0.0.1]:${sshd.port}`;
    const lines = out.stdout.split('\n').filter((l) => l && !l.startsWith('#'));
    const expected = sshd.hostKeys.map((k) => `${name} ${fs.readFileSync(`${k}.pub`, 'utf8').split(' ').slice(0, 2).join(' ')}`);
    expect(lines.sort()).toEqual(expected.sort());
    for (const k of sshd.hostKeys) {
      const [, fp] = execFileSync('ssh-keygen', ['-lf', `${k}.pub`], { encoding: 'utf8' }).split(' ');
      const type = fs.readFileSync(`${k}.pub`, 'utf8').split(' ')[0];
      expect(out.stdout).toContain(`#   ${type} ${fp}\n`);
    }
    // Fetched over plain TCP: the user is told to confirm the fingerprints elsewhere.
    expect(out.stderr).toMatch(/nothing authenticated this connection.*compare the fingerprints/);
    expect(execFileSync('ssh-keygen', ['-F', name, '-f', knownHosts], { encoding: 'utf8' })).toMatch(/found: line/);
  });

  it.each(['ssh-ed25519', 'ecdsa-sha2-nistp256', 'rsa-sha2-512'])(
    'OpenSSH ssh logs in with StrictHostKeyChecking=yes and only that output as known_hosts (%s)',
    (algorithm) => {
      const r = ssh(knownHosts, algorithm);
      expect({ status: r.status, stdout: r.stdout }, r.stderr).toEqual({ status: 0, stdout: 'logged-in\n' });
    },
  );

  it('control: the same ssh refuses a known_hosts that lists another key for the server', () => {
    const impostor = fs.readFileSync(path.join(dir, 'impostor_ed25519.pub'), 'utf8').split(' ').slice(0, 2).join(' ');
    const wrong = path.join(dir, 'wrong_known_hosts');
    fs.writeFileSync(wrong, `[127.0.0.1]:${sshd.port} ${impostor}\n`);
    const r = ssh(wrong, 'ssh-ed25519');
    expect(r.status).toBe(255);
    expect(r.stderr).toMatch(/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/);
  });

  it('the ssh kind pins the server with the output: as a known_hosts file, and by a printed fingerprint', async () => {
    const fingerprints = [...out.stdout.matchAll(/^#\s+\S+ (SHA256:\S+)$/gm)].map((m) => m[1]);
    expect(fingerprints).toHaveLength(3);
    const run = (hostKeys: unknown) =>
      runKindOnce(sshKind as never, {
        mode: 'direct',
        host: `127.0.0.1:${sshd.port}`,
        user,
        sshKey: { file: path.join(dir, 'user_ed25519') },
        hostKeys,
        command: 'echo pinned',
        expect: { stdout: 'pinned' },
      });
    for (const hostKeys of [{ file: knownHosts }, fingerprints]) {
      const r = await run(hostKeys);
      expect({ success: r.success, message: r.message }).toEqual({ success: true, message: null });
    }
  });
});
