import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sshKind } from '../../src/kinds/ssh.js';
import { startLab, type Lab } from '../../src/lab/index.js';
import { tempDir } from '../helpers/cli.js';
import { runKindOnce } from '../helpers/run-kind.js';
import { keygen, sshdAvailable, startSshd, type Sshd } from '../helpers/sshd.js';

/**
 * Stock OpenSSH sshd as the platform's SSH proxy (issue 13 item 1): a `ForceCommand` script that,
 * like the real proxy, prints a "host error" line on stderr and exits 0 whatever happened. The
 * line comes from a file the test writes before each run. A bare "host error" is corroborated
 * through the embedded lab's tunnel proxy and API (the device is lab device 1); the verdicts must
 * be those the lab's own proxy gets (test/e2e/ssh-kind.test.ts).
 */

const available = sshdAvailable();

describe.skipIf(!available)('ssh kind with stock OpenSSH as the proxy (ForceCommand, exit 0)', () => {
  let dir: string;
  let sshd: Sshd;
  let lab: Lab;
  let fingerprint: string;

  beforeAll(async () => {
    lab = await startLab();
    dir = tempDir('fleetprobe-sshd-proxy-');
    keygen(path.join(dir, 'user_ed25519'));
    fs.copyFileSync(path.join(dir, 'user_ed25519.pub'), path.join(dir, 'authorized_keys'));
    const script = path.join(dir, 'proxy.sh');
    // The real proxy's shape: the complaint on stderr, exit status 0; stdin (our marker script) unread.
    fs.writeFileSync(script, `#!/bin/sh\ncat '${dir}/wording' >&2\nexit 0\n`, { mode: 0o755 });
    sshd = await startSshd(dir, ['ed25519'], [`ForceCommand ${script}`]);
    fingerprint = execFileSync('ssh-keygen', ['-lf', path.join(dir, 'host_ed25519.pub')], { encoding: 'utf8' }).split(' ')[1];
  }, 20_000);

  afterAll(async () => {
    await sshd?.stop();
    await lab?.close();
  });

  const v = (name: string) => lab.vars[name];
  const probe = (paths: { tunnel?: boolean; api?: boolean } = { tunnel: true }) => ({
    mode: 'proxy',
    sshProxy: `127.0.0.1:${sshd.port}`,
    user: os.userInfo().username,
    sshKey: { file: path.join(dir, 'user_ed25519') },
    hostKeys: fingerprint,
    device: v('LAB_DEVICE_UUID'),
    token: { file: v('LAB_BUILDER_TOKEN_FILE') },
    ...(paths.tunnel ? { tunnel: `127.0.0.1:${v('LAB_TUNNEL_PORT')}`, tunnelTls: { caFile: v('LAB_CA_FILE'), serverName: v('LAB_TUNNEL_HOST') } } : {}),
    ...(paths.api ? { api: v('LAB_API_URL') } : {}),
    corroborate: { timeout: '2s', tls: { caFile: v('LAB_CA_FILE') } },
  });

  const cases: { name: string; wording: string; faults?: string[]; paths?: { tunnel?: boolean; api?: boolean }; want: [string, string, string] }[] = [
    {
      name: 'bare host error, device reachable through the tunnel',
      wording: 'error: host error',
      want: ['device_auth', 'session', 'its SSH banner came through the tunnel'],
    },
    {
      name: 'bare host error, the tunnel says the device is not connected',
      wording: 'error: host error',
      faults: ['tunnel-device-offline'],
      paths: { tunnel: true, api: true },
      want: ['device_offline', 'session', 'the tunnel says it is not reachable'],
    },
    {
      name: 'bare host error, neither the tunnel nor the API can tell',
      wording: 'error: host error',
      faults: ['tunnel-token-revoked', 'api-errors'],
      paths: { tunnel: true, api: true },
      want: ['proxy', 'session', 'neither path could tell'],
    },
    {
      name: '"Connection refused" towards the device',
      wording: 'error: host error: ssh: connect to host x.vpn port 22222: Connection refused',
      want: ['device_offline', 'session', 'Connection refused'],
    },
    {
      name: '"unable to authenticate" towards the device',
      wording: 'error: host error: ssh: handshake failed: ssh: unable to authenticate, attempted methods [none publickey], no supported methods remain',
      want: ['device_auth', 'session', 'no supported methods remain'],
    },
  ];

  for (const c of cases) {
    it(`${c.name} → ${c.want[0]} in ${c.want[1]}`, async () => {
      fs.writeFileSync(path.join(dir, 'wording'), `${c.wording}\n`);
      for (const f of c.faults ?? []) lab.faults.set(f, true);
      try {
        const r = await runKindOnce(sshKind as never, probe(c.paths), { name: 'openssh-proxy', timeoutMs: 8000 });
        expect([r.success, r.reason, r.phase], r.message ?? '').toEqual([false, c.want[0], c.want[1]]);
        expect(r.message).toContain(c.want[2]);
        expect(r.message).toContain('exit status 0');
      } finally {
        for (const f of c.faults ?? []) lab.faults.set(f, false);
      }
    });
  }
});
