import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { shardOf } from '../../src/daemon/shard.js';
import { DaemonProcess, LAB_URL_PROBE, metricValue, runCli, tempDir, writeLabConfig } from '../helpers/cli.js';

const NAMES = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel'];

function plainConfig(): string {
  const dir = tempDir();
  const probes = NAMES.map((n) => `  - { name: ${n}, kind: http, url: "https://${n}.example.test/" }`).join('\n');
  fs.writeFileSync(path.join(dir, 'p.yaml'), `defaults: { interval: 60s }\nprobes:\n${probes}\n`);
  return dir;
}

let daemon: DaemonProcess | undefined;
afterEach(async () => {
  await daemon?.stop();
  daemon = undefined;
});

describe('--shard', () => {
  it('list --shard i/n shows each shard its own probes, together all of them exactly once', async () => {
    const dir = plainConfig();
    const seen: string[] = [];
    for (const i of [0, 1, 2]) {
      const r = await runCli(['list', '--config', dir, '--shard', `${i}/3`, '--json']);
      expect(r.code).toBe(0);
      const rows = JSON.parse(r.stdout) as { name: string; shard: string }[];
      for (const row of rows) {
        expect(row.shard).toBe(`${i}/3`);
        expect(shardOf(row.name, 3)).toBe(i);
      }
      seen.push(...rows.map((row) => row.name));
    }
    expect(seen.sort()).toEqual([...NAMES].sort());

    const text = await runCli(['list', '--config', dir], { env: { FLEETPROBE_SHARD: 'auto/2', HOSTNAME: 'fleetprobe-1' } });
    const owned = NAMES.filter((n) => shardOf(n, 2) === 1);
    expect(text.stdout).toContain(`shard 1/2: ${owned.length} of ${NAMES.length} probes`);
    for (const n of NAMES) expect(text.stdout.includes(`\n${n} `)).toBe(owned.includes(n));
  });

  it('refuses a shard that does not exist, with exit status 2', async () => {
    const r = await runCli(['list', '--config', plainConfig(), '--shard', '2/2']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--shard: shard 2 does not exist among 2 shards (they are numbered 0 to 1), got "2/2"');
  });

  it('the daemon runs only its shard and exports the split', async () => {
    const dir = tempDir();
    writeLabConfig(
      dir,
      NAMES.slice(0, 4)
        .map((n) => LAB_URL_PROBE(n))
        .join(''),
    );
    daemon = new DaemonProcess(['--lab', '--config', dir, '--shard', '1/2']);
    const owned = NAMES.slice(0, 4).filter((n) => shardOf(n, 2) === 1);
    const text = await daemon.waitForMetrics((t) => owned.every((n) => metricValue(t, 'probe_success', { probe: n }) === 1));
    for (const n of NAMES.slice(0, 4)) expect(metricValue(text, 'probe_interval_seconds', { probe: n })).toBe(owned.includes(n) ? 1 : undefined);
    expect(metricValue(text, 'fleetprobe_shard_index')).toBe(1);
    expect(metricValue(text, 'fleetprobe_shards')).toBe(2);
    await daemon.waitForLog((l) => l.msg === `shard 1/2: running ${owned.length} of 4 probes`);
  });
});
