import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ROOT, freePort, promtoolPath, tempDir, toolPath } from '../helpers/cli.js';
import { exposedMetricNames, selectedMetrics } from '../helpers/promql.js';

const DEPLOY = path.join(ROOT, 'deploy');
const RULES = path.join(DEPLOY, 'prometheus/rules.yml');
const AM_CONFIG = path.join(DEPLOY, 'alertmanager/alertmanager.yml');
const promtool = promtoolPath();
const amtool = toolPath('amtool', 'prometheus-alertmanager');
const alertmanager = toolPath(['alertmanager', 'prometheus-alertmanager'], 'prometheus-alertmanager');

function run(cmd: string, args: string[]) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', cwd: ROOT });
  return { status: r.status, out: (r.stdout + r.stderr).trim() };
}

const rules = parse(fs.readFileSync(RULES, 'utf8')) as {
  groups: { name: string; rules: { alert?: string; record?: string; expr: string; labels?: Record<string, string>; annotations?: Record<string, string> }[] }[];
};
const alerts = rules.groups.flatMap((g) => g.rules).filter((r) => r.alert);

describe('Prometheus rules', () => {
  it.skipIf(!promtool)('pass promtool check rules and promtool test rules; the scrape config is valid', () => {
    expect(run(promtool!, ['check', 'rules', RULES])).toMatchObject({ status: 0 });
    const tested = run(promtool!, ['test', 'rules', path.join(DEPLOY, 'prometheus/tests.yml')]);
    expect(tested.out).toContain('SUCCESS');
    expect(tested.status).toBe(0);
    expect(run(promtool!, ['check', 'config', path.join(DEPLOY, 'prometheus/prometheus.yml')])).toMatchObject({ status: 0 });
  });

  it('every alert has a severity, a summary naming probe or prober, and a runbook section; tests.yml fires each', () => {
    const runbook = fs.readFileSync(path.join(DEPLOY, 'RUNBOOK.md'), 'utf8');
    const tests = fs.readFileSync(path.join(DEPLOY, 'prometheus/tests.yml'), 'utf8');
    for (const a of alerts) {
      expect(['page', 'ticket'], a.alert).toContain(a.labels?.severity);
      expect(a.annotations?.summary, a.alert).toMatch(/\$labels\.(probe|instance|location)|fleetprobe prober is up/);
      if (/\$labels\.(probe|kind)/.test(a.annotations!.summary)) expect(a.annotations!.summary, a.alert).toMatch(/location/);
      expect(a.annotations?.runbook_url, a.alert).toMatch(new RegExp(`/deploy/RUNBOOK\\.md#${a.alert!.toLowerCase()}$`));
      expect(runbook, a.alert).toContain(`\n## ${a.alert}\n`);
      // Fires in at least one test (an expected alert of that name) and is expected silent in one.
      expect(tests, a.alert).toMatch(new RegExp(`alertname: ${a.alert}\\n\\s+exp_alerts:\\n\\s+- exp_labels`));
      expect(tests, a.alert).toMatch(new RegExp(`alertname: ${a.alert}\\n\\s+exp_alerts: \\[\\]`));
    }
    expect(
      alerts
        .filter((a) => a.labels?.severity === 'page')
        .map((a) => a.alert)
        .sort(),
    ).toEqual(['FleetSampleFailing', 'FleetprobeDown', 'PlatformProxyFailing', 'ProbeFailingFromLocations']);
  });

  it('select only metrics fleetprobe exports', async () => {
    const known = await exposedMetricNames();
    for (const r of rules.groups.flatMap((g) => g.rules)) {
      for (const name of selectedMetrics(r.expr)) expect(known, `${r.alert ?? r.record}: ${name}`).toContain(name);
    }
  });

  it('the PrometheusRule carries exactly rules.yml (node deploy/kubernetes/rules/sync.mjs)', async () => {
    const { render, TARGET } = await import(path.join(DEPLOY, 'kubernetes/rules/sync.mjs'));
    expect(fs.readFileSync(TARGET, 'utf8')).toBe(render());
    expect(parse(fs.readFileSync(TARGET, 'utf8')).spec.groups).toEqual(rules.groups);
  });
});

