import fs from 'node:fs';
import type http from 'node:http';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { LAB_URL_PROBE, ROOT, runCli, tempDir, writeLabConfig } from '../helpers/cli.js';
import { validateJunit, xmllint, xpath } from '../helpers/cli-process.js';
import { httpPeer, type Peer } from '../helpers/http-peers.js';

const LAB_PROBES = (parseYaml(fs.readFileSync(path.join(ROOT, 'probes/lab.yaml'), 'utf8')) as { probes: { name: string; kind: string }[] }).probes;
const RUN_KEYS = ['name', 'kind', 'success', 'reason', 'phase', 'durationSeconds', 'phases', 'message'];

let peer: Peer | undefined;
afterEach(async () => {
  await peer?.close();
  peer = undefined;
});

/** A plain http probe against a test peer (no lab): `answers` decides each response in turn. */
async function peerConfig(answers: (n: number, res: http.ServerResponse) => void, probes = ['flaky']): Promise<string> {
  let n = 0;
  peer = await httpPeer((_req, res) => answers(n++, res));
  const dir = tempDir();
  const file = path.join(dir, 'peer.yaml');
  const lines = ['defaults:', '  interval: 10s', '  timeout: 2s', '  labels: { location: test }', 'probes:'];
  for (const name of probes) lines.push(`  - name: ${name}`, '    kind: http', `    url: ${peer.url}/health`, '    expect: { status: [200] }');
  fs.writeFileSync(file, lines.join('\n') + '\n');
  return file;
}

