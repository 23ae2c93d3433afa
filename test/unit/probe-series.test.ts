import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { SHARED_REASONS, type ProbeKind } from '../../src/core/kind.js';
import { LATENCY_BUCKETS, PROBE_FAMILIES, ProbeSeries } from '../../src/metrics/probe-series.js';

// ProbeSeries renders by hand what prom-client used to: the same samples must come out, whatever
// the label values hold (quotes, backslashes, newlines, non-ASCII) and whatever the values are.
const kind: ProbeKind = {
  kind: 'web',
  description: 'fake',
  phases: ['connect', 'tls'],
  reasons: ['tls', 'assertion'],
  schema: z.object({}),
  metrics: [
    { name: 'probe_web_ratio', help: 'a gauge', type: 'gauge', observation: 'device_sample_reachable_ratio' },
    {
      name: 'probe_web_errors_total',
      help: 'a counter by code',
      type: 'counter',
      observation: 'ssh_session_failures',
      label: { name: 'code', values: ['a', 'b'] },
    },
  ],
  run: async () => {},
};

function samples(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\} (\S+)$/.exec(line);
    if (!m) throw new Error(`unparseable line: ${line}`);
    const labels = [...m[2].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map((l) => `${l[1]}=${l[2]}`).sort();
    out.push(`${m[1]}{${labels.join(',')}} ${Number(m[3])}`);
  }
  return out.sort();
}