describe('Grafana dashboard', () => {
  const dash = JSON.parse(fs.readFileSync(path.join(DEPLOY, 'grafana/fleetprobe-dashboard.json'), 'utf8'));
  const panels = dash.panels as { title: string; targets: { expr: string }[] }[];

  it('has the panels the on-call engineer needs', () => {
    const titles = panels.map((p) => p.title).join('\n');
    for (const t of ['Success ratio per probe and location', 'Phase latency', 'Failure reasons', 'Runs skipped', 'Held-tunnel interruptions'])
      expect(titles).toContain(t);
    expect(new Set(panels.map((p: any) => p.id)).size).toBe(panels.length);
  });

  it('queries only metrics that exist, in valid PromQL', async () => {
    const known = await exposedMetricNames();
    const exprs = panels.flatMap((p) => p.targets.map((t) => t.expr));
    for (const e of exprs) for (const name of selectedMetrics(e)) expect(known, `${e}: ${name}`).toContain(name);
    if (!promtool) return;
    // promtool parses PromQL in rule files: check every panel query that way, Grafana variables filled in.
    const dir = tempDir();
    const file = path.join(dir, 'panels.yml');
    const concrete = exprs.map((e) => e.replaceAll('$__rate_interval', '5m').replace(/\$\w+/g, '.*'));
    fs.writeFileSync(file, JSON.stringify({ groups: [{ name: 'panels', rules: concrete.map((expr, i) => ({ record: `panel:${i}`, expr })) }] }));
    expect(run(promtool, ['check', 'rules', file])).toMatchObject({ status: 0 });
  });
});

