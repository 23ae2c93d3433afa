import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { LAB_URL_PROBE, runCli, tempDir, writeLabConfig } from '../helpers/cli.js';

/**
 * Ad-hoc runs need only what they run (issue 14): one probe's unset secret or ${VAR} elsewhere in
 * the directory must not stop `fleetprobe run` of another. `check` and the daemon stay strict.
 */

function fleetDir(): string {
  const dir = tempDir();
  writeLabConfig(dir, LAB_URL_PROBE('url-a'), 'a-lab.yaml', 'interval: 10s\n  timeout: 5s');
  fs.writeFileSync(
    path.join(dir, 'b-other.yaml'),
    `probes:
  - name: tunnel-b
    kind: tunnel
    tunnel: tunnel.example.com:443
    token: { env: MY_PROXY_TOKEN }
    device: 0123456789abcdef0123456789abcdef
  - name: url-c
    kind: http
    url: https://\${CANARY_HOST_UNSET}/health
`,
  );
  return dir;
}

const env = { MY_PROXY_TOKEN: '', CANARY_HOST_UNSET: '' };

describe('probes with unresolved references', () => {
  it('run A passes while B and C have unset references, with a one-line warning on stderr (text and --json)', async () => {
    const dir = fleetDir();
    const json = await runCli(['run', 'url-a', '--lab', '--config', dir, '--json'], { env });
    expect(json.code, json.stderr).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ name: 'url-a', success: true });
    const warnings = json.stderr.split('\n').filter((l) => l.includes('warning'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(
      /2 other probes have unresolved references and were not loaded: tunnel-b \(environment variable MY_PROXY_TOKEN is not set \(secret reference\)\); url-c \(environment variable CANARY_HOST_UNSET is not set/,
    );

    const text = await runCli(['run', 'url-a', '--lab', '--config', dir], { env });
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/^PASS url-a/);
    expect(text.stderr).toMatch(/warning: 2 other probes/);
  });

  it('run B itself exits 2 naming its unresolved reference, file and line', async () => {
    const dir = fleetDir();
    const r = await runCli(['run', 'tunnel-b', '--lab', '--config', dir, '--json'], { env });
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`${path.join(dir, 'b-other.yaml')}:5: probes[0].token: environment variable MY_PROXY_TOKEN is not set (secret reference)`);
  });

  it('check stays strict (exit 2), and list marks the probes it could not load', async () => {
    const dir = fleetDir();
    const check = await runCli(['check', '--lab', '--config', dir], { env });
    expect(check.code).toBe(2);
    expect(check.stderr).toMatch(/MY_PROXY_TOKEN is not set/);
    expect(check.stderr).toMatch(/CANARY_HOST_UNSET is not set/);

    const list = await runCli(['list', '--lab', '--config', dir], { env });
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/url-a/);
    expect(list.stdout).toMatch(
      /tunnel-b: not loaded, unresolved references:\n {2}.*b-other\.yaml:5: probes\[0\]\.token: environment variable MY_PROXY_TOKEN is not set/,
    );
    const listJson = JSON.parse((await runCli(['list', '--lab', '--config', dir, '--json'], { env })).stdout);
    expect(listJson.find((p: { name: string }) => p.name === 'url-c')).toMatchObject({
      loaded: false,
      unresolved: [expect.stringMatching(/CANARY_HOST_UNSET/)],
    });
  });

  it('a probe with a real mistake besides an unresolved reference still fails the run (exit 2)', async () => {
    const dir = fleetDir();
    fs.appendFileSync(path.join(dir, 'b-other.yaml'), '  - name: url-d\n    kind: http\n    url: https://${CANARY_HOST_UNSET}/\n    intervall: 5s\n');
    const r = await runCli(['run', 'url-a', '--lab', '--config', dir], { env });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/probes\[2\]\.intervall: unknown field/);
  });
});