describe('ProbeSeries', () => {
  it('renders the same samples as prom-client for the same runs, with awkward label values', async () => {
    const names = ['plain', 'quote"d', 'back\\slash', 'new\nline', 'ünïcødé ✓'];
    const series = new ProbeSeries({ web: kind });
    series.configure(
      names.map((name, i) => ({ name, kind: 'web', labels: (i % 2 ? { team: `t${i}"x` } : {}) as Record<string, string>, intervalSeconds: 60 })),
    );

    const reg = new Registry();
    const labelNames = ['probe', 'kind', 'team'];
    const F = PROBE_FAMILIES;
    const g = (f: { name: string; help: string }, extra: string[] = []) =>
      new Gauge({ name: f.name, help: f.help, labelNames: [...labelNames, ...extra], registers: [reg] });
    const c = (f: { name: string; help: string }, extra: string[] = []) =>
      new Counter({ name: f.name, help: f.help, labelNames: [...labelNames, ...extra], registers: [reg] });
    const p = {
      success: g(F.success),
      duration: g(F.duration),
      phase: g(F.phase, ['phase']),
      failures: c(F.failures, ['reason']),
      latency: new Histogram({ name: F.latency.name, help: F.latency.help, labelNames, buckets: [...LATENCY_BUCKETS], registers: [reg] }),
      lastRun: g(F.lastRun),
      lastSuccess: g(F.lastSuccess),
      skipped: c(F.skipped),
      aborted: c(F.aborted),
      certExpiry: g(F.certExpiry),
      interval: g(F.interval),
      ratio: g({ name: 'probe_web_ratio', help: 'a gauge' }),
      errors: c({ name: 'probe_web_errors_total', help: 'a counter by code' }, ['code']),
    };
    names.forEach((name, i) => {
      const l = { probe: name, kind: 'web', team: i % 2 ? `t${i}"x` : '' };
      for (const phase of kind.phases) p.phase.set({ ...l, phase }, 0);
      // The reasons the kind declares; skipped and aborted appear at their first event.
      for (const reason of [...SHARED_REASONS, ...kind.reasons]) p.failures.inc({ ...l, reason }, 0);
      p.latency.zero(l);
      p.interval.set(l, 60);
      for (const code of ['a', 'b']) p.errors.inc({ ...l, code }, 0);
      if (i === 0) return; // configured, never run
      const runs: { success: boolean; reason: string | null; durationSeconds: number; phases: Record<string, number>; startedAt: number }[] = [
        { success: true, reason: null, durationSeconds: 0.0123, phases: { connect: 0.001, tls: 0.01 }, startedAt: 1_700_000_000_123 + i },
        { success: false, reason: 'tls', durationSeconds: 7.5, phases: { connect: 0.002 }, startedAt: 1_700_000_060_000 },
      ];
      for (const r of runs.slice(0, i % 2 ? 2 : 1)) {
        series.recordRun(name, { ...r, aborted: false, certExpiry: 1.8e9 + 0.5 });
        series.observe(name, { device_sample_reachable_ratio: 0.25 * i, 'ssh_session_failures.b': 3 });
        p.success.set(l, r.success ? 1 : 0);
        p.duration.set(l, r.durationSeconds);
        for (const phase of kind.phases) p.phase.set({ ...l, phase }, r.phases[phase] ?? 0);
        if (r.reason) p.failures.inc({ ...l, reason: r.reason });
        p.latency.observe(l, r.durationSeconds);
        p.lastRun.set(l, r.startedAt / 1000);
        if (r.success) p.lastSuccess.set(l, r.startedAt / 1000);
        p.certExpiry.set(l, 1.8e9 + 0.5);
        p.ratio.set(l, 0.25 * i);
        p.errors.inc({ ...l, code: 'b' }, 3);
      }
      if (i < 3) return; // never skipped
      series.skipped(name);
      p.skipped.inc(l);
    });
    series.recordRun('plain', { success: false, aborted: true, reason: null, durationSeconds: 1, phases: {}, startedAt: 0 });
    p.aborted.inc({ probe: 'plain', kind: 'web', team: '' });

    const ours = series.render().toString('utf8');
    expect((await series.renderAsync()).toString('utf8')).toBe(ours);
    expect(samples(ours)).toEqual(samples(await reg.metrics()));
    // Every family has its HELP and TYPE once, in the same order as families() lists them.
    const typed = [...ours.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1], m[2]]);
    expect(typed).toEqual(series.families().map((f) => [f.name, f.type]));
  });

  it('keeps values across a reconfigure with the same labels, restarts them when the label set changes', () => {
    const series = new ProbeSeries({ web: kind });
    const run = { success: true, aborted: false, reason: null, durationSeconds: 1, phases: {}, startedAt: 1000 };
    series.configure([{ name: 'a', kind: 'web', labels: {}, intervalSeconds: 60 }]);
    series.recordRun('a', run);
    series.configure([{ name: 'a', kind: 'web', labels: {}, intervalSeconds: 30 }]);
    let text = series.render().toString();
    expect(text).toContain('probe_latency_seconds_count{probe="a",kind="web"} 1\n');
    expect(text).toContain('probe_interval_seconds{probe="a",kind="web"} 30\n');
    series.configure([{ name: 'a', kind: 'web', labels: { region: 'eu' }, intervalSeconds: 30 }]);
    text = series.render().toString();
    expect(text).toContain('probe_latency_seconds_count{probe="a",kind="web",region="eu"} 0\n');
    expect(text).not.toContain('probe_success{');
  });

  it('a render given back with recycle() is filled again once another is the last, never a buffer it did not make', async () => {
    const series = new ProbeSeries({ web: kind });
    const run = { success: true, aborted: false, reason: null, durationSeconds: 1, phases: {}, startedAt: 1000 };
    series.configure(['a', 'b'].map((name) => ({ name, kind: 'web', labels: {}, intervalSeconds: 60 })));
    series.recordRun('a', run);
    series.recordRun('b', run);
    const first = await series.renderAsync('# prefix\n');
    series.recycle(first);
    series.recordRun('a', run);
    // The next render copies the unchanged probes from the last one: it cannot write into it.
    const second = await series.renderAsync('# prefix\n');
    expect(second.buffer).not.toBe(first.buffer);
    series.recycle(second);
    series.recordRun('b', run);
    const third = await series.renderAsync('# prefix\n');
    expect(third.buffer).toBe(first.buffer);
    // The same text as a render from scratch.
    const fresh = new ProbeSeries({ web: kind });
    fresh.configure(['a', 'b'].map((name) => ({ name, kind: 'web', labels: {}, intervalSeconds: 60 })));
    for (const name of ['a', 'b', 'a', 'b']) fresh.recordRun(name, run);
    expect(third.toString()).toBe(fresh.render('# prefix\n').toString());
    expect(third.toString()).toContain('probe_latency_seconds_count{probe="a",kind="web"} 2\n');
    const foreign = Buffer.alloc(1 << 20);
    series.recycle(foreign);
    expect((await series.renderAsync()).buffer).not.toBe(foreign.buffer);
  });

  it('two scrapes at once render one after the other, each whole', async () => {
    const series = new ProbeSeries({ web: kind }, undefined, { sliceMs: 0 });
    const specs = Array.from({ length: 1200 }, (_, i) => ({ name: `p${i}`, kind: 'web', labels: {}, intervalSeconds: 60 }));
    series.configure(specs);
    const run = { success: true, aborted: false, reason: null, durationSeconds: 0.5, phases: {}, startedAt: 1000 };
    await series.renderAsync();
    series.recordRun('p3', run);
    const [a, b] = await Promise.all([series.renderAsync(), series.renderAsync()]);
    const fresh = new ProbeSeries({ web: kind });
    fresh.configure(specs);
    fresh.recordRun('p3', run);
    const want = fresh.render().toString();
    expect(a.toString()).toBe(want);
    expect(b.toString()).toBe(want);
    expect(b.buffer).not.toBe(a.buffer);
  });

  it('renders what a render from scratch gives, scrape after scrape, with runs during renders and reloads between them', async () => {
    const names = Array.from({ length: 1500 }, (_, i) => `p${i}`);
    const spec = (name: string, interval = 60) => ({ name, kind: 'web', labels: { zone: name.length % 2 ? 'a' : 'b' }, intervalSeconds: interval });
    // A turn of the event loop every few hundred probes, as a render of 10,000s does.
    const live = new ProbeSeries({ web: kind }, undefined, { sliceMs: 0 });
    const ops: ((s: ProbeSeries) => void)[] = [];
    const apply = (op: (s: ProbeSeries) => void) => {
      ops.push(op);
      op(live);
    };
    let seed = 7;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    apply((s) => s.configure(names.map((n) => spec(n))));
    let body: Buffer | undefined;
    for (let round = 0; round < 12; round++) {
      for (let j = 0; j < 200; j++) {
        const name = names[Math.floor(rand() * names.length)];
        const r = { success: rand() < 0.8, aborted: false, reason: 'connect', durationSeconds: rand(), phases: { connect: rand() }, startedAt: 1000 + round };
        apply((s) => s.recordRun(name, r));
      }
      // A reload now and then: a probe dropped, one added, an interval changed.
      if (round % 4 === 3) apply((s) => s.configure([...names.slice(round).map((n) => spec(n, n === 'p20' ? 30 : 60)), spec(`new${round}`)]));
      if (body) live.recycle(body);
      const pending = live.renderAsync('# p\n');
      // Runs recorded while the render yields are in the next render, not this one.
      await new Promise<void>((resolve) => setImmediate(resolve));
      const expected = new ProbeSeries({ web: kind });
      for (const op of ops) op(expected);
      const late = { success: false, aborted: false, reason: 'timeout', durationSeconds: 2, phases: {}, startedAt: 5000 + round };
      apply((s) => s.recordRun(names[round * 7], late));
      body = await pending;
      expect(body.toString()).toBe(expected.render('# p\n').toString());
    }
  });

  it('writes whole and fractional numbers exactly', () => {
    const series = new ProbeSeries({ web: kind });
    series.configure([{ name: 'a', kind: 'web', labels: {}, intervalSeconds: 86_400 * 365 }]);
    for (const [key, value] of [
      ['device_sample_reachable_ratio', 0.1 + 0.2],
      ['device_sample_reachable_ratio', 123456789012],
      ['device_sample_reachable_ratio', 1e21],
      ['device_sample_reachable_ratio', -3],
      ['device_sample_reachable_ratio', 5e-7],
    ] as const) {
      series.observe('a', { [key]: value });
      expect(series.render().toString()).toContain(`probe_web_ratio{probe="a",kind="web"} ${value}\n`);
    }
    expect(series.render().toString()).toContain('probe_interval_seconds{probe="a",kind="web"} 31536000\n');
  });
});