describe('fleetprobe run with many probes', () => {
  it('--all --lab --junit: every lab probe passes (exit 0), a line per run, a table, totals, and JUnit XML that xmllint validates', async () => {
    const dir = tempDir();
    const junit = path.join(dir, 'out.xml');
    const r = await runCli(['run', '--all', '--lab', '--junit', junit], { timeoutMs: 60_000 });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    for (const p of LAB_PROBES) {
      expect(r.stdout).toMatch(new RegExp(`^PASS ${p.name} \\(${p.kind}\\)  \\d`, 'm'));
      expect(r.stdout).toMatch(new RegExp(`^${p.name}\\s+${p.kind}\\s+pass\\s+-\\s+-\\s+\\d`, 'm'));
    }
    expect(r.stdout).toMatch(/^PROBE\s+KIND\s+RESULT\s+REASON\s+PHASE\s+DURATION$/m);
    expect(r.stdout).toContain(
      `${LAB_PROBES.length} probes: ${LAB_PROBES.length} passed, 0 failed; ${LAB_PROBES.length} runs: ${LAB_PROBES.length} passed, 0 failed; in `,
    );
    expect(r.stdout).toContain(`JUnit report: ${junit}`);
    if (!xmllint) return;
    expect(validateJunit(junit)).toEqual({ ok: true, out: `${junit} validates` });
    expect(xpath(junit, 'count(//testcase)')).toBe(String(LAB_PROBES.length));
    expect(xpath(junit, 'count(//failure) + count(//error) + count(//skipped)')).toBe('0');
    for (const kind of new Set(LAB_PROBES.map((p) => p.kind)))
      expect(xpath(junit, `string(//testsuite[@name="${kind}"]/@tests)`)).toBe(String(LAB_PROBES.filter((p) => p.kind === kind).length));
    expect(xpath(junit, 'string(//testcase[@name="lab-url"]/@classname)')).toBe('fleetprobe.http');
    // system-out holds the run's output lines: the build's log, the companion's result.
    expect(xpath(junit, 'string(//testcase[@name="lab-build"]/system-out)')).toMatch(/^\[run 1\] \S+ PASS [\s\S]*Successfully built/);
    expect(xpath(junit, 'string(//testcase[@name="lab-device-status-companion"]/system-out)')).toContain('companion lab-tunnel-ssh-banner: passed');

    // The schema bites: the same report without a testcase's classname, or with a word for a time, is refused.
    const xml = fs.readFileSync(junit, 'utf8');
    for (const broken of [xml.replace(/ classname="[^"]*"/, ''), xml.replace(/ time="[\d.]+"/, ' time="fast"')]) {
      const bad = path.join(dir, 'bad.xml');
      fs.writeFileSync(bad, broken);
      expect(validateJunit(bad).ok).toBe(false);
    }
  }, 70_000);

  it('--lab-fault device-offline: exit 1, and the XML names each failing probe with its reason, phase and message', async () => {
    const junit = path.join(tempDir(), 'out.xml');
    const r = await runCli(['run', '--all', '--lab', '--lab-fault', 'device-offline', '--junit', junit], { timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout).toMatch(
      /^FAIL lab-url \(http\) {2}reason=device_offline {2}phase=transfer {2}.*\n {2}→ the platform served its "cannot reach this device" page/m,
    );
    expect(r.stdout).toMatch(/^lab-url\s+http\s+FAIL\s+device_offline\s+transfer\s/m);
    expect(r.stdout).toMatch(/^lab-ssh\s+ssh\s+FAIL\s+device_offline\s+session\s/m);
    if (!xmllint) return;
    expect(validateJunit(junit).ok).toBe(true);
    const failing = xpath(junit, '//testcase[failure]/@name')
      .split(/\s+/)
      .map((a) => a.replace(/^name="|"$/g, ''));
    // The fleet probes too: device-offline takes every device's URL and SSH session down.
    expect(failing).toEqual(expect.arrayContaining(['lab-url', 'lab-url-device-2', 'lab-ssh', 'lab-ssh-container', 'lab-fleet-url', 'lab-fleet-ssh']));
    const failures = Number(xpath(junit, 'count(//failure)'));
    expect(xpath(junit, 'string(/testsuites/@failures)')).toBe(String(failures));
    expect(r.stdout).toMatch(new RegExp(`\\d+ passed, ${failures} failed;`));
    expect(xpath(junit, 'string(//testcase[@name="lab-url"]/failure/@type)')).toBe('device_offline');
    expect(xpath(junit, 'string(//testcase[@name="lab-url"]/failure/@message)')).toMatch(
      /^device_offline in transfer: the platform served its "cannot reach this device" page \(HTTP 502\)/,
    );
    expect(xpath(junit, 'string(//testcase[@name="lab-ssh"]/failure/@message)')).toMatch(/^device_offline in session: the proxy says the device is offline/);
    expect(xpath(junit, 'string(//testsuite[@name="http"]/@failures)')).toBe('3');
  }, 70_000);

  it('-l and --kind select by labels and kinds (kind counts as a label; != and several terms)', async () => {
    const names = async (...sel: string[]) => {
      const r = await runCli(['run', ...sel, '--lab', '--json'], { timeoutMs: 60_000 });
      expect(r.code, r.stderr).toBe(0);
      const lines = r.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      return lines
        .filter((l) => l.type === 'run')
        .map((l) => `${l.name}:${l.kind}`)
        .sort();
    };
    const of = (pred: (p: { name: string; kind: string }) => boolean) =>
      LAB_PROBES.filter(pred)
        .map((p) => `${p.name}:${p.kind}`)
        .sort();
    expect(await names('-l', 'kind=ssh')).toEqual(of((p) => p.kind === 'ssh'));
    expect(await names('--kind', 'http,tunnel')).toEqual(of((p) => p.kind === 'http' || p.kind === 'tunnel'));
    expect(await names('-l', 'location=lab,kind!=device-status', '--kind', 'http,device-status')).toEqual(of((p) => p.kind === 'http'));
    expect(await names('lab-ssh', 'lab-url')).toEqual(['lab-ssh:ssh', 'lab-url:http']);
  }, 120_000);

  it('an empty selection exits 2 and lists the known probes and labels', async () => {
    const r = await runCli(['run', '-l', 'kind=ssh,location=mars', '--lab']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('no probe matches -l kind=ssh,location=mars');
    expect(r.stderr).toContain(`known probes: ${LAB_PROBES.map((p) => p.name).join(', ')}`);
    expect(r.stderr).toContain('known labels: kind=build|device-status|http|ssh|tunnel, location=lab');
    const kind = await runCli(['run', '--kind', 'carrier-pigeon', '--lab']);
    expect(kind.code).toBe(2);
    expect(kind.stderr).toContain('no probe matches --kind carrier-pigeon');
  });

  it('--junit to a path that cannot be written fails with exit 2 before any probe runs', async () => {
    const config = await peerConfig((_n, res) => res.end('ok'));
    const file = path.join(tempDir(), 'a-file');
    fs.writeFileSync(file, '');
    for (const junit of [path.join(file, 'under-a-file.xml'), path.join(tempDir(), 'missing-dir', 'out.xml'), tempDir()]) {
      const r = await runCli(['run', '--all', '--config', config, '--junit', junit]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain(`fleetprobe: --junit ${junit}: cannot write the report there (`);
      expect(r.stdout).toBe('');
    }
    expect(peer!.accepted()).toBe(0);
  });

  it('runs the probes in parallel, at most --concurrency at once (default 8)', async () => {
    let inFlight = 0;
    let peak = 0;
    const config = await peerConfig(
      (_n, res) => {
        peak = Math.max(peak, ++inFlight);
        setTimeout(() => {
          inFlight--;
          res.end('ok');
        }, 300);
      },
      Array.from({ length: 10 }, (_, i) => `p${i}`),
    );
    const capped = await runCli(['run', '--all', '--config', config, '--concurrency', '3']);
    expect(capped.code, capped.stderr).toBe(0);
    expect(peak).toBe(3);
    peak = 0;
    const byDefault = await runCli(['run', '--all', '--config', config]);
    expect(byDefault.code, byDefault.stderr).toBe(0);
    expect(peak).toBe(8);
    expect(byDefault.stdout).toContain('10 probes: 10 passed, 0 failed; 10 runs: 10 passed, 0 failed;');
  });

  it('--repeat N runs each probe N times one after the other; --min-success sets the share that must pass', async () => {
    // Every other answer is a 500: the probe passes 2 of 4 runs. Slow answers show any overlap.
    let inFlight = 0;
    let peak = 0;
    const config = await peerConfig((n, res) => {
      peak = Math.max(peak, ++inFlight);
      setTimeout(() => {
        inFlight--;
        res.statusCode = n % 2 ? 500 : 200;
        res.end('ok');
      }, 100);
    });
    const half = await runCli(['run', 'flaky', '--repeat', '4', '--min-success', '0.5', '--config', config]);
    expect(half.code, half.stdout + half.stderr).toBe(0);
    expect(half.stdout).toMatch(/^PASS flaky \(http\) \[1\/4\]/m);
    expect(half.stdout).toMatch(/^FAIL flaky \(http\) \[2\/4\] {2}reason=assertion {2}phase=transfer/m);
    expect(half.stdout).toMatch(/^PASS flaky \(http\) \[3\/4\]/m);
    expect(half.stdout).toMatch(/^FAIL flaky \(http\) \[4\/4\]/m);
    expect(half.stdout).toMatch(/^flaky\s+http\s+pass 2\/4\s+assertion\s+transfer\s/m);
    expect(peer!.accepted()).toBe(4);
    expect(peak).toBe(1);

    const junit = path.join(tempDir(), 'out.xml');
    const strict = await runCli(['run', 'flaky', '--repeat', '4', '--min-success', '75%', '--config', config, '--junit', junit]);
    expect(strict.code).toBe(1);
    expect(strict.stdout).toMatch(/^flaky\s+http\s+FAIL 2\/4\s+assertion\s+transfer\s/m);
    expect(strict.stdout).toContain('1 probe: 0 passed, 1 failed; 4 runs: 2 passed, 2 failed;');
    if (!xmllint) return;
    expect(validateJunit(junit).ok).toBe(true);
    expect(xpath(junit, 'string(//testcase[@name="flaky"]/failure/@message)')).toMatch(
      /^2 of 4 runs failed \(needs 75% passing\); last: assertion in transfer: .*500/,
    );
    expect(xpath(junit, 'string(//property[@name="min-success"]/@value)')).toBe('0.75');
  });

  it('--json prints one JSON object per run (JSON Lines) and a final summary object', async () => {
    const config = await peerConfig(
      (n, res) => {
        res.statusCode = n < 2 ? 200 : 503;
        res.end('ok');
      },
      ['first', 'second'],
    );
    const r = await runCli(['run', '--all', '--config', config, '--json', '--concurrency', '1']);
    expect(r.code).toBe(0);
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const runs = lines.filter((l) => l.type === 'run');
    expect(runs).toHaveLength(2);
    for (const run of runs) for (const k of RUN_KEYS) expect(run).toHaveProperty(k);
    expect(runs[0]).toMatchObject({ type: 'run', attempt: 1, name: 'first', kind: 'http', success: true, reason: null, labels: { location: 'test' } });
    const summary = lines.at(-1);
    expect(lines.indexOf(summary)).toBe(2);
    expect(summary).toMatchObject({
      type: 'summary',
      mode: 'run',
      success: true,
      interrupted: false,
      totals: { probes: 2, passedProbes: 2, failedProbes: 0, runs: 2, passedRuns: 2, failedRuns: 0 },
    });
    // Two more runs: both peers' answers are now 503s.
    const again = await runCli(['run', 'first', 'second', '--config', config, '--json']);
    expect(again.code).toBe(1);
    const out = again.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(out.filter((l) => l.type === 'run').map((l) => [l.name, l.success, l.reason])).toEqual(
      expect.arrayContaining([
        ['first', false, 'assertion'],
        ['second', false, 'assertion'],
      ]),
    );
    expect(out.at(-1)).toMatchObject({ type: 'summary', success: false, totals: { passedProbes: 0, failedProbes: 2 } });
    expect(out.at(-1).probes[0]).toMatchObject({ name: 'first', success: false, runs: 1, failed: 1, lastFailure: { reason: 'assertion', phase: 'transfer' } });
  });

  it('exit codes: 0 when every probe meets its bar, 1 when one misses it, 2 for usage errors', async () => {
    const dir = tempDir();
    writeLabConfig(dir, LAB_URL_PROBE('url-1') + LAB_URL_PROBE('url-2'), 'lab.yaml', 'interval: 10s\n  timeout: 2s');
    expect((await runCli(['run', 'url-1', 'url-2', '--lab', '--config', dir])).code).toBe(0);
    expect((await runCli(['run', 'url-1', 'url-2', '--lab', '--config', dir, '--lab-fault', 'device-offline'])).code).toBe(1);
    for (const bad of [
      ['run', '--all', 'url-1'],
      ['run', '--all', '--repeat', '0'],
      ['run', '--all', '--min-success', '1.5'],
      ['run', '-l', 'location'],
      ['run', '--all', '--for', '1m'],
      ['list', '--junit', 'x.xml'],
    ]) {
      const r = await runCli([...bad, '--lab', '--config', dir]);
      expect(r.code, bad.join(' ')).toBe(2);
      expect(r.stdout, bad.join(' ')).toBe('');
      expect(r.stderr, bad.join(' ')).toMatch(/^fleetprobe: .+\nRun "fleetprobe --help" for usage\.\n$/);
    }
  });
});
