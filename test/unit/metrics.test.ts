import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { SHARED_REASONS, type ProbeKind } from '../../src/core/kind.js';
import { REASONS, type Reason } from '../../src/core/reasons.js';
import { Metrics } from '../../src/metrics/metrics.js';
import { fakeResult, fakeSpec } from '../helpers/results.js';

function fakeKind(kind: string, phases: string[], reasons: Reason[]): ProbeKind {
  return { kind, description: `fake ${kind}`, phases, reasons, schema: z.object({}), run: async () => {} };
}
const KINDS: Record<string, ProbeKind> = {
  web: fakeKind('web', ['dns', 'connect', 'tls', 'request'], ['tls', 'assertion']),
  shell: fakeKind('shell', ['connect', 'auth', 'exec'], ['auth', 'hostkey']),
};
/** The reasons each fake kind has series for from the start: the shared ones and its own. */
const declared = (kind: string) => [...SHARED_REASONS, ...KINDS[kind].reasons];

const spec = fakeSpec;
const result = fakeResult;

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parse(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`unparseable line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

async function samples(m: Metrics): Promise<Sample[]> {
  return parse((await m.render()).body);
}

/** Samples of `name` whose labels include all of `match`. */
function find(all: Sample[], name: string, match: Record<string, string> = {}): Sample[] {
  return all.filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v));
}

function value(all: Sample[], name: string, match: Record<string, string>): number | undefined {
  const hits = find(all, name, match);
  if (hits.length > 1) throw new Error(`${name} ${JSON.stringify(match)} matches ${hits.length} series`);
  return hits[0]?.value;
}

describe('Metrics', () => {
  it('creates every phase, declared reason and result series at 0 as soon as a probe is configured', async () => {
    const m = new Metrics('1.2.3', KINDS);
    m.configure([spec('site', 'web'), spec('box', 'shell')]);
    const all = await samples(m);
    for (const [probe, kind] of [
      ['site', 'web'],
      ['box', 'shell'],
    ] as const) {
      const id = { probe, kind };
      for (const phase of KINDS[kind].phases) expect(value(all, 'probe_phase_duration_seconds', { ...id, phase })).toBe(0);
      expect(find(all, 'probe_phase_duration_seconds', id)).toHaveLength(KINDS[kind].phases.length);
      // The reasons the kind declares, and only those: another reason's series appears when it happens.
      for (const reason of declared(kind)) expect(value(all, 'probe_failures_total', { ...id, reason }), reason).toBe(0);
      expect(
        find(all, 'probe_failures_total', id)
          .map((x) => x.labels.reason)
          .sort(),
      ).toEqual([...declared(kind)].sort());
      // No runs counter (completed runs are the histogram's count, failed ones the reasons' sum);
      // skipped and aborted runs appear at the first one.
      expect(find(all, 'probe_runs_total', id)).toHaveLength(0);
      expect(find(all, 'probe_skipped_runs_total', id)).toHaveLength(0);
      expect(find(all, 'probe_aborted_runs_total', id)).toHaveLength(0);
      expect(value(all, 'probe_latency_seconds_count', id)).toBe(0);
      expect(value(all, 'probe_latency_seconds_bucket', { ...id, le: '+Inf' })).toBe(0);
      // Last-run gauges only appear after a run.
      expect(find(all, 'probe_success', id)).toHaveLength(0);
    }
    expect(value(all, 'fleetprobe_probes_configured', { kind: 'web' })).toBe(1);
    expect(value(all, 'fleetprobe_probes_configured', { kind: 'shell' })).toBe(1);
    expect(value(all, 'fleetprobe_build_info', { version: '1.2.3', nodejs: process.version })).toBe(1);
  });

  it('record() of a success sets the last-run gauges and counts it', async () => {
    const m = new Metrics('t', KINDS);
    const s = spec('site', 'web');
    m.configure([s]);
    m.record(
      result(s, {
        durationSeconds: 0.4,
        phases: { dns: 0.01, connect: 0.02, tls: 0.1, request: 0.27 },
        observations: { ssl_earliest_cert_expiry: 1_800_000_000 },
      }),
    );
    const all = await samples(m);
    const id = { probe: 'site', kind: 'web' };
    expect(value(all, 'probe_success', id)).toBe(1);
    expect(value(all, 'probe_duration_seconds', id)).toBe(0.4);
    expect(value(all, 'probe_phase_duration_seconds', { ...id, phase: 'tls' })).toBe(0.1);
    expect(value(all, 'probe_phase_duration_seconds', { ...id, phase: 'request' })).toBe(0.27);
    expect(value(all, 'probe_aborted_runs_total', id)).toBeUndefined();
    expect(find(all, 'probe_failures_total', id).every((x) => x.value === 0)).toBe(true);
    expect(value(all, 'probe_latency_seconds_count', id)).toBe(1);
    expect(value(all, 'probe_latency_seconds_sum', id)).toBe(0.4);
    expect(value(all, 'probe_latency_seconds_bucket', { ...id, le: '0.25' })).toBe(0);
    expect(value(all, 'probe_latency_seconds_bucket', { ...id, le: '0.5' })).toBe(1);
    expect(value(all, 'probe_last_run_timestamp_seconds', id)).toBe(1_700_000_000);
    expect(value(all, 'probe_last_success_timestamp_seconds', id)).toBe(1_700_000_000);
    expect(value(all, 'probe_ssl_earliest_cert_expiry', id)).toBe(1_800_000_000);
  });

  it('record() of a failure counts its reason, zeroes phases not reached and keeps the last success time', async () => {
    const m = new Metrics('t', KINDS);
    const s = spec('site', 'web');
    m.configure([s]);
    m.record(result(s, { phases: { dns: 0.01, connect: 0.02, tls: 0.03, request: 0.1 } }));
    m.record(
      result(s, {
        success: false,
        reason: 'tls',
        phase: 'tls',
        message: 'expired',
        durationSeconds: 0.05,
        startedAt: 1_700_000_060_000,
        phases: { dns: 0.01, connect: 0.02, tls: 0.02 },
      }),
    );
    m.record(
      result(s, {
        success: false,
        reason: 'tls',
        phase: 'tls',
        message: 'expired',
        startedAt: 1_700_000_120_000,
        phases: { dns: 0.01, connect: 0.02, tls: 0.02 },
      }),
    );
    const all = await samples(m);
    const id = { probe: 'site', kind: 'web' };
    expect(value(all, 'probe_success', id)).toBe(0);
    // 3 runs, 2 failed: the histogram counts every completed run, the reasons every failure.
    expect(value(all, 'probe_latency_seconds_count', id)).toBe(3);
    expect(value(all, 'probe_failures_total', { ...id, reason: 'tls' })).toBe(2);
    expect(
      find(all, 'probe_failures_total', id)
        .filter((x) => x.labels.reason !== 'tls')
        .every((x) => x.value === 0),
    ).toBe(true);
    expect(value(all, 'probe_phase_duration_seconds', { ...id, phase: 'request' })).toBe(0);
    expect(value(all, 'probe_phase_duration_seconds', { ...id, phase: 'tls' })).toBe(0.02);
    expect(value(all, 'probe_latency_seconds_count', id)).toBe(3);
    expect(value(all, 'probe_last_run_timestamp_seconds', id)).toBe(1_700_000_120);
    expect(value(all, 'probe_last_success_timestamp_seconds', id)).toBe(1_700_000_000);
  });

  it('a reason the kind did not declare gets its series when it happens, logged once as a bug in the declaration', async () => {
    const warnings: { obj: Record<string, unknown>; msg: string }[] = [];
    const m = new Metrics('t', KINDS, { warn: ((obj: Record<string, unknown>, msg: string) => warnings.push({ obj, msg })) as never });
    const [a, b] = [spec('a', 'web'), spec('b', 'web')];
    m.configure([a, b]);
    expect(value(await samples(m), 'probe_failures_total', { probe: 'a', reason: 'hostkey' })).toBeUndefined();
    const fail = (s: typeof a, reason: Reason) => m.record(result(s, { success: false, reason, phase: 'tls', message: 'x' }));
    fail(a, 'hostkey');
    fail(a, 'hostkey');
    fail(b, 'hostkey');
    const all = await samples(m);
    expect(value(all, 'probe_failures_total', { probe: 'a', reason: 'hostkey' })).toBe(2);
    expect(value(all, 'probe_failures_total', { probe: 'b', reason: 'hostkey' })).toBe(1);
    expect(warnings).toHaveLength(1);
    expect(warnings[0].obj).toEqual({ probe: 'a', kind: 'web', reason: 'hostkey' });
    expect(warnings[0].msg).toMatch(/reason hostkey, which the web kind does not declare.*a bug in the kind's reasons list/);
    // fleetprobe's own trouble (prober reasons) is expected of every kind: a series, no warning.
    fail(a, 'resources');
    fail(b, 'internal');
    const after = await samples(m);
    expect(value(after, 'probe_failures_total', { probe: 'a', reason: 'resources' })).toBe(1);
    expect(value(after, 'probe_failures_total', { probe: 'b', reason: 'internal' })).toBe(1);
    expect(warnings).toHaveLength(1);
  });

  it("a probe that reads a companion declares the companion's reasons too (it fails with them)", async () => {
    const reader: ProbeKind = {
      ...fakeKind('reader', ['api'], ['status_drift']),
      companions: (c: { of?: string }) => (c.of ? [{ field: 'of', probe: c.of }] : []),
    };
    const m = new Metrics('t', { ...KINDS, reader });
    m.configure([spec('box', 'shell'), { ...spec('r', 'reader'), config: { of: 'box' } }, spec('alone', 'reader')]);
    const all = await samples(m);
    const reasons = (probe: string) =>
      find(all, 'probe_failures_total', { probe })
        .map((x) => x.labels.reason)
        .sort();
    expect(reasons('r')).toEqual([...SHARED_REASONS, 'status_drift', 'auth', 'hostkey'].sort());
    expect(reasons('alone')).toEqual([...SHARED_REASONS, 'status_drift'].sort());
  });

  it("latency buckets: the kind's own, or the probe's (a file's buckets:), each with +Inf", async () => {
    const m = new Metrics('t', { ...KINDS, web: { ...KINDS.web, buckets: [0.1, 1, 2] } });
    m.configure([spec('site', 'web'), { ...spec('own', 'web'), buckets: [0.5, 5] }, spec('box', 'shell')]);
    m.record(result(spec('own', 'web'), { durationSeconds: 3 }));
    const all = await samples(m);
    const les = (probe: string) => find(all, 'probe_latency_seconds_bucket', { probe }).map((x) => x.labels.le);
    expect(les('site')).toEqual(['0.1', '1', '2', '+Inf']);
    expect(les('own')).toEqual(['0.5', '5', '+Inf']);
    expect(find(all, 'probe_latency_seconds_bucket', { probe: 'own' }).map((x) => x.value)).toEqual([0, 1, 1]);
    expect(les('box')).toEqual(['0.05', '0.1', '0.25', '0.5', '1', '2', '3', '5', '10', '30', '+Inf']);
  });

  it("a kind's own series exist only for probes that use them (when), counters by reason only for declared reasons", async () => {
    const batched: ProbeKind = {
      ...fakeKind('batched', ['run'], ['auth']),
      metrics: [
        { name: 'probe_batch_ratio', help: 'g', type: 'gauge', observation: 'ssh_sessions_success_ratio', when: (c: { n?: number }) => (c.n ?? 1) > 1 },
        {
          name: 'probe_batch_failures_total',
          help: 'c',
          type: 'counter',
          observation: 'ssh_session_failures',
          label: { name: 'reason', values: REASONS },
          declaredReasonsOnly: true,
          when: (c: { n?: number }) => (c.n ?? 1) > 1,
        },
      ],
    };
    const m = new Metrics('t', { batched });
    m.configure([spec('one', 'batched'), { ...spec('many', 'batched'), config: { n: 3 } }]);
    const observations = { ssh_sessions_success_ratio: 0.5, 'ssh_session_failures.hostkey': 2 };
    m.record(result(spec('one', 'batched'), { observations }));
    const all = await samples(m);
    expect(find(all, 'probe_batch_ratio', { probe: 'one' })).toEqual([]);
    expect(find(all, 'probe_batch_failures_total', { probe: 'one' })).toEqual([]);
    expect(
      find(all, 'probe_batch_failures_total', { probe: 'many' })
        .map((x) => x.labels.reason)
        .sort(),
    ).toEqual([...SHARED_REASONS, 'auth'].sort());
    m.record(result(spec('many', 'batched'), { observations }));
    const after = await samples(m);
    expect(value(after, 'probe_batch_ratio', { probe: 'many' })).toBe(0.5);
    expect(value(after, 'probe_batch_failures_total', { probe: 'many', reason: 'hostkey' })).toBe(2);
    expect(value(after, 'probe_batch_failures_total', { probe: 'many', reason: 'auth' })).toBe(0);
  });

  it('an aborted result increments only probe_aborted_runs_total, which it creates', async () => {
    const m = new Metrics('t', KINDS);
    const s = spec('site', 'web');
    m.configure([s]);
    const before = await samples(m);
    m.record(result(s, { success: false, aborted: true, phase: 'connect', message: 'aborted by shutdown', phases: { dns: 0.5 } }));
    const after = await samples(m);
    const id = { probe: 'site', kind: 'web' };
    expect(value(before, 'probe_aborted_runs_total', id)).toBeUndefined();
    expect(value(after, 'probe_aborted_runs_total', id)).toBe(1);
    const probeSeries = (all: Sample[]) =>
      all
        .filter((x) => x.labels.probe === 'site' && x.name !== 'probe_aborted_runs_total')
        .map((x) => `${x.name}${JSON.stringify(x.labels)} ${x.value}`)
        .sort();
    expect(probeSeries(after)).toEqual(probeSeries(before));
  });

  it("a held probe: checked() moves its last run and success, counting no run; an interruption (started at the hold's start) does not move them back", async () => {
    const m = new Metrics('t', KINDS);
    const s = spec('site', 'web');
    m.configure([s]);
    m.record(result(s, { startedAt: 1_700_000_000_000 }));
    m.checked('site', 1_700_000_100_000);
    m.checked('gone', 1_700_000_100_000);
    const id = { probe: 'site', kind: 'web' };
    let all = await samples(m);
    expect(value(all, 'probe_last_run_timestamp_seconds', id)).toBe(1_700_000_100);
    expect(value(all, 'probe_last_success_timestamp_seconds', id)).toBe(1_700_000_100);
    expect(value(all, 'probe_latency_seconds_count', id)).toBe(1);
    expect(find(all, 'probe_success', { probe: 'gone' })).toEqual([]);
    // The tunnel breaks: a failed run in phase hold that started when the hold did, 100 s ago.
    m.record(result(s, { success: false, reason: 'connect', phase: 'hold', durationSeconds: 100, startedAt: 1_700_000_000_000 }));
    all = await samples(m);
    expect(value(all, 'probe_success', id)).toBe(0);
    expect(value(all, 'probe_last_run_timestamp_seconds', id)).toBe(1_700_000_100);
    expect(value(all, 'probe_latency_seconds_count', id)).toBe(2);
  });

  it('skipped() creates and increments probe_skipped_runs_total, and only for configured probes', async () => {
    const m = new Metrics('t', KINDS);
    m.configure([spec('site', 'web')]);
    expect(find(await samples(m), 'probe_skipped_runs_total')).toHaveLength(0);
    m.skipped({ name: 'site' });
    m.skipped({ name: 'site' });
    m.skipped({ name: 'unknown' });
    const all = await samples(m);
    expect(value(all, 'probe_skipped_runs_total', { probe: 'site', kind: 'web' })).toBe(2);
    expect(find(all, 'probe_skipped_runs_total')).toHaveLength(1);
  });

  it('static labels become labels: the union over all probes, empty for probes without one', async () => {
    const m = new Metrics('t', KINDS);
    const a = spec('a', 'web', { team: 'edge', region: 'eu' });
    const b = spec('b', 'shell', { team: 'core' });
    m.configure([a, b]);
    m.record(result(a));
    m.skipped(b);
    const all = await samples(m);
    for (const family of ['probe_latency_seconds_count', 'probe_failures_total', 'probe_phase_duration_seconds', 'probe_skipped_runs_total', 'probe_success']) {
      for (const x of find(all, family)) {
        expect(Object.keys(x.labels)).toEqual(expect.arrayContaining(['probe', 'kind', 'region', 'team']));
      }
    }
    expect(value(all, 'probe_success', { probe: 'a', kind: 'web', team: 'edge', region: 'eu' })).toBe(1);
    expect(value(all, 'probe_skipped_runs_total', { probe: 'b', kind: 'shell', team: 'core', region: '' })).toBe(1);
    expect(find(all, 'probe_skipped_runs_total')).toHaveLength(1);
  });

  it('reconfiguring without a probe removes all of its series', async () => {
    const m = new Metrics('t', KINDS);
    const a = spec('a', 'web', { team: 'x' });
    const b = spec('b', 'shell', { team: 'y' });
    m.configure([a, b]);
    m.record(result(b, { observations: { ssl_earliest_cert_expiry: 1 } }));
    m.record(result(b, { success: false, reason: 'auth', phase: 'auth' }));
    m.skipped(b);
    m.configure([a]);
    const all = await samples(m);
    expect(all.filter((x) => x.labels.probe === 'b')).toEqual([]);
    expect(all.filter((x) => x.labels.probe === 'a').length).toBeGreaterThan(0);
    expect(value(all, 'fleetprobe_probes_configured', { kind: 'shell' })).toBe(0);
    // A record() that arrives after the reload (a run that was in flight) is dropped, not resurrected.
    m.record(result(b));
    m.skipped(b);
    expect((await samples(m)).filter((x) => x.labels.probe === 'b')).toEqual([]);
  });

  it('reconfiguring with the same probes keeps their counters', async () => {
    const m = new Metrics('t', KINDS);
    const a = spec('a', 'web', { team: 'x' });
    m.configure([a]);
    m.record(result(a));
    m.configure([{ ...a, digest: 'changed', timeoutMs: 1 }, spec('new', 'shell', { team: 'z' })]);
    const all = await samples(m);
    expect(value(all, 'probe_latency_seconds_count', { probe: 'a' })).toBe(1);
    expect(value(all, 'probe_latency_seconds_count', { probe: 'new' })).toBe(0);
  });

  it('a probe whose label value or kind changed loses its old series and gets new ones', async () => {
    const m = new Metrics('t', KINDS);
    const a = spec('a', 'web', { team: 'x' });
    m.configure([a]);
    m.record(result(a));
    m.configure([spec('a', 'shell', { team: 'y' })]);
    const all = await samples(m);
    expect(find(all, 'probe_latency_seconds_count', { probe: 'a', team: 'x' })).toEqual([]);
    expect(find(all, 'probe_phase_duration_seconds', { probe: 'a', kind: 'web' })).toEqual([]);
    expect(value(all, 'probe_latency_seconds_count', { probe: 'a', kind: 'shell', team: 'y' })).toBe(0);
    expect(find(all, 'probe_phase_duration_seconds', { probe: 'a', kind: 'shell' })).toHaveLength(3);
  });

  it('changing the set of label names rebuilds the probe families with the new labels', async () => {
    const m = new Metrics('t', KINDS);
    const a = spec('a', 'web', { team: 'x' });
    m.configure([a]);
    m.record(result(a));
    m.skipped(a);
    const a2 = spec('a', 'web', { team: 'x', env: 'prod' });
    m.configure([a2, spec('b', 'shell')]);
    const all = await samples(m);
    for (const x of all.filter((s) => s.name.startsWith('probe_'))) {
      expect(
        Object.keys(x.labels)
          .filter((k) => k !== 'le' && k !== 'phase' && k !== 'reason' && k !== 'result')
          .sort(),
      ).toEqual(['env', 'kind', 'probe', 'team']);
    }
    // Rebuilt families start again from 0, and every series exists again (skipped: at its next skip).
    expect(value(all, 'probe_latency_seconds_count', { probe: 'a', env: 'prod' })).toBe(0);
    expect(find(all, 'probe_skipped_runs_total')).toEqual([]);
    expect(value(all, 'probe_latency_seconds_count', { probe: 'b', env: '', team: '' })).toBe(0);
    expect(find(all, 'probe_failures_total', { probe: 'b' })).toHaveLength(declared('shell').length);
    expect(find(all, 'probe_success')).toEqual([]);
    m.record(result(a2));
    expect(value(await samples(m), 'probe_success', { probe: 'a', env: 'prod', team: 'x' })).toBe(1);
    // Back to no labels at all.
    m.configure([spec('a', 'web')]);
    const bare = await samples(m);
    expect(find(bare, 'probe_latency_seconds_count').map((x) => x.labels)).toEqual([{ probe: 'a', kind: 'web' }]);
  });

  it('every probe family has HELP and TYPE exactly once', async () => {
    const m = new Metrics('t', KINDS);
    m.configure([spec('a', 'web', { team: 'x' })]);
    m.configure([spec('a', 'web', { team: 'x', env: 'e' })]);
    const { body, contentType } = await m.render();
    expect(contentType).toMatch(/^text\/plain/);
    for (const family of ['probe_success', 'probe_failures_total', 'probe_latency_seconds', 'probe_phase_duration_seconds']) {
      expect(body.split('\n').filter((l) => l.startsWith(`# TYPE ${family} `))).toHaveLength(1);
      expect(body.split('\n').filter((l) => l.startsWith(`# HELP ${family} `))).toHaveLength(1);
    }
  });

  const promtool = spawnSync('which', ['promtool'], { encoding: 'utf8' }).stdout.trim();
  const requirePromtool = process.env.CI === 'true';
  it.skipIf(!promtool && !requirePromtool)('passes `promtool check metrics`', async () => {
    expect(promtool, 'promtool must be installed in CI').not.toBe('');
    const m = new Metrics('1.0.0', KINDS);
    const a = spec('site', 'web', { team: 'edge', region: 'eu' });
    const b = spec('box', 'shell', { team: 'core' });
    m.configure([a, b]);
    m.record(result(a, { phases: { dns: 0.01, connect: 0.02, tls: 0.03, request: 0.1 }, observations: { ssl_earliest_cert_expiry: 1_800_000_000 } }));
    m.record(result(b, { success: false, reason: 'auth', phase: 'auth', message: 'denied' }));
    m.record(result(b, { success: false, aborted: true }));
    m.skipped(b);
    m.schedulerLag.observe(0.01);
    m.inFlight.set(1);
    m.reloadSuccessful.set(1);
    m.reloadTimestamp.set(1_700_000_000);
    const { body } = await m.render();
    const check = spawnSync(promtool, ['check', 'metrics'], { input: body, encoding: 'utf8' });
    expect({ status: check.status, stdout: check.stdout, stderr: check.stderr }).toEqual({ status: 0, stdout: '', stderr: '' });
  });
});
