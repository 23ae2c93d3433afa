import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { analysisMetrics, analysisTemplate } from '../helpers/analysis.js';
import { DaemonProcess, LAB_URL_PROBE, ROOT, freePort, tempDir, toolPath, writeLabConfig } from '../helpers/cli.js';

const prometheus = toolPath('prometheus', 'prometheus');

/** Time scale of the test copy of the rules: 5m windows become 10s, a 2m `for` becomes 4s. */
const SCALE = 1 / 30;
const UNIT = { s: 1, m: 60, h: 3600, d: 86400 } as const;

function scaleDuration(d: string): string {
  const secs = [...d.matchAll(/(\d+)([smhd])/g)].reduce((t, [, n, u]) => t + Number(n) * UNIT[u as keyof typeof UNIT], 0);
  return `${Math.max(1, Math.round(secs * SCALE))}s`;
}

/**
 * The shipped rules with every range window, `for` and `keep_firing_for` scaled down, so the alert
 * path runs in seconds against a daemon probing every second. Thresholds (3 of the last runs,
 * 3 intervals) stay as shipped: they count runs, and the lab's runs are 1 s apart.
 */
function scaledRules(text: string): string {
  const doc = parse(text) as { groups: { rules: Record<string, unknown>[] }[] };
  const windows = (s: string) => s.replace(/\[(\d+[smhd])\]/g, (_, d) => `[${scaleDuration(d)}]`);
  for (const g of doc.groups) {
    for (const r of g.rules) {
      r.expr = windows(r.expr as string);
      for (const k of ['for', 'keep_firing_for'] as const) if (typeof r[k] === 'string') r[k] = scaleDuration(r[k] as string);
      const ann = r.annotations as Record<string, string> | undefined;
      if (ann) for (const k of Object.keys(ann)) ann[k] = windows(ann[k]);
    }
  }
  return stringify(doc, { lineWidth: 0 });
}

interface PromAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  state: string;
}

describe.skipIf(!prometheus)('the alert path: lab fault -> daemon -> Prometheus with the shipped rules -> alert (and the rollout analysis)', () => {
  let daemon: DaemonProcess | undefined;
  let prom: ChildProcess | undefined;
  let promLog = '';
  afterAll(async () => {
    prom?.kill('SIGTERM');
    await daemon?.stop();
  });

  it('ProbeFailing fires when the device goes offline and resolves when it is back; the rollout analysis fails and recovers with it', async () => {
    const dir = tempDir();
    writeLabConfig(dir, LAB_URL_PROBE('lab-url-1'));
    daemon = new DaemonProcess(['--lab', '--config', dir]);
    const target = new URL(await daemon.url()).host;
    const control = await daemon.controlUrl();

    const rulesFile = path.join(dir, 'rules.yml');
    fs.writeFileSync(rulesFile, scaledRules(fs.readFileSync(path.join(ROOT, 'deploy/prometheus/rules.yml'), 'utf8')));
    const config = path.join(dir, 'prometheus.yml');
    fs.writeFileSync(
      config,
      stringify({
        global: { scrape_interval: '1s', evaluation_interval: '1s' },
        rule_files: [rulesFile],
        scrape_configs: [{ job_name: 'fleetprobe', honor_labels: true, static_configs: [{ targets: [target], labels: { location: 'test' } }] }],
      }),
    );
    const port = await freePort();
    prom = spawn(
      prometheus!,
      [`--config.file=${config}`, `--storage.tsdb.path=${path.join(dir, 'tsdb')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    prom.stdout!.on('data', (d) => (promLog += d));
    prom.stderr!.on('data', (d) => (promLog += d));
    const api = `http://127.0.0.1:${port}`;

    const poll = async <T>(what: string, fn: () => Promise<T | undefined>, timeoutMs: number): Promise<T> => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const v = await fn().catch(() => undefined);
        if (v !== undefined) return v;
        if (Date.now() > deadline || prom!.exitCode !== null) throw new Error(`${what} not seen within ${timeoutMs}ms; prometheus log:\n${promLog}`);
        await new Promise((r) => setTimeout(r, 250));
      }
    };
    // The AnalysisTemplate's metrics as Argo Rollouts would measure them here: this location, the
    // window scaled like the rules; the verdict of each is its successCondition on the query's values.
    const analysis = analysisMetrics(analysisTemplate(), { location: 'test', window: scaleDuration('5m') });
    const verdicts = async () => {
      const out: Record<string, boolean> = {};
      for (const m of analysis) {
        const r = (await (await fetch(`${api}/api/v1/query?query=${encodeURIComponent(m.query)}`)).json()) as {
          data: { result: { value: [number, string] }[] };
        };
        out[m.name] = m.condition.holds(r.data.result.map((s) => Number(s.value[1])));
      }
      return out;
    };
    const verdictsBecome = (want: Record<string, boolean>, timeoutMs: number) =>
      poll(
        `analysis verdicts ${JSON.stringify(want)}`,
        async () => {
          const got = await verdicts();
          return Object.entries(want).every(([k, v]) => got[k] === v) ? got : undefined;
        },
        timeoutMs,
      );
    const allPass = Object.fromEntries(analysis.map((m) => [m.name, true]));
    const alerts = async (): Promise<PromAlert[]> => ((await (await fetch(`${api}/api/v1/alerts`)).json()) as { data: { alerts: PromAlert[] } }).data.alerts;
    const probeFailing = async () => (await alerts()).find((a) => a.labels.alertname === 'ProbeFailing' && a.labels.probe === 'lab-url-1');

    // Healthy first: Prometheus scrapes the probe passing, and no probe alert is pending or firing.
    await poll(
      'a passing run in Prometheus',
      async () => {
        const r = (await (await fetch(`${api}/api/v1/query?query=${encodeURIComponent('probe_success{probe="lab-url-1"} == 1')}`)).json()) as {
          data: { result: unknown[] };
        };
        return r.data.result.length ? true : undefined;
      },
      20_000,
    );
    expect((await alerts()).filter((a) => a.labels.alertname.startsWith('Probe'))).toEqual([]);
    await verdictsBecome(allPass, 10_000);

    expect((await fetch(`${control}/faults/device-offline`, { method: 'PUT' })).status).toBe(200);
    const firing = await poll(
      'ProbeFailing firing',
      async () => {
        const a = await probeFailing();
        return a?.state === 'firing' ? a : undefined;
      },
      25_000,
    );
    expect(firing.labels).toMatchObject({ severity: 'ticket', probe: 'lab-url-1', kind: 'http', location: 'test', job: 'fleetprobe' });
    expect(firing.annotations.summary).toMatch(/^http probe lab-url-1 failing from test: \d+ of its last runs failed, reason device_offline$/);
    expect(firing.annotations.runbook_url).toMatch(/RUNBOOK\.md#probefailing$/);
    // A canary step now would roll back: the path is down and device_offline repeats; no credential was refused.
    await verdictsBecome({ 'probes-passing': false, 'failures-by-reason': false, 'no-credential-failures': true }, 10_000);

    await fetch(`${control}/faults/device-offline`, { method: 'DELETE' });
    await poll('ProbeFailing resolved', async () => ((await probeFailing()) ? undefined : true), 40_000);
    await verdictsBecome(allPass, 10_000);
  }, 90_000);
});
