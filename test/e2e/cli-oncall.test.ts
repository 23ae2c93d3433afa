import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { LAB_URL_PROBE, runCli, tempDir, writeLabConfig } from '../helpers/cli.js';
import { rawPeer } from '../helpers/http-peers.js';

/** Small things an on-call engineer notices in the CLI's output (issue 14, item 6). */

describe('a lab: true file skipped without --lab is named', () => {
  const dir = tempDir();
  writeLabConfig(dir, LAB_URL_PROBE('lab-url'));
  fs.writeFileSync(path.join(dir, 'real.yaml'), 'probes:\n  - name: api\n    kind: http\n    url: https://api.example.com/ping\n    interval: 1m\n');
  const labFile = path.join(dir, 'lab.yaml');

  it('run NAME of a probe in it: the error says the file was skipped and to add --lab', async () => {
    const r = await runCli(['run', 'lab-url', '--config', dir]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`fleetprobe: no probe named "lab-url"; known probes: api; skipped ${labFile} (lab: true): add --lab to load its probes\n`);
    const many = await runCli(['run', 'lab-url', 'api', '--config', dir]);
    expect(many.code).toBe(2);
    expect(many.stderr).toContain(`skipped ${labFile} (lab: true): add --lab to load its probes`);
  });

  it('list: a line after the table; with --json on stderr, stdout stays one JSON array', async () => {
    const r = await runCli(['list', '--config', dir]);
    expect(r.code).toBe(0);
    expect(r.stdout.trimEnd().split('\n').at(-1)).toBe(`${labFile}: skipped (lab: true); list its probes with --lab`);
    const j = await runCli(['list', '--config', dir, '--json']);
    expect(j.code).toBe(0);
    expect((JSON.parse(j.stdout) as { name: string }[]).map((p) => p.name)).toEqual(['api']);
    expect(j.stderr).toBe(`${labFile}: skipped (lab: true); list its probes with --lab\n`);
  });
});

