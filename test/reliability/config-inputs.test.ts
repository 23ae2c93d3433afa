import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runProbe } from '../../src/core/run.js';
import { KINDS } from '../../src/kinds/index.js';
import { DaemonProcess, metricValue, runCli, tempDir } from '../helpers/cli.js';
import { httpsPeer, selfSignedCert, type Peer } from '../helpers/http-peers.js';
import { makeSpec } from './matrix-cases.js';

/**
 * Files and YAML as hostile config inputs (issue 19): a secret, CA bundle or known_hosts that is a
 * FIFO, a device or too large, an empty secret file, an alias bomb, an unresolved alias and a
 * value over 1 MiB. Each is a config error naming the file, line and field, with exit status 2,
 * within 2 s (a FIFO used to hang start-up, `/dev/zero` grew `check` to 16.9 GB, the alias bomb
 * was a ReferenceError with exit 1). A file that turns into a FIFO after load fails its run
 * without blocking, and a SIGHUP reload onto a FIFO keeps the daemon serving.
 */

let dir: string;
const MiB = 1024 * 1024;

function mkfifo(p: string): string {
  execFileSync('mkfifo', [p]);
  return p;
}
/** A file of `bytes` bytes that takes no disk (sparse): its size is what is checked. */
function sized(p: string, bytes: number): string {
  fs.writeFileSync(p, '');
  fs.truncateSync(p, bytes);
  return p;
}

const httpProbe = (extra: string) => `probes:\n  - name: p\n    kind: http\n    url: https://127.0.0.1:1/\n${extra}`;
const secretHeader = (file: string) => httpProbe(`    headers:\n      authorization: { file: ${JSON.stringify(file)} }\n`);
const caFile = (file: string) => httpProbe(`    tls:\n      caFile: ${JSON.stringify(file)}\n`);
const knownHosts = (file: string) =>
  `probes:\n  - name: p\n    kind: ssh\n    mode: direct\n    host: 127.0.0.1:1\n    user: u\n    hostKeys: { file: ${JSON.stringify(file)} }\n`;