describe('Alertmanager', () => {
  it.skipIf(!amtool)('amtool check-config is clean', () => {
    const r = run(amtool!, ['check-config', AM_CONFIG]);
    expect(r.out).toContain('SUCCESS');
    expect(r.status).toBe(0);
  });

  const ROUTES: [string[], string][] = [
    [['alertname=ProbeFailingFromLocations', 'severity=page', 'probe=canary-ssh', 'kind=ssh'], 'page'],
    [['alertname=FleetprobeDown', 'severity=page', 'job=fleetprobe'], 'page'],
    [['alertname=ProbeFailing', 'severity=ticket', 'probe=canary-url', 'location=eu'], 'ticket'],
    [['alertname=FleetSampleFailing', 'severity=page', 'probe=fleet-ssh', 'kind=ssh', 'location=eu'], 'page'],
    [['alertname=FleetDevicesFailing', 'severity=ticket', 'probe=fleet-url', 'kind=http', 'location=eu'], 'ticket'],
    [['alertname=BuildProbeFailing', 'severity=ticket', 'probe=builder-draft', 'kind=build'], 'ticket'],
    [['alertname=SomethingElse'], 'ticket'],
  ];
  it.skipIf(!amtool).each(ROUTES)('routes %j to %s', (labels, receiver) => {
    const r = run(amtool!, ['config', 'routes', 'test', `--config.file=${AM_CONFIG}`, `--verify.receivers=${receiver}`, ...labels]);
    expect(r.out.split('\n').filter((l) => !l.startsWith('Warning'))).toEqual([receiver]);
    expect(r.status).toBe(0);
  });

  describe.skipIf(!alertmanager)('inhibitions, in a real Alertmanager', () => {
    let child: ChildProcess | undefined;
    afterAll(() => {
      child?.kill('SIGTERM');
    });

    it('a dead prober mutes its probes; a proxy-wide failure or most of a fleet sample failing mutes per-device alerts of that kind and location', async () => {
      const port = await freePort();
      const dir = tempDir();
      child = spawn(
        alertmanager!,
        [`--config.file=${AM_CONFIG}`, `--storage.path=${dir}`, `--web.listen-address=127.0.0.1:${port}`, '--cluster.listen-address=', '--log.level=warn'],
        { stdio: 'ignore' },
      );
      const base = `http://127.0.0.1:${port}`;
      await waitFor(async () => (await fetch(`${base}/-/ready`).catch(() => undefined))?.ok === true, 10_000);

      const A = (labels: Record<string, string>) => ({ labels: { job: 'fleetprobe', ...labels } });
      const sent = [
        A({ alertname: 'FleetprobeTargetDown', severity: 'ticket', instance: 'fp-eu-0', location: 'eu' }),
        A({ alertname: 'ProbeFailing', severity: 'ticket', probe: 'url-on-dead-prober', kind: 'http', location: 'eu', instance: 'fp-eu-0' }),
        A({ alertname: 'ProbeFailing', severity: 'ticket', probe: 'url-on-live-prober', kind: 'http', location: 'eu', instance: 'fp-eu-1' }),
        A({ alertname: 'PlatformProxyFailing', severity: 'page', kind: 'ssh', location: 'us' }),
        A({ alertname: 'ProbeFailing', severity: 'ticket', probe: 'ssh-device-1', kind: 'ssh', location: 'us', instance: 'fp-us-0' }),
        A({ alertname: 'ProbeFailing', severity: 'ticket', probe: 'ssh-device-2', kind: 'ssh', location: 'ap', instance: 'fp-ap-0' }),
        A({ alertname: 'ProbeFailingFromLocations', severity: 'page', probe: 'ssh-device-1', kind: 'ssh' }),
        A({ alertname: 'ProbeFailingFromLocations', severity: 'page', probe: 'url-1', kind: 'http' }),
        // Most of a fleet sample failing (platform) mutes the canary's alert of that kind and location
        // and the fleet probe's own "a few devices" ticket; elsewhere they stay.
        A({ alertname: 'FleetSampleFailing', severity: 'page', probe: 'fleet-ssh', kind: 'ssh', location: 'eu', instance: 'fp-eu-1' }),
        A({ alertname: 'FleetDevicesFailing', severity: 'ticket', probe: 'fleet-ssh', kind: 'ssh', location: 'eu', instance: 'fp-eu-1' }),
        A({ alertname: 'ProbeFailing', severity: 'ticket', probe: 'canary-ssh', kind: 'ssh', location: 'eu', instance: 'fp-eu-1' }),
        A({ alertname: 'FleetDevicesFailing', severity: 'ticket', probe: 'fleet-url', kind: 'http', location: 'eu', instance: 'fp-eu-1' }),
        { labels: { alertname: 'FleetprobeDown', severity: 'page', job: 'fleetprobe-other' } },
        { labels: { alertname: 'ProbeFailing', severity: 'ticket', probe: 'url-other', kind: 'http', location: 'eu', instance: 'x', job: 'fleetprobe-other' } },
      ];
      const post = await fetch(`${base}/api/v2/alerts`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(sent) });
      expect(post.status).toBe(200);

      const expected: Record<string, 'active' | 'suppressed'> = {
        'FleetprobeTargetDown/': 'active',
        'ProbeFailing/url-on-dead-prober': 'suppressed',
        'ProbeFailing/url-on-live-prober': 'active',
        'PlatformProxyFailing/': 'active',
        'ProbeFailing/ssh-device-1': 'suppressed',
        'ProbeFailing/ssh-device-2': 'active',
        'ProbeFailingFromLocations/ssh-device-1': 'suppressed',
        'ProbeFailingFromLocations/url-1': 'active',
        'FleetSampleFailing/fleet-ssh': 'active',
        'FleetDevicesFailing/fleet-ssh': 'suppressed',
        'ProbeFailing/canary-ssh': 'suppressed',
        'FleetDevicesFailing/fleet-url': 'active',
        'FleetprobeDown/': 'active',
        'ProbeFailing/url-other': 'suppressed',
      };
      let states: Record<string, string> = {};
      await waitFor(async () => {
        const got = (await (await fetch(`${base}/api/v2/alerts`)).json()) as { labels: Record<string, string>; status: { state: string } }[];
        states = Object.fromEntries(got.map((a) => [`${a.labels.alertname}/${a.labels.probe ?? ''}`, a.status.state]));
        return JSON.stringify(states, Object.keys(expected).sort()) === JSON.stringify(expected, Object.keys(expected).sort());
      }, 10_000).catch(() => undefined);
      expect(states).toEqual(expected);
    });
  });
});

async function waitFor(pred: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs}ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
