import fs from 'node:fs';
import path from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DaemonProcess, failedRuns, freePort, LAB_URL_PROBE, metricValue, runCli, tempDir, toolPath, writeLabConfig } from '../helpers/cli.js';

/**
 * The run history, /probes/NAME, `fleetprobe status` and the status page, from a daemon on the lab
 * after `device-offline` was switched on and off again; a lab device's output carrying `<script>`
 * (an ssh command's stdout in the failure message, a build's log in the target output); and the
 * page in a real browser (Debian's chromium through puppeteer-core).
 */

const SCRIPT = '<script>alert(1)</script>';
const PROBES = `${LAB_URL_PROBE('lab-url')}  - name: script-echo
    kind: ssh
    interval: 3s
    timeout: 2500ms
    mode: proxy
    sshProxy: 127.0.0.1:\${LAB_SSH_PROXY_PORT}
    user: \${LAB_SSH_USER}
    sshKey: { file: "\${LAB_SSH_KEY_FILE}" }
    hostKeys: { file: "\${LAB_SSH_KNOWN_HOSTS}" }
    device: \${LAB_DEVICE_UUID}
    command: echo '${SCRIPT}'
    expect: { stdout: balenaOS }
  - name: script-build
    kind: build
    interval: 5s
    timeout: 4s
    fleet: lab/probe-fleet
    builder: \${LAB_BUILDER_URL}
    api: \${LAB_API_URL}
    token: { file: "\${LAB_BUILDER_TOKEN_FILE}" }
    context: ctx
    uploadTimeout: 3s
    stallTimeout: 3s
    tls: { caFile: "\${LAB_CA_FILE}" }
`;

let daemon: DaemonProcess;
let base: string;
let dir: string;

beforeAll(async () => {
  dir = tempDir('fleetprobe-status-');
  fs.mkdirSync(path.join(dir, 'ctx'));
  fs.writeFileSync(path.join(dir, 'ctx', 'Dockerfile'), `FROM scratch\nRUN echo "${SCRIPT}"\nCOPY fleetprobe-nonce /nonce\n`);
  writeLabConfig(dir, PROBES);
  // build-fails touches only the build probe: its log tail is kept as the failure's output.
  daemon = new DaemonProcess(['--lab', '--lab-fault', 'build-fails', '--config', dir]);
  base = await daemon.url();
  const control = await daemon.controlUrl();
  const up = (t: string) => metricValue(t, 'probe_success', { probe: 'lab-url' }) === 1;
  await daemon.waitForMetrics(up);
  await fetch(`${control}/faults/device-offline`, { method: 'PUT' });
  // Two failures: the last has a section of its own in `fleetprobe status`, the other is listed below it.
  await daemon.waitForMetrics((t) => metricValue(t, 'probe_failures_total', { probe: 'lab-url', reason: 'device_offline' })! >= 2);
  await fetch(`${control}/faults/device-offline`, { method: 'DELETE' });
  // The fault failed script-echo too (device_offline): its last failure must be one after it, its own.
  const echoed = (t: string) => metricValue(t, 'probe_failures_total', { probe: 'script-echo', reason: 'assertion' }) ?? 0;
  let before = 0;
  await daemon.waitForMetrics((t) => ((before = echoed(t)), true));
  // Recovered, and the build and ssh probes have failed at least once.
  await daemon.waitForMetrics((t) => up(t) && failedRuns(t, 'script-build') >= 1 && echoed(t) > before);
}, 60_000);

afterAll(async () => {
  await daemon?.stop();
});

const getJson = async (p: string) => (await fetch(`${base}${p}`)).json() as Promise<any>;