beforeAll(() => {
  dir = tempDir('fleetprobe-inputs-');
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

interface InputCase {
  name: string;
  yaml: () => string;
  /** The one problem `check` must print: file:line, field and what is wrong. */
  problem: RegExp;
}

const CASES: InputCase[] = [
  {
    name: 'a secret file that is a FIFO',
    yaml: () => secretHeader(mkfifo(path.join(dir, 'secret.fifo'))),
    problem: /:6: probes\[0\]\.headers\.authorization: secret file \S+secret\.fifo is a FIFO, not a regular file$/,
  },
  {
    name: 'a secret file that is /dev/zero',
    yaml: () => secretHeader('/dev/zero'),
    problem: /:6: probes\[0\]\.headers\.authorization: secret file \/dev\/zero is a character device, not a regular file$/,
  },
  {
    name: 'a secret file over 1 MiB',
    yaml: () => secretHeader(sized(path.join(dir, 'big-secret'), MiB + 1)),
    problem: /:6: probes\[0\]\.headers\.authorization: secret file \S+big-secret is 1,048,577 bytes, over the limit of 1 MiB$/,
  },
  {
    name: 'an empty secret file',
    yaml: () => secretHeader(sized(path.join(dir, 'empty-secret'), 0)),
    problem: /:6: probes\[0\]\.headers\.authorization: secret file \S+empty-secret is empty \(secret reference\)$/,
  },
  {
    name: 'a secret file holding only a newline',
    yaml: () => {
      fs.writeFileSync(path.join(dir, 'newline-secret'), '\n');
      return secretHeader(path.join(dir, 'newline-secret'));
    },
    problem: /:6: probes\[0\]\.headers\.authorization: secret file \S+newline-secret is empty \(secret reference\)$/,
  },
  {
    name: 'a CA bundle that is a FIFO',
    yaml: () => caFile(mkfifo(path.join(dir, 'ca.fifo'))),
    problem: /:6: probes\[0\]\.tls\.caFile: file \S+ca\.fifo is a FIFO, not a regular file$/,
  },
  {
    name: 'a CA bundle that is /dev/zero',
    yaml: () => caFile('/dev/zero'),
    problem: /:6: probes\[0\]\.tls\.caFile: file \/dev\/zero is a character device, not a regular file$/,
  },
  {
    name: 'a CA bundle over 10 MiB',
    yaml: () => caFile(sized(path.join(dir, 'big-ca.pem'), 10 * MiB + 1)),
    problem: /:6: probes\[0\]\.tls\.caFile: file \S+big-ca\.pem is 10,485,761 bytes, over the limit of 10 MiB$/,
  },
  {
    name: 'a known_hosts file that is a FIFO',
    yaml: () => knownHosts(mkfifo(path.join(dir, 'known_hosts.fifo'))),
    problem: /:7: probes\[0\]\.hostKeys\.file: file \S+known_hosts\.fifo is a FIFO, not a regular file$/,
  },
  {
    name: 'a YAML alias bomb',
    yaml: () =>
      [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        ...'bcdefghi'.split('').map((c, i) => `${c}: &${c} [${`*${'abcdefgh'[i]},`.repeat(9).slice(0, -1)}]`),
        'probes: []',
      ].join('\n'),
    problem: /:2:\d+: YAML: aliases expand too much \(more than 100 uses/,
  },
  {
    name: 'an alias without an anchor',
    yaml: () => httpProbe('    description: *nowhere\n'),
    problem: /:5:\d+: YAML: alias \*nowhere has no anchor &nowhere before it$/,
  },
  {
    name: 'a value over 1 MiB',
    yaml: () => httpProbe(`    description: "${'x'.repeat(MiB + 10)}"\n`),
    problem: /:5:\d+: YAML: a value of 1,048,586 characters is over the limit of 1 MiB \(1,048,576\) per value$/,
  },
];

describe('hostile config inputs: fleetprobe check', () => {
  it.each(CASES.map((c) => [c.name, c] as const))('%s: exit 2 naming file, line and field, within 2 s', async (_name, c) => {
    const file = path.join(dir, `${c.name.replace(/\W+/g, '-')}.yaml`);
    fs.writeFileSync(file, c.yaml());
    const t0 = Date.now();
    const r = await runCli(['check', '--config', file], { timeoutMs: 10_000 });
    const elapsed = Date.now() - t0;
    expect(r.code, r.stderr).toBe(2);
    const problems = r.stderr.split('\n').filter((l) => l.startsWith('  '));
    expect(problems, r.stderr).toHaveLength(1);
    expect(problems[0].trim().startsWith(file + ':'), r.stderr).toBe(true);
    expect(problems[0].trim()).toMatch(c.problem);
    expect(r.stderr).not.toMatch(/ReferenceError|RangeError|\n\s+at /);
    expect(elapsed).toBeLessThan(2000);
  });
});

describe('a file that turns hostile after load', () => {
  let peer: Peer;
  beforeAll(async () => {
    peer = await httpsPeer(selfSignedCert(), (_req, res) => res.end('ok'));
  });
  afterAll(() => peer.close());

  it('a CA bundle replaced by a FIFO fails its run as tls, without blocking', async () => {
    const ca = path.join(dir, 'rotated-ca.pem');
    fs.writeFileSync(ca, selfSignedCert().certPem);
    const spec = makeSpec('http', 'rotated-ca', { url: peer.url, tls: { caFile: ca } }, 3000);
    fs.rmSync(ca);
    mkfifo(ca);
    const t0 = Date.now();
    const r = await runProbe(spec, KINDS.http, { log: pino({ level: 'silent' }) });
    expect({ reason: r.reason, phase: r.phase }, r.message ?? '').toEqual({ reason: 'tls', phase: 'tls' });
    expect(r.message).toContain(`cannot use the CA bundle ${ca} (tls.caFile): is a FIFO, not a regular file`);
    expect(Date.now() - t0).toBeLessThan(1000);
  });

  it('a SIGHUP reload onto a FIFO secret is refused and the daemon keeps serving', async () => {
    const confDir = tempDir('fleetprobe-reload-');
    const conf = path.join(confDir, 'probes.yaml');
    fs.writeFileSync(conf, 'defaults:\n  interval: 1s\n  timeout: 500ms\nprobes:\n  - name: refused\n    kind: http\n    url: http://127.0.0.1:1/\n');
    const daemon = new DaemonProcess(['--config', confDir]);
    try {
      await daemon.waitForMetrics((t) => metricValue(t, 'fleetprobe_config_last_reload_successful') === 1);
      fs.writeFileSync(conf, secretHeader(mkfifo(path.join(confDir, 'token.fifo'))).replace('https://127.0.0.1:1/', 'http://127.0.0.1:1/'));
      daemon.child.kill('SIGHUP');
      const text = await daemon.waitForMetrics((t) => metricValue(t, 'fleetprobe_config_last_reload_successful') === 0, 5000);
      // The running configuration stays: its probe is still exported and still runs.
      expect(text).toMatch(/^probe_latency_seconds_count\{probe="refused"/m);
      const line = await daemon.waitForLog((l) => /token\.fifo is a FIFO, not a regular file/.test(JSON.stringify(l)));
      expect(line.level).toBe('error');
      expect((await fetch(`${await daemon.url()}/healthz`)).status).toBe(200);
    } finally {
      expect(await daemon.stop()).toBe(0);
      fs.rmSync(confDir, { recursive: true, force: true });
    }
  });
});
