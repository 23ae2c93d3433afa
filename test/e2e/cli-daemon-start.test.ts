import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli, tempDir } from '../helpers/cli.js';

/**
 * `fleetprobe daemon` refusing to start, before anything has started: a bad option, nothing to
 * run, a port in use. What the on-call engineer sees is one error line and exit 2, with no lab log
 * lines and no probe run or held tunnel before it.
 */

const USAGE_TAIL = '\nRun "fleetprobe --help" for usage.\n';

describe('daemon options are checked before the lab or any probe starts', () => {
  it.each([
    [['--listen', 'foo'], '--listen must be HOST:PORT (e.g. 127.0.0.1:9437, [::1]:9437, :9437; port 0-65535), got "foo"'],
    [['--listen', '127.0.0.1:99999'], 'got "127.0.0.1:99999"'],
    [['--listen', '127.0.0.1'], 'got "127.0.0.1"'],
    [['--concurrency', '0'], '--concurrency must be a whole number above 0, got "0"'],
    [['--concurrency', 'many'], '--concurrency must be a whole number above 0, got "many"'],
    [['--grace', 'soon'], '--grace must be a duration such as 10s, got "soon"'],
  ])('daemon --lab %j: exit 2, one error line, nothing started', async (bad, message) => {
    const r = await runCli(['daemon', '--lab', ...bad]);
    expect(r.code, r.stdout + r.stderr).toBe(2);
    expect(r.stderr.startsWith('fleetprobe: --')).toBe(true);
    expect(r.stderr).toContain(message);
    expect(r.stderr.endsWith(USAGE_TAIL)).toBe(true);
    expect(r.stderr.slice(0, -USAGE_TAIL.length)).not.toContain('\n');
    // No lab, no probe: the daemon logs to stdout, and it logged nothing.
    expect(r.stdout).toBe('');
  });

  it('a port in use fails the start before any tunnel is held or probe runs', async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const { port } = taken.address() as net.AddressInfo;
    try {
      // The shipped lab probes include a held tunnel (lab-tunnel-held).
      const r = await runCli(['daemon', '--lab', '--listen', `127.0.0.1:${port}`]);
      expect(r.code, r.stdout + r.stderr).toBe(2);
      expect(r.stderr).toBe(
        `fleetprobe: cannot listen on 127.0.0.1:${port}: the address is already in use (EADDRINUSE); choose another with --listen HOST:PORT\n`,
      );
      expect(r.stdout).not.toMatch(/holding probe|"probe":/);
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });
});

describe('daemon refuses to start with no probes', () => {
  it('no probes/ directory (the default): says where it looked, suggests --config and --lab', async () => {
    const cwd = tempDir();
    const r = await runCli(['daemon', '--listen', '127.0.0.1:0'], { cwd, env: { FLEETPROBE_CONFIG: '' } });
    expect(r.code, r.stdout + r.stderr).toBe(2);
    expect(r.stderr).toBe(
      `fleetprobe: no probes to run: probes (${path.join(fs.realpathSync(cwd), 'probes')}) does not exist; point --config at your probe files (a file or a directory of .yaml files), or start with --lab to run the embedded lab and its probes\n`,
    );
    expect(r.stdout).toBe('');
  });

  it('a --config with no probes (and a skipped lab file): exit 2, naming both', async () => {
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, 'empty.yaml'), 'probes: []\n');
    fs.writeFileSync(path.join(dir, 'lab.yaml'), 'lab: true\nprobes: []\n');
    const r = await runCli(['daemon', '--listen', '127.0.0.1:0', '--config', dir]);
    expect(r.code, r.stdout + r.stderr).toBe(2);
    expect(r.stderr).toMatch(
      /^fleetprobe: no probes to run: none configured in .+ \(skipped .+lab\.yaml: lab: true files run only with --lab\); point --config at .+, or start with --lab/,
    );
    expect(r.stderr.trimEnd()).not.toContain('\n');
    expect(r.stdout).not.toContain('running 0 probes');
  });
});