describe('run history and the status page, from a daemon on the lab', () => {
  it('/probes/lab-url keeps the recovered failure in its history and among its failures; /probes?failing=1 filters', async () => {
    const d = await getJson('/probes/lab-url');
    expect(d.lastRun.success).toBe(true);
    expect(d.historyLimits).toEqual({ runs: 100, failures: 20 });
    const failure = { success: false, reason: 'device_offline', phase: 'transfer', message: expect.stringContaining('cannot reach this device') };
    expect(d.history.find((e: any) => !e.success)).toMatchObject(failure);
    expect(d.history[0].success).toBe(true);
    expect(d.failures[0]).toMatchObject(failure);
    expect(Object.keys(d.failures[0].phases)).toEqual(['resolve', 'connect', 'tls', 'request', 'transfer']);
    expect(d.summary.runs).toBe(d.history.length);
    expect(d.summary.p95Seconds).toBeGreaterThan(0);

    const failing = ((await getJson('/probes?failing=1')) as { name: string }[]).map((p) => p.name).sort();
    expect(failing).toEqual(['script-build', 'script-echo']);
    expect((await fetch(`${base}/probes/nope`)).status).toBe(404);
  });

  it('fleetprobe status prints the history (human and --json), exits 1 when a probe fails, 2 when it cannot ask', async () => {
    // Six child processes, run at once rather than one after another.
    const closed = `http://127.0.0.1:${await freePort()}`;
    const [one, json, all, unknown, down, bad] = await Promise.all(
      [['lab-url'], ['lab-url', '--json'], [], ['nope'], ['--daemon', closed], ['--daemon', 'ftp://x']].map((args) =>
        runCli(['status', ...args, ...(args.includes('--daemon') ? [] : ['--daemon', base])]),
      ),
    );
    expect(one.stderr).toBe('');
    expect(one.code).toBe(0);
    expect(one.stdout).toMatch(/^lab-url \(http\) {2}PASS {2}every 1s, timeout 800ms {2}location=test$/m);
    expect(one.stdout).toMatch(/^Last failure, \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ\nFAIL lab-url \(http\) {2}reason=device_offline {2}phase=transfer/m);
    expect(one.stdout).toMatch(/^History \(last \d+ runs, [1-9]\d* failed; passing runs p50 [\d.]+m?s, p95 [\d.]+m?s\)\n {2}[.x]*x[.x]*\.$/m);
    expect(one.stdout).toMatch(/^ {2}\S+ \S+ +[\d.]+m?s {2}device_offline in transfer {2}the platform served its "cannot reach this device" page/m);

    expect(json.code).toBe(0);
    const detail = JSON.parse(json.stdout) as { name: string; failures: { reason: string }[] };
    expect(detail.name).toBe('lab-url');
    expect(new Set(detail.failures.map((f) => f.reason))).toEqual(new Set(['device_offline']));
    // The last failure has its own section; the heading of the others counts them, not all kept.
    const kept = detail.failures.length;
    expect(kept).toBeGreaterThanOrEqual(2);
    expect(one.stdout).toContain(`Earlier failures (${kept - 1} more of the ${kept} kept, at most 20)`);

    expect(all.code).toBe(1);
    expect(all.stdout).toMatch(/^script-echo +ssh +FAIL( x\d+)? +\S+ \S+ +\S+ \S+ assertion in command: the output of "echo '<script>alert\(1\)<\/script>'"/m);
    expect(all.stdout).toMatch(/^lab-url +http +PASS +\S+ \S+ +\S+ \S+ device_offline in transfer: /m);

    expect([unknown.code, unknown.stderr]).toEqual([2, `fleetprobe: no probe named "nope" at ${base}; \`fleetprobe status\` lists them\n`]);
    expect([down.code, down.stderr]).toEqual([2, `fleetprobe: cannot read ${closed}/probes from the daemon: ECONNREFUSED\n`]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--daemon must be the daemon\'s http(s) URL, such as http://127.0.0.1:9437, got "ftp://x"');
  });

  it("shows `<script>` from a device's output and a build log as text", async () => {
    for (const name of ['script-echo', 'script-build']) {
      const page = await (await fetch(`${base}/probe/${name}`)).text();
      expect(page, name).not.toContain('<script');
      expect(page, name).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    }
    const build = await getJson('/probes/script-build');
    expect(build.failures[0].output).toContain(`[main]     Step 2/3 : RUN echo "${SCRIPT}"`);
  });

  it('renders in chromium: rows, uptime cells and the failure, no console errors, no external requests', async (ctx) => {
    const chromium = toolPath('chromium', 'chromium');
    if (!chromium) return ctx.skip();
    const browser = await launch(chromium);
    try {
      const page = await browser.newPage();
      const seen = watch(page);
      await page.setViewport({ width: 1400, height: 1000 });

      await page.goto(`${base}/`, { waitUntil: 'load' });
      const rows = await page.$$eval('tr[id^="probe-"]', (trs) => trs.map((tr) => tr.id));
      expect(rows).toEqual(['probe-script-build', 'probe-lab-url', 'probe-script-echo']);
      const bar = await page.$$eval('#probe-lab-url .bar .c', (cells) =>
        cells.map((c) => ({
          failed: c.classList.contains('f'),
          title: c.getAttribute('title')!,
          colour: (globalThis as unknown as BrowserWindow).getComputedStyle(c).backgroundColor,
        })),
      );
      expect(bar.length).toBeGreaterThanOrEqual(3);
      expect(bar.at(-1)!.failed).toBe(false);
      const red = bar.filter((c) => c.failed);
      expect(red.length).toBeGreaterThan(0);
      expect(red[0].title).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ · device_offline in transfer · [\d.]+m?s$/);
      expect(red[0].colour).toBe('rgb(207, 34, 46)');
      expect(bar.find((c) => !c.failed)!.colour).toBe('rgb(45, 164, 78)');
      const lastFailure = await page.$eval('#probe-lab-url td.msg', innerText);
      expect(lastFailure).toMatch(/^\d+s ago device_offline in transfer: the platform served its "cannot reach this device" page/);
      // The injected markup is text on the page, and nothing ran.
      expect(await page.$eval('#probe-script-echo td.msg', innerText)).toContain(SCRIPT);
      expect(await page.$$eval('script', (s) => s.length)).toBe(0);
      await page.screenshot({ path: path.join(dir, 'status.png'), fullPage: true });

      await page.goto(`${base}/probe/lab-url`, { waitUntil: 'load' });
      const text = await page.$eval('body', innerText);
      expect(text).toMatch(/Last failure\n+.*device_offline in phase transfer\n+the platform served its "cannot reach this device" page/);
      expect(await page.$$eval('table.wf .seg.f', (s) => s.length)).toBe(1);
      expect(text).toMatch(/Recent failures\n+.*\n.*device_offline\ttransfer\tthe platform served/);
      await page.screenshot({ path: path.join(dir, 'probe.png'), fullPage: true });

      await page.goto(`${base}/?failing=1`, { waitUntil: 'load' });
      expect(await page.$$eval('tr[id^="probe-"]', (trs) => trs.map((tr) => tr.id))).toEqual(['probe-script-build', 'probe-script-echo']);

      expect(seen.errors).toEqual([]);
      expect(seen.external).toEqual([]);
      expect(seen.dialogs).toEqual([]);
      for (const shot of ['status.png', 'probe.png']) expect(fs.statSync(path.join(dir, shot)).size).toBeGreaterThan(10_000);
    } finally {
      await browser.close();
    }
  }, 45_000);
});

