import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { LAB_URL_PROBE, ROOT, runCli, tempDir, writeLabConfig } from '../helpers/cli.js';

const JSON_KEYS = ['name', 'kind', 'success', 'reason', 'phase', 'durationSeconds', 'phases', 'message'];

describe('fleetprobe run', () => {
  it('passes the lab http probe with --lab --json (exit 0, the documented JSON shape)', async () => {
    const r = await runCli(['run', 'lab-url', '--lab', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    for (const k of JSON_KEYS) expect(out).toHaveProperty(k);
    expect(out).toMatchObject({ name: 'lab-url', kind: 'http', success: true, reason: null, phase: null, message: null });
    expect(Object.keys(out.phases)).toEqual(['resolve', 'connect', 'tls', 'request', 'transfer']);
    expect(out.durationSeconds).toBeGreaterThan(0);
  });

  // Each lab fault fails with the reason and phase an on-call engineer needs to see.
  it.each([
    ['device-offline', 'device_offline', 'transfer', /cannot reach this device.*HTTP 502/],
    ['expired-cert', 'tls', 'tls', /certificate has expired/],
    ['slow-url', 'timeout', 'request', /request did not finish within the run timeout of 1000ms/],
  ])('with lab fault %s fails as %s in phase %s (exit 1)', async (fault, reason, phase, message) => {
    const dir = tempDir();
    writeLabConfig(dir, LAB_URL_PROBE('lab-url'), 'lab.yaml', 'interval: 10s\n  timeout: 1s');
    const r = await runCli(['run', 'lab-url', '--lab', '--lab-fault', fault, '--json', '--config', dir]);
    expect(r.code, r.stderr).toBe(1);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ success: false, reason, phase });
    expect(out.message).toMatch(message);
  });

  it('prints a phase timeline with the failing phase and reason marked', async () => {
    const r = await runCli(['run', 'lab-url', '--lab', '--lab-fault', 'device-offline']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^FAIL lab-url \(http\)\s+reason=device_offline\s+phase=transfer/);
    expect(r.stdout).toMatch(/✓ resolve/);
    expect(r.stdout).toMatch(/✓ tls/);
    expect(r.stdout).toMatch(/✗ transfer .* device_offline/);
    expect(r.stdout).toMatch(/→ the platform served its "cannot reach this device" page/);
    // No colour codes when stdout is not a terminal.
    expect(r.stdout).not.toMatch(/\x1b\[/);
  });

  it('marks phases not reached', async () => {
    const r = await runCli(['run', 'lab-url', '--lab', '--lab-fault', 'expired-cert']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/✗ tls .* tls/);
    expect(r.stdout).toMatch(/- request\s+not reached/);
    expect(r.stdout).toMatch(/- transfer\s+not reached/);
  });

  it('an unknown probe name exits 2 and lists the known names', async () => {
    const r = await runCli(['run', 'no-such-probe', '--lab']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('no probe named "no-such-probe"; known probes: lab-url, lab-url-device-2');
    expect(r.stdout).toBe('');
  });

  it('an unknown lab fault exits 2 and names the known faults', async () => {
    const r = await runCli(['run', 'lab-url', '--lab', '--lab-fault', 'nope']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown lab fault "nope"; known faults: .*device-offline/);
  });

  it('usage errors exit 2', async () => {
    expect((await runCli(['run'])).code).toBe(2);
    expect((await runCli(['frobnicate'])).stderr).toContain('unknown command "frobnicate"');
    expect((await runCli(['list', '--bogus'])).code).toBe(2);
    expect((await runCli(['run', 'x', '--lab-fault', 'slow-url'])).stderr).toContain('--lab-fault needs --lab');
    const help = await runCli(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('fleetprobe run NAME');
  });
});

describe('fleetprobe check', () => {
  it('accepts the shipped probes (lab files checked with --lab)', async () => {
    const plain = await runCli(['check']);
    expect(plain.code).toBe(0);
    expect(plain.stdout).toContain('probes/lab.yaml: skipped (lab: true); check it with --lab');
    const lab = await runCli(['check', '--lab']);
    expect(lab.code, lab.stderr).toBe(0);
    const shipped = parseYaml(fs.readFileSync(path.join(ROOT, 'probes', 'lab.yaml'), 'utf8')).probes.length;
    expect(lab.stdout).toContain(`ok: ${shipped} probes`);
  });

  it('prints every problem at once with file, line and field, and exits 2', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'bad.yaml');
    fs.writeFileSync(
      file,
      [
        'probes:',
        '  - name: a',
        '    kind: http',
        '    url: https://example.test/',
        '    interval: 10s',
        '    timeout: 30s',
        '  - name: b',
        '    kind: carrier-pigeon',
        '  - name: c',
        '    kind: http',
        '    url: https://example.test/',
        '    colour: blue',
        '',
      ].join('\n'),
    );
    const r = await runCli(['check', '--config', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('invalid configuration (3 problems)');
    expect(r.stderr).toContain(`${file}:6: probes[0].timeout: timeout 30s must be below the interval (10s), so runs never overlap`);
    expect(r.stderr).toContain(`${file}:8: probes[1].kind: unknown kind "carrier-pigeon"; one of: http`);
    expect(r.stderr).toContain(`${file}:12: probes[2].colour: unknown field`);
  });

  it('a missing secret is a clear error that does not print any secret', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'p.yaml');
    fs.writeFileSync(
      file,
      'probes:\n  - name: a\n    kind: http\n    url: https://example.test/\n    headers:\n      authorization: { env: FP_TEST_UNSET_TOKEN }\n',
    );
    const r = await runCli(['check', '--config', file], { env: { FP_TEST_UNSET_TOKEN: '' } });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${file}:6: probes[0].headers.authorization: environment variable FP_TEST_UNSET_TOKEN is not set (secret reference)`);
  });
});

describe('fleetprobe list', () => {
  it('lists probes with kind, schedule and labels, as a table and as JSON', async () => {
    const table = await runCli(['list', '--lab']);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^NAME\s+KIND\s+SCHEDULE\s+TIMEOUT\s+LABELS/);
    expect(table.stdout).toMatch(/lab-url\s+http\s+every 15s\s+5s\s+location=lab/);
    const json = JSON.parse((await runCli(['list', '--lab', '--json'])).stdout);
    expect(json[0]).toMatchObject({ name: 'lab-url', kind: 'http', interval: 15, cron: null, timeoutSeconds: 5, labels: { location: 'lab' } });
  });

  it('takes a location label from the environment', async () => {
    const json = JSON.parse((await runCli(['list', '--lab', '--json'], { env: { FLEETPROBE_LOCATION: 'eu-west' } })).stdout);
    expect(json[0].labels).toEqual({ location: 'eu-west' });
  });
});

describe('fleetprobe lab', () => {
  it('prints its endpoints, devices, faults and credentials file, serves them, and stops on SIGINT', async () => {
    const { spawn } = await import('node:child_process');
    const { CLI } = await import('../helpers/cli.js');
    const child = spawn(process.execPath, [CLI, 'lab', '--lab-fault', 'slow-url'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no banner: ${out}`)), 10_000);
      child.stdout.on('data', () => out.includes('Ctrl-C to stop.') && (clearTimeout(t), resolve()));
    });
    expect(out).toMatch(/public URL front\s+https:\/\/127\.0\.0\.1:\d+/);
    expect(out).toMatch(/lab-device-1\s+c0ffee00000000000000000000000001/);
    expect(out).toMatch(/\[x\] slow-url/);
    expect(out).toMatch(/\[ \] device-offline/);
    const creds = /credentials file\s+(\S+)/.exec(out)![1];
    const parsed = JSON.parse(fs.readFileSync(creds, 'utf8'));
    expect(parsed.endpoints.control).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const faults = (await (await fetch(`${parsed.endpoints.control}/faults`)).json()) as { name: string; on: boolean }[];
    expect(faults.find((f) => f.name === 'slow-url')?.on).toBe(true);
    child.kill('SIGINT');
    const code = await new Promise((resolve) => child.on('close', resolve));
    expect(code).toBe(0);
    expect(fs.existsSync(creds)).toBe(false);
  });
});
