import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { REASONS } from '../../src/core/reasons.js';
import { KINDS } from '../../src/kinds/index.js';
import { analysisMetrics, analysisTemplate, parseCondition } from '../helpers/analysis.js';
import { promtoolPath, tempDir } from '../helpers/cli.js';
import { kubectl, type Obj } from '../helpers/kustomize.js';
import { exposedMetricNames, selectedMetrics } from '../helpers/promql.js';

const promtool = promtoolPath();
const template = analysisTemplate();

/** The Metric fields of Argo Rollouts (pkg/apis/rollouts/v1alpha1/analysis_types.go) this template may use. */
const METRIC_FIELDS = [
  'name',
  'interval',
  'initialDelay',
  'count',
  'successCondition',
  'failureCondition',
  'failureLimit',
  'inconclusiveLimit',
  'consecutiveErrorLimit',
  'provider',
];
const PROMETHEUS_FIELDS = ['address', 'query', 'timeout', 'insecure', 'headers', 'authentication'];
const DURATION = /^(\d+(ms|s|m|h))+$/;

describe(`Argo Rollouts AnalysisTemplate (rendered with ${kubectl ? 'kubectl kustomize' : "the test's equivalent render"})`, () => {
  it('is an AnalysisTemplate Argo Rollouts accepts: known fields, one Prometheus provider per metric, limits within count, every argument defaulted', () => {
    expect(template).toMatchObject({ apiVersion: 'argoproj.io/v1alpha1', kind: 'AnalysisTemplate', metadata: { name: 'fleetprobe-paths' } });
    expect(template.metadata.labels).toMatchObject({ 'app.kubernetes.io/name': 'fleetprobe', 'app.kubernetes.io/part-of': 'fleetprobe' });
    expect(template.metadata.namespace).toBeUndefined();
    expect(Object.keys(template.spec).sort()).toEqual(['args', 'metrics']);
    for (const a of template.spec.args as Obj[]) {
      expect(Object.keys(a).sort(), a.name).toEqual(['name', 'value']);
      expect(typeof a.value, a.name).toBe('string');
    }
    const metrics = template.spec.metrics as Obj[];
    expect(new Set(metrics.map((m) => m.name)).size).toBe(metrics.length);
    for (const m of metrics) {
      for (const k of Object.keys(m)) expect(METRIC_FIELDS, `${m.name}.${k}`).toContain(k);
      // As Argo's ValidateMetric: one provider, an interval when counting more than once, count >= failureLimit.
      expect(Object.keys(m.provider), m.name).toEqual(['prometheus']);
      for (const k of Object.keys(m.provider.prometheus)) expect(PROMETHEUS_FIELDS, `${m.name}.provider.prometheus.${k}`).toContain(k);
      expect(m.interval, m.name).toMatch(DURATION);
      expect(Number.isInteger(m.count) && m.count > 1, m.name).toBe(true);
      expect(Number.isInteger(m.failureLimit) && m.failureLimit >= 0 && m.failureLimit <= m.count, m.name).toBe(true);
      expect(Number.isInteger(m.provider.prometheus.timeout), m.name).toBe(true);
      expect(m.provider.prometheus.address, m.name).toBe('{{args.prometheus-address}}');
    }
    // Every {{args.X}} resolves with the defaults alone, and every condition is one the tests evaluate.
    for (const m of analysisMetrics(template)) {
      expect(m.query, m.name).not.toContain('{{');
      expect(() => parseCondition(m.spec.successCondition as string), m.name).not.toThrow();
    }
    expect(() => analysisMetrics(template, { nope: 'x' })).toThrow(/no argument "nope"/);
  });

  it('queries only series, labels and reasons fleetprobe exports', async () => {
    const known = await exposedMetricNames();
    for (const m of analysisMetrics(template)) {
      for (const name of selectedMetrics(m.query)) expect(known, `${m.name}: ${name}`).toContain(name);
      for (const [, label] of m.query.matchAll(/([a-z_]+)\s*=~?\s*"/g)) expect(['location', 'kind', 'reason', 'probe'], `${m.name}: ${label}`).toContain(label);
      const reasons = /reason\s*=~\s*"([^"]+)"/.exec(m.query)?.[1];
      if (reasons) for (const r of reasons.split('|')) expect(REASONS, m.name).toContain(r);
    }
    const kinds = (template.spec.args as Obj[]).find((a) => a.name === 'kinds')!.value as string;
    for (const k of kinds.split('|')) expect(Object.keys(KINDS)).toContain(k);
  });

  /**
   * The queries, as Argo Rollouts sends them, evaluated by Prometheus's own engine (promtool test
   * rules) on series shaped like a daemon's, and each successCondition turned into PromQL
   * (`(query) OP bool N`), so every expectation is Argo's verdict for that measurement: 1 success,
   * 0 failure. Series every minute; verdicts at 10m, with the default 5m window.
   */
  it.skipIf(!promtool)('promtool: each query parses, returns one number, and gives the verdicts Argo would', () => {
    const ok = (probe: string, kind: string, location: string) => ({
      series: `probe_success{probe="${probe}",kind="${kind}",location="${location}"}`,
      values: '1x10',
    });
    const failures = (probe: string, kind: string, location: string, reason: string, values: string) => ({
      series: `probe_failures_total{probe="${probe}",kind="${kind}",location="${location}",reason="${reason}"}`,
      values,
    });
    const quiet = (probe: string, kind: string, location: string) => REASONS.map((r) => failures(probe, kind, location, r, '0x10'));
    // eu-west green: an http and an ssh probe passing; a build failing (not judged: builds are too rare).
    const euGreen = [
      ok('url', 'http', 'eu-west'),
      ...quiet('url', 'http', 'eu-west'),
      ok('ssh', 'ssh', 'eu-west'),
      ...quiet('ssh', 'ssh', 'eu-west'),
      { series: 'probe_success{probe="build",kind="build",location="eu-west"}', values: '0x10' },
      failures('build', 'build', 'eu-west', 'build_failed', '0+1x10'),
    ];
    // us-east: its URL probe broke 4 minutes ago, device_offline on every run since.
    const usBroken = [
      { series: 'probe_success{probe="url",kind="http",location="us-east"}', values: '1x6 0x4' },
      ...quiet('url', 'http', 'us-east').filter((s) => !s.series.includes('"device_offline"')),
      failures('url', 'http', 'us-east', 'device_offline', '0x6 1+1x4'),
    ];
    // eu-west, one credential refusal 2 minutes ago (the ssh probe passing again since).
    const euAuth = [
      ...euGreen.filter((s) => !s.series.includes('probe="ssh",kind="ssh",location="eu-west",reason="auth"')),
      failures('ssh', 'ssh', 'eu-west', 'auth', '0x8 1 1'),
    ];
    // eu-west, the URL probe failing every other minute (passing when sampled at 10m).
    const euFlapping = [
      ...euGreen.filter((s) => !s.series.includes('probe="url",kind="http",location="eu-west",reason="timeout"')),
      failures('url', 'http', 'eu-west', 'timeout', '0x4 1 1 2 3 3 4'),
    ];

    const cases: { name: string; series: { series: string; values: string }[]; args: Record<string, string>; verdicts: Record<string, 0 | 1> }[] = [
      {
        name: 'green location',
        series: [...euGreen, ...usBroken],
        args: { location: 'eu-west' },
        verdicts: { 'probes-passing': 1, 'no-credential-failures': 1, 'failures-by-reason': 1 },
      },
      {
        name: 'a broken path',
        series: [...euGreen, ...usBroken],
        args: {},
        verdicts: { 'probes-passing': 0, 'no-credential-failures': 1, 'failures-by-reason': 0 },
      },
      { name: 'a credential refused', series: euAuth, args: {}, verdicts: { 'probes-passing': 1, 'no-credential-failures': 0, 'failures-by-reason': 1 } },
      { name: 'a flapping path', series: euFlapping, args: {}, verdicts: { 'probes-passing': 1, 'no-credential-failures': 1, 'failures-by-reason': 0 } },
      {
        name: 'a flapping path, tolerated',
        series: euFlapping,
        args: { 'max-failures': '5' },
        verdicts: { 'probes-passing': 1, 'no-credential-failures': 1, 'failures-by-reason': 1 },
      },
      // No prober reporting is no green light.
      {
        name: 'no series',
        series: [{ series: 'up{job="fleetprobe"}', values: '0x10' }],
        args: {},
        verdicts: { 'probes-passing': 0, 'no-credential-failures': 1, 'failures-by-reason': 1 },
      },
    ];

    const dir = tempDir();
    const rulesFile = path.join(dir, 'analysis-rules.yml');
    const queries = analysisMetrics(template).map((m, i) => ({ record: `analysis:${i}`, expr: m.query }));
    fs.writeFileSync(rulesFile, stringify({ groups: [{ name: 'analysis', rules: queries }] }));
    const check = spawnSync(promtool!, ['check', 'rules', rulesFile], { encoding: 'utf8' });
    expect(check.status, check.stdout + check.stderr).toBe(0);

    const tests = cases.map((c) => ({
      name: c.name,
      interval: '1m',
      input_series: c.series,
      promql_expr_test: analysisMetrics(template, c.args).map((m) => ({
        expr: m.condition.promql(m.query),
        eval_time: '10m',
        // Exactly one sample without labels: what result[0] reads.
        exp_samples: [{ labels: '{}', value: c.verdicts[m.name] }],
      })),
    }));
    for (const c of cases)
      expect(Object.keys(c.verdicts).sort(), c.name).toEqual(
        analysisMetrics(template)
          .map((m) => m.name)
          .sort(),
      );
    const testFile = path.join(dir, 'analysis-tests.yml');
    fs.writeFileSync(testFile, stringify({ rule_files: [rulesFile], evaluation_interval: '1m', tests }));
    const r = spawnSync(promtool!, ['test', 'rules', testFile], { encoding: 'utf8' });
    expect(r.stdout + r.stderr).toContain('SUCCESS');
    expect(r.status).toBe(0);
  });
});