// Functions run in the page: the project's types have no DOM library (it is a Node program).
interface BrowserWindow {
  getComputedStyle(e: unknown): { backgroundColor: string };
}
const innerText = (e: unknown) => (e as { innerText: string }).innerText;

/** Debian's chromium, headless, with nothing that would reach the network on its own. */
function launch(executablePath: string): Promise<Browser> {
  return puppeteer.launch({
    executablePath,
    // Plain --headless (the new headless mode in current Chromium) among the flags, as CI runs it.
    headless: false,
    userDataDir: fs.mkdtempSync(path.join(dir, 'chromium-')),
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    timeout: 30_000,
  });
}

/** Console errors, uncaught page errors, requests to anywhere but the daemon, and any dialog. */
function watch(page: Page) {
  const seen = { errors: [] as string[], external: [] as string[], dialogs: [] as string[] };
  page.on('console', (m) => {
    if (m.type() === 'error') seen.errors.push(m.text());
  });
  page.on('pageerror', (e) => seen.errors.push(String(e)));
  page.on('requestfailed', (r) => seen.errors.push(`request failed: ${r.url()}`));
  page.on('request', (r) => {
    if (!r.url().startsWith(`${base}/`) && !r.url().startsWith('data:')) seen.external.push(r.url());
  });
  page.on('dialog', (d) => {
    seen.dialogs.push(d.message());
    void d.dismiss();
  });
  return seen;
}