describe('the timeline of run', () => {
  it('a passing run lists only the phases it ran (no `skipped` hold for a tunnel that does not hold)', async () => {
    const r = await runCli(['run', 'lab-tunnel-http', '--lab']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const rows = r.stdout.split('\n').filter((l) => /^ {2}[✓✗-] /.test(l));
    expect(rows.map((l) => l.trim().split(/\s+/)[1])).toEqual(['resolve', 'connect', 'tls', 'proxy_connect', 'target']);
    expect(r.stdout).not.toContain('skipped');
    expect(r.stdout).not.toContain('hold');
  });

  it('latency percentiles in whole milliseconds', async () => {
    const r = await runCli(['run', 'lab-ssh', '--lab']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    for (const p of [50, 90, 99, 100]) expect(r.stdout).toMatch(new RegExp(`^  ssh_session_latency_seconds\\.${p}: \\d+ms$`, 'm'));
  });
});

describe('list', () => {
  it('shows a held probe as held; --json carries description and mode', async () => {
    const r = await runCli(['list', '--lab']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^lab-tunnel-held\s+tunnel\s+held\s+/m);
    expect(r.stdout).toMatch(/^lab-url\s+http\s+every 15s\s+/m);
    const j = await runCli(['list', '--lab', '--json']);
    expect(j.code, j.stderr).toBe(0);
    const probes = JSON.parse(j.stdout) as { name: string; description: string | null; mode: string }[];
    expect(probes.find((p) => p.name === 'lab-tunnel-held')).toMatchObject({ mode: 'held', description: expect.stringMatching(/./) });
    expect(probes.find((p) => p.name === 'lab-url')).toMatchObject({ mode: 'interval', description: "device 1's public URL through the platform's URL front" });
  });
});

describe('config errors', () => {
  describe('a YAML syntax error names file:line:column of the offending token, in check and run', () => {
    it.each([
      ['a tab as indentation', 'probes:\n  - name: a\n\tkind: http\n', '3:1: YAML: Tabs are not allowed as indentation: indent with spaces'],
      [
        'an unclosed quote (found at the end of the file, named where it opens)',
        'probes:\n  - name: a\n    kind: http\n    url: "https://x.example/\n    interval: 5s\n',
        '4:10: YAML: the " opening this value is never closed (the value runs on to the end of the file)',
      ],
      [
        'a bad mapping: an unquoted ": " in a value',
        'probes:\n  - name: a\n    kind: http\n    url: https://x.example/\n    description: note: unquoted\n',
        '5:18: YAML: Nested mappings are not allowed in compact mappings: a value that contains ": " must be quoted',
      ],
      [
        'a line indented too far (the parser sees it on the line before)',
        'probes:\n  - name: a\n      kind: http\n    url: https://x.example/\n',
        "3:7: YAML: this line is indented more than the field above it, so it reads as the rest of that field's value (line 2) instead of a field of its own: indent it like the field above",
      ],
    ])('%s', async (_what, text, where) => {
      const file = path.join(tempDir(), 'probes.yaml');
      fs.writeFileSync(file, text);
      for (const args of [['check'], ['run', 'a']]) {
        const r = await runCli([...args, '--config', file]);
        expect(r.code, r.stdout + r.stderr).toBe(2);
        expect(r.stderr).toBe(`fleetprobe: invalid configuration (1 problem):\n  ${file}:${where}\n`);
        expect(r.stdout).toBe('');
      }
    });
  });

  it('an unknown field suggests the closest known one', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'p.yaml');
    fs.writeFileSync(file, 'probes:\n  - name: a\n    kind: http\n    url: https://x.example/\n    intervall: 5s\n    Timeout: 2s\n    colour: red\n');
    const r = await runCli(['check', '--config', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${file}:5: probes[0].intervall: unknown field; did you mean \`interval\`?`);
    expect(r.stderr).toContain(`${file}:6: probes[0].Timeout: unknown field; did you mean \`timeout\`?`);
    // Nothing close: no guess.
    expect(r.stderr).toContain(`${file}:7: probes[0].colour: unknown field\n`);
  });

  it("a timeout from defaults that is not below a probe's interval names the defaults line", async () => {
    const dir = tempDir();
    const file = path.join(dir, 'd.yaml');
    fs.writeFileSync(
      file,
      'defaults:\n  interval: 1m\n  timeout: 45s\nprobes:\n  - name: a\n    kind: http\n    url: https://x.example/\n    interval: 30s\n  - name: b\n    kind: http\n    url: https://y.example/\n',
    );
    const r = await runCli(['check', '--config', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      `${file}:8: probes[0].interval: timeout 45s (from defaults.timeout at ${file}:3) must be below the interval (30s), so runs never overlap; set a shorter timeout on this probe or in defaults`,
    );
    expect(r.stderr).toContain('(1 problem)');
  });
});

/** A tunnel probe of device 1's port 80 through the lab's tunnel proxy at `proxy`; `extra` lines go after `tunnel:`. */
const labTunnelProbe = (name: string, proxy: string, extra = '', http = '{ path: /health, expect: { status: [200] } }') => `  - name: ${name}
    kind: tunnel
    tunnel: ${proxy}
${extra}    user: probe-bot
    token: { file: "\${LAB_TUNNEL_TOKEN_FILE}" }
    device: \${LAB_DEVICE_UUID}
    port: 80
    http: ${http}
`;

describe('the timeline of run never quotes a body twice', () => {
  /** The `→` line of a failing run's timeline. */
  const messageLine = (stdout: string) => stdout.split('\n').find((l) => l.startsWith('  → ')) ?? '';
  const count = (text: string, part: string) => text.split(part).length - 1;

  it('http: the platform\'s "Device unreachable" page says its title once (device-offline)', async () => {
    const r = await runCli(['run', 'lab-url', '--lab', '--lab-fault', 'device-offline']);
    expect(r.code, r.stdout + r.stderr).toBe(1);
    expect(messageLine(r.stdout)).toBe(
      '  → the platform served its "cannot reach this device" page (HTTP 502): Device unreachable We encountered an error when reaching this balena.io device: tunneling socket could not be established: 500',
    );
    expect(count(r.stdout, 'Device unreachable')).toBe(1);
  });

  it("tunnel: a device page whose heading repeats its title, quoted once (device 1's / through the tunnel)", async () => {
    const dir = tempDir();
    writeLabConfig(
      dir,
      labTunnelProbe(
        'tunnel-page',
        '127.0.0.1:${LAB_TUNNEL_PORT}',
        '    tunnelTls: { caFile: "${LAB_CA_FILE}", serverName: "${LAB_TUNNEL_HOST}" }\n',
        '{ path: /, expect: { status: [204] } }',
      ),
    );
    // tunnel-nonstandard: the proxy's odd answer is accepted, the device's page is what fails.
    const r = await runCli(['run', 'tunnel-page', '--lab', '--config', dir, '--lab-fault', 'tunnel-nonstandard']);
    expect(r.code, r.stdout + r.stderr).toBe(1);
    const line = messageLine(r.stdout);
    expect(line).toMatch(/^ {2}→ HTTP GET \/ through the tunnel: status 200 is not one of 204; body: lab-device-1 uuid c0ffee0+1$/);
    expect(count(r.stdout, 'lab-device-1')).toBe(1);
  });

  it("device-status: the companion's message is printed on its line, the timeline refers to it (status-stale, device-3-offline)", async () => {
    const r = await runCli(['run', 'lab-device-status-companion', '--lab', '--lab-fault', 'status-stale,device-3-offline']);
    expect(r.code, r.stdout + r.stderr).toBe(1);
    expect(r.stdout).toMatch(
      /^companion lab-tunnel-ssh-banner: failed \(device_offline in proxy_connect: CONNECT .+: HTTP 503 Service Unavailable: the device is not connected to the VPN\)$/m,
    );
    expect(messageLine(r.stdout)).toMatch(
      /device: companion probe "lab-tunnel-ssh-banner" failed \d+\.\ds ago with device_offline in proxy_connect: \(quoted above\)$/,
    );
    expect(count(r.stdout, 'not connected to the VPN')).toBe(1);
    // With --json there is no companion line: the message quotes it in full.
    const j = await runCli(['run', 'lab-device-status-companion', '--lab', '--lab-fault', 'status-stale,device-3-offline', '--json']);
    expect((JSON.parse(j.stdout) as { message: string }).message).toContain('HTTP 503 Service Unavailable: the…');
  });

  it("device-status: the API's error body, once (api-errors)", async () => {
    const r = await runCli(['run', 'lab-device-status', '--lab', '--lab-fault', 'api-errors']);
    expect(r.code, r.stdout + r.stderr).toBe(1);
    expect(messageLine(r.stdout)).toMatch(/: the API failed \(HTTP 503\): \{"message":"upstream connect error or disconnect\/reset before headers"\}$/);
    expect(count(r.stdout, 'upstream connect error')).toBe(1);
  });

  it("build: the builder's refusal, once (builder-unauthorized)", async () => {
    const r = await runCli(['run', 'lab-build', '--lab', '--lab-fault', 'builder-unauthorized']);
    expect(r.code, r.stdout + r.stderr).toBe(1);
    expect(messageLine(r.stdout)).toMatch(/^ {2}→ the builder \(https:\/\/127\.0\.0\.1:\d+\) refused our credentials: HTTP 401: Unauthorized$/);
    expect(count(r.stdout, 'Unauthorized')).toBe(1);
  });
});

describe('a TLS handshake answered in plain HTTP by the tunnel proxy', () => {
  const PLAIN =
    /^TLS handshake with 127\.0\.0\.1:\d+: the answer is not TLS \(ERR_SSL_WRONG_VERSION_NUMBER\): the proxy speaks plain HTTP: set `tunnelTls: false`$/;
  type Json = { success: boolean; reason: string; phase: string; message: string; durationSeconds: number };

  it("the lab's plain tunnel proxy: protocol at once, well inside the timeout; with tunnelTls: false it passes", async () => {
    const dir = tempDir();
    writeLabConfig(
      dir,
      labTunnelProbe('via-plain', '127.0.0.1:${LAB_TUNNEL_PLAIN_PORT}') +
        labTunnelProbe('via-plain-ok', '127.0.0.1:${LAB_TUNNEL_PLAIN_PORT}', '    tunnelTls: false\n'),
      'lab.yaml',
      'interval: 30s\n  timeout: 10s',
    );
    const r = await runCli(['run', 'via-plain', '--lab', '--config', dir, '--json']);
    expect(r.code, r.stdout + r.stderr).toBe(1);
    const out = JSON.parse(r.stdout) as Json;
    expect(out).toMatchObject({ success: false, reason: 'protocol', phase: 'tls' });
    expect(out.message).toMatch(PLAIN);
    expect(out.durationSeconds).toBeLessThan(1);
    const human = await runCli(['run', 'via-plain', '--lab', '--config', dir]);
    expect(human.stdout).toMatch(/^ {2}✗ tls .+ protocol$/m);
    const ok = await runCli(['run', 'via-plain-ok', '--lab', '--config', dir]);
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
  });

  it('a raw peer that answers the ClientHello with an HTTP 400 (HTTP/1.0 and 1.1): protocol at once', async () => {
    for (const answer of ['HTTP/1.0 400 Bad Request\r\n\r\n', 'HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n']) {
      const peer = await rawPeer((s) => s.once('data', () => s.end(answer)));
      try {
        const dir = tempDir();
        writeLabConfig(dir, labTunnelProbe('raw', `127.0.0.1:${peer.port}`), 'lab.yaml', 'interval: 30s\n  timeout: 10s');
        const t0 = Date.now();
        const r = await runCli(['run', 'raw', '--lab', '--config', dir, '--json']);
        expect(r.code, r.stdout + r.stderr).toBe(1);
        const out = JSON.parse(r.stdout) as Json;
        expect(out).toMatchObject({ reason: 'protocol', phase: 'tls' });
        expect(out.message).toMatch(PLAIN);
        expect(out.durationSeconds).toBeLessThan(1);
        // The whole command (the lab's start included) ends well before the 10 s timeout.
        expect(Date.now() - t0).toBeLessThan(8000);
      } finally {
        await peer.close();
      }
    }
  });
});
