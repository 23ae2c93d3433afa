import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { LAB_URL_PROBE, ROOT, runCli, tempDir, writeLabConfig } from '../helpers/cli.js';
import { CliProcess, validateJunit, xmllint, xpath } from '../helpers/cli-process.js';
import { httpPeer } from '../helpers/http-peers.js';

const LAB_PROBES = (parseYaml(fs.readFileSync(path.join(ROOT, 'probes/lab.yaml'), 'utf8')) as { probes: { name: string }[] }).probes;

let gate: CliProcess | undefined;
afterEach(() => {
  gate?.kill();
  gate = undefined;
});

/** Two lab URL probes with a short timeout, so a fault fails them at once. */
function urlConfig(): string {
  const dir = tempDir();
  writeLabConfig(dir, LAB_URL_PROBE('url-1') + LAB_URL_PROBE('url-2'), 'lab.yaml', 'interval: 10s\n  timeout: 2s');
  return dir;
}

describe('fleetprobe gate', () => {
  it('passes a green lab: every probe every 2s for 12s, progress each round, exit 0 when the period ends', async () => {
    const junit = path.join(tempDir(), 'gate.xml');
    const started = Date.now();
    const r = await runCli(['gate', '--lab', '--for', '12s', '--every', '2s', '--junit', junit], { timeoutMs: 60_000 });
    const tookMs = Date.now() - started;
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(
      new RegExp(`^gate: ${LAB_PROBES.length} probes for 12s, every 2s; fails when one fails 2 times in a row \\(concurrency 8\\)$`, 'm'),
    );
    // Runs at 0, 2, ..., 12 s: seven rounds, each reported once every probe has run again.
    for (let round = 1; round <= 7; round++)
      expect(r.stdout).toMatch(
        new RegExp(`^\\[[\\d.]+s/12s\\] round ${round}: ${round * LAB_PROBES.length} runs, ${round * LAB_PROBES.length} passed, 0 failed; all passing$`, 'm'),
      );
    expect(r.stdout).not.toMatch(/round 8/);
    for (const p of LAB_PROBES) expect(r.stdout).toMatch(new RegExp(`^${p.name}\\s+\\S+\\s+pass 7/7\\s+-\\s+-\\s`, 'm'));
    expect(r.stdout).toMatch(new RegExp(`^gate passed: ${LAB_PROBES.length} probes for 12s \\(7 rounds\\), none failed 2 times in a row$`, 'm'));
    expect(r.stderr).toMatch(/^lab control: http:\/\/127\.0\.0\.1:\d+ /m);
    // The period is kept, not cut short: 12 s of rounds (plus the lab's start and the last round).
    expect(tookMs).toBeGreaterThanOrEqual(12_000);
    if (!xmllint) return;
    expect(validateJunit(junit).ok).toBe(true);
    expect(xpath(junit, 'string(/testsuites/@name)')).toBe('fleetprobe gate');
    expect(xpath(junit, 'count(//testcase)')).toBe(String(LAB_PROBES.length));
    expect(xpath(junit, 'count(//failure)')).toBe('0');
    expect(xpath(junit, 'string(//testcase[@name="lab-url"]/system-out)')).toMatch(/^\[run 1\/7\] [\s\S]*\[run 7\/7\] \S+ PASS/);
  }, 70_000);

  it('fails within fail-after × every once a lab fault is switched on mid-run (exit 1), naming the probe and reason', async () => {
    const junit = path.join(tempDir(), 'gate.xml');
    gate = new CliProcess(['gate', '--lab', '--config', urlConfig(), '--for', '30s', '--every', '2s', '--json', '--junit', junit]);
    const control = (await gate.waitFor(/^lab control: (\S+)/m))[1];
    await gate.waitFor(/"type":"progress","elapsedSeconds":[\d.]+,"round":1,"runs":2,"passed":2,"failed":0/);
    const switchedAt = Date.now();
    expect((await fetch(`${control}/faults/device-offline`, { method: 'PUT' })).status).toBe(200);
    const { code, atMs } = await gate.exit;
    expect(code, gate.stderr).toBe(1);
    // The next run of each probe (at most 2 s away) fails, and the one after it (2 s later) fails
    // the gate; the margin is the runs themselves and the process's exit.
    expect(atMs - switchedAt).toBeLessThan(2 * 2000 + 1500);

    const lines = gate.jsonLines();
    const summary = lines.at(-1)!;
    expect(summary).toMatchObject({ type: 'summary', mode: 'gate', success: false, interrupted: false });
    expect(summary.gate).toMatchObject({ forSeconds: 30, everySeconds: 2, failAfter: 2, verdict: 'failed' });
    const failedProbe = summary.gate.failedProbe as string;
    expect(['url-1', 'url-2']).toContain(failedProbe);
    const failedRuns = lines.filter((l) => l.type === 'run' && l.name === failedProbe && l.success === false && !l.aborted);
    expect(failedRuns.map((l) => [l.reason, l.phase])).toEqual([
      ['device_offline', 'transfer'],
      ['device_offline', 'transfer'],
    ]);
    expect(summary.probes.find((p: { name: string }) => p.name === failedProbe)).toMatchObject({ success: false, longestFailureStreak: 2 });
    if (!xmllint) return;
    expect(validateJunit(junit).ok).toBe(true);
    expect(xpath(junit, `string(//testcase[@name="${failedProbe}"]/failure/@type)`)).toBe('device_offline');
    expect(xpath(junit, `string(//testcase[@name="${failedProbe}"]/failure/@message)`)).toMatch(
      /^failed 2 times in a row \(fail-after 2\); last: device_offline in transfer: the platform served its "cannot reach this device" page/,
    );
  }, 40_000);

  it('keeps each probe on its own beat: a slow probe runs back to back, never overlapped, and does not delay the quick one', async () => {
    const starts: Record<string, number[]> = { fast: [], slow: [] };
    let inFlightSlow = 0;
    let overlap = false;
    const peer = await httpPeer((req, res) => {
      const which = req.url === '/slow' ? 'slow' : 'fast';
      starts[which].push(Date.now());
      if (which === 'fast') return res.end('ok');
      overlap ||= ++inFlightSlow > 1;
      setTimeout(() => {
        inFlightSlow--;
        res.end('ok');
      }, 2500);
    });
    try {
      const dir = tempDir();
      const probe = (name: string) => `  - name: ${name}\n    kind: http\n    url: ${peer.url}/${name}\n`;
      fs.writeFileSync(path.join(dir, 'p.yaml'), `defaults:\n  interval: 10s\n  timeout: 4s\nprobes:\n${probe('fast')}${probe('slow')}`);
      const r = await runCli(['gate', '--config', dir, '--for', '4s', '--every', '1s', '--json']);
      expect(r.code, r.stderr).toBe(0);
      // fast: at 0, 1, 2, 3, 4 s. slow (2.5 s a run): at 0 and, overdue, right after at 2.5 s; the next would be past 4 s.
      expect(starts.fast).toHaveLength(5);
      expect(starts.slow).toHaveLength(2);
      expect(overlap).toBe(false);
      expect(starts.slow[1] - starts.slow[0]).toBeGreaterThanOrEqual(2500);
      expect(starts.slow[1] - starts.slow[0]).toBeLessThan(3000);
      // The beat is anchored at the gate's start, not at the first run's: on a loaded machine that
      // run itself may start up to ~100 ms late, so later ones look that much closer to it.
      for (let i = 1; i < 5; i++) expect(starts.fast[i] - starts.fast[0]).toBeGreaterThanOrEqual(i * 1000 - 150);
      expect(starts.fast[4] - starts.fast[0]).toBeLessThan(4600);
      const summary = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
      expect(summary.gate).toMatchObject({ verdict: 'passed', rounds: 2 });
      expect(summary.totals).toMatchObject({ runs: 7, passedRuns: 7 });
    } finally {
      await peer.close();
    }
  });

  it('prints the failing runs and the verdict for people; --fail-after 1 fails on the first failure', async () => {
    const r = await runCli([
      'gate',
      'url-1',
      '--lab',
      '--lab-fault',
      'device-offline',
      '--config',
      urlConfig(),
      '--for',
      '30s',
      '--every',
      '5s',
      '--fail-after',
      '1',
    ]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^FAIL url-1 \(http\) \[#1\] {2}reason=device_offline {2}phase=transfer {2}[\d.]+m?s {2}\(1 in a row\)$/m);
    expect(r.stdout).toMatch(/^url-1\s+http\s+FAIL\s+device_offline\s+transfer\s/m);
    expect(r.stdout).toMatch(/^gate FAILED after [\d.]+s: url-1 failed 1 time in a row \(device_offline in transfer: the platform served/m);
  });

  it.each([
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const)(
    '%s stops the runs, writes the partial report and exits %i',
    async (signal, exitCode) => {
      const junit = path.join(tempDir(), 'gate.xml');
      gate = new CliProcess(['gate', '--lab', '--config', urlConfig(), '--for', '1m', '--every', '2s', '--junit', junit]);
      await gate.waitFor(/^\[[\d.]+s\/1m\] round 2: 4 runs, 4 passed, 0 failed; all passing$/m);
      const sentAt = Date.now();
      gate.kill(signal);
      const { code, atMs } = await gate.exit;
      expect(code).toBe(exitCode);
      expect(atMs - sentAt).toBeLessThan(3000);
      expect(gate.stderr).toContain(`fleetprobe: ${signal}: stopping the runs and writing the partial report`);
      expect(gate.stdout).toMatch(/^url-1\s+http\s+pass [23]\/[23]\s/m);
      expect(gate.stdout).toMatch(/^gate interrupted after [\d.]+s: the report holds the runs that ended$/m);
      if (!xmllint) return;
      expect(validateJunit(junit).ok).toBe(true);
      expect(xpath(junit, 'count(//testcase)')).toBe('2');
      expect(Number(xpath(junit, 'count(//testcase[@name="url-1"]/system-out)'))).toBe(1);
      expect(xpath(junit, 'string(//testcase[@name="url-1"]/system-out)')).toMatch(/^\[run 1\/\d\] \S+ PASS/);
    },
    30_000,
  );
});
