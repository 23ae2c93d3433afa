import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import type { ProbeSpec } from '../../src/core/kind.js';
import { KINDS } from '../../src/kinds/index.js';
import { Metrics } from '../../src/metrics/metrics.js';
import { ROOT } from '../helpers/cli.js';
import { docTable } from '../helpers/doc-tables.js';
import { fakeResult } from '../helpers/results.js';

/**
 * The series budget: docs/metrics.md's table says how many series a probe of each kind has, and
 * of what; here the real kinds' probes are configured, run once, and their series counted.
 */

/** One probe of `kind` with `config`, after a passing run that set every gauge it has. */
async function seriesOf(kind: string, config: Record<string, unknown>): Promise<string[]> {
  const m = new Metrics('t', KINDS);
  const spec: ProbeSpec = { name: 'p', kind, intervalMs: 60_000, timeoutMs: 10_000, labels: {}, source: { file: 'p.yaml' }, config, digest: 'p' };
  m.configure([spec]);
  const observations: Record<string, number> = {};
  if (String(config.url).startsWith('https:')) observations.ssl_earliest_cert_expiry = 1.8e9;
  for (const metric of KINDS[kind].metrics ?? []) {
    if (metric.type !== 'gauge') continue;
    for (const v of metric.label?.values ?? [undefined]) observations[v === undefined ? metric.observation : `${metric.observation}.${v}`] = 1;
  }
  m.record(fakeResult(spec, { observations }));
  return (await m.render()).body.split('\n').filter((l) => l.includes('probe="p"'));
}

const rows = docTable('docs/metrics.md', 'series-per-kind');

describe('series per probe (docs/metrics.md)', () => {
  it('the table has a row for every kind', () => {
    expect([...new Set(rows.map((r) => r[0]))].sort()).toEqual(Object.keys(KINDS).sort());
  });

  it.each(rows.map((r) => [`${r[0]} ${r[1]}`, r] as const))('%s', async (_title, [kind, probe, phases, reasons, buckets, own, total]) => {
    const config = parseYaml(probe) as Record<string, unknown>;
    const lines = await seriesOf(kind, config);
    const k = KINDS[kind];
    const ownSeries = lines.filter((l) => (k.metrics ?? []).some((metric) => l.startsWith(`${metric.name}{`)));
    expect({
      phases: lines.filter((l) => l.startsWith('probe_phase_duration_seconds{')).length,
      reasons: lines.filter((l) => l.startsWith('probe_failures_total{')).length,
      buckets: lines.filter((l) => l.startsWith('probe_latency_seconds_bucket{') && !l.includes('le="+Inf"')).length,
      own: ownSeries.length,
      total: lines.length,
    }).toEqual({ phases: Number(phases), reasons: Number(reasons), buckets: Number(buckets), own: Number(own), total: Number(total) });
    expect(lines.filter((l) => l.startsWith('probe_failures_total{')).length).toBe(Number(reasons));
  });

  it('every kind in its ordinary form (no batch, not held) stays within 35 series per probe', async () => {
    for (const kind of Object.keys(KINDS)) expect((await seriesOf(kind, {})).length, kind).toBeLessThanOrEqual(35);
  });

  it('an http probe, the kind fleets have most of, stays within 25 series', async () => {
    for (const url of ['https://x/', 'http://x/']) expect((await seriesOf('http', { url })).length, url).toBeLessThanOrEqual(25);
  });

  it("each kind's buckets hold its latency objective from the alert rules, and a bound above it", () => {
    const rules = parseYaml(fs.readFileSync(path.join(ROOT, 'deploy/prometheus/rules.yml'), 'utf8')) as {
      groups: { rules: { record?: string; expr?: string; labels?: { kind?: string } }[] }[];
    };
    const objectives = rules.groups.flatMap((g) => g.rules).filter((r) => r.record === 'fleetprobe:latency_slo_seconds');
    expect(objectives.length).toBeGreaterThan(0);
    for (const r of objectives) {
      const seconds = Number(/^vector\(([\d.]+)\)$/.exec(String(r.expr).trim())?.[1]);
      const buckets = KINDS[r.labels!.kind!].buckets ?? [];
      expect(buckets, r.labels!.kind).toContain(seconds);
      expect(Math.max(...buckets), r.labels!.kind).toBeGreaterThan(seconds);
    }
  });
});
