import v8 from 'node:v8';
import vm from 'node:vm';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { RunResult } from '../../src/core/result.js';
import { fromHalf, toHalf } from '../../src/daemon/half-float.js';
import { DEFAULT_HISTORY_LIMITS, historyFrom, RunHistory } from '../../src/daemon/history.js';
import { HTTP_PHASES, httpRun } from '../helpers/runs.js';

const phasesOf = (kind: string) => (kind === 'http' ? HTTP_PHASES : ['api', 'reachability']);

let clock = Date.parse('2026-03-01T03:00:00Z');
const run = (name: string, over: Partial<RunResult> = {}) => httpRun(name, (clock += 15_000), over);
const offline = (name: string, message = 'the platform served its "cannot reach this device" page (HTTP 502)') =>
  run(name, {
    success: false,
    reason: 'device_offline',
    phase: 'transfer',
    message,
    durationSeconds: 0.0052,
    phases: { resolve: 0.00001, connect: 0.0005, tls: 0.002, request: 0.0018, transfer: 0.0002 },
    output: ['line 1', 'line 2'],
  });

function history(limits = DEFAULT_HISTORY_LIMITS, names = ['a']) {
  const h = new RunHistory(limits, phasesOf);
  h.configure(names.map((name) => ({ name, kind: 'http' })));
  return h;
}

describe('half floats (durations in the history)', () => {
  it('keep seconds from 60 ns to 18 h within 0.05%, and exact zeros', () => {
    fc.assert(
      fc.property(fc.double({ min: 6.2e-5, max: 65_000, noNaN: true }), (s) => {
        expect(Math.abs(fromHalf(toHalf(s)) - s) / s).toBeLessThanOrEqual(2 ** -11);
      }),
    );
    fc.assert(
      fc.property(fc.double({ min: 0, max: 6.2e-5, noNaN: true }), (s) => {
        expect(Math.abs(fromHalf(toHalf(s)) - s)).toBeLessThanOrEqual(2 ** -25);
      }),
    );
    expect(fromHalf(toHalf(0))).toBe(0);
    expect(fromHalf(toHalf(1))).toBe(1);
    // Longer than a half can hold: the largest one, never Infinity (which JSON would turn to null).
    expect(fromHalf(toHalf(1e9))).toBe(65504);
  });
});

describe('run history', () => {
  it('keeps the last N runs newest first, with per-phase times, result, reason and phase', () => {
    const h = history({ runs: 3, failures: 2 });
    const runs = [run('a'), offline('a'), run('a'), run('a', { durationSeconds: 1.5, phases: { resolve: 0.001, connect: 0.002 } })];
    for (const r of runs) h.record(r);
    const kept = h.runs('a');
    expect(kept.map((e) => e.startedAt)).toEqual([runs[3].startedAt, runs[2].startedAt, runs[1].startedAt]);
    expect(kept[0]).toMatchObject({ success: true, reason: null, phase: null });
    expect(kept[0].durationSeconds).toBeCloseTo(1.5, 3);
    // Phases never reached are absent, not zero.
    expect(Object.keys(kept[0].phases)).toEqual(['resolve', 'connect']);
    expect(kept[2]).toMatchObject({ success: false, reason: 'device_offline', phase: 'transfer', message: runs[1].message });
    expect(kept[2].phases.tls).toBeCloseTo(0.002, 5);
  });

  it('keeps the last M failures apart, with message and output, after a thousand passes', () => {
    const h = history();
    const failures = Array.from({ length: 25 }, (_, i) => offline('a', `failure ${i}`));
    for (const f of failures) h.record(f);
    for (let i = 0; i < 1000; i++) h.record(run('a'));
    expect(h.runs('a')).toHaveLength(100);
    expect(h.runs('a').every((e) => e.success)).toBe(true);
    const kept = h.failures('a');
    expect(kept.map((f) => f.message)).toEqual(
      failures
        .slice(5)
        .reverse()
        .map((f) => f.message),
    );
    expect(kept[0]).toMatchObject({ reason: 'device_offline', phase: 'transfer', output: ['line 1', 'line 2'] });
    expect(h.lastFailure('a')?.message).toBe('failure 24');
    expect(h.summary('a')).toMatchObject({ runs: 100, failures: 0 });
  });

  it('gives p50 and p95 of the passing runs kept', () => {
    const h = history();
    for (let i = 1; i <= 100; i++) h.record(run('a', { durationSeconds: i / 1000 }));
    h.record(offline('a'));
    const s = h.summary('a');
    expect(s).toMatchObject({ runs: 100, failures: 1 });
    expect(s.p50Seconds).toBeCloseTo(0.051, 4);
    expect(s.p95Seconds).toBeCloseTo(0.096, 4);
    expect(history().summary('a')).toEqual({ runs: 0, failures: 0, p50Seconds: null, p95Seconds: null });
  });

  it('skips aborted runs and unknown probes; a reload keeps probes of the same kind and forgets the rest', () => {
    const h = history(DEFAULT_HISTORY_LIMITS, ['a', 'b', 'c']);
    h.record(run('a', { aborted: true, success: false, message: 'aborted by shutdown' }));
    h.record(run('nobody'));
    expect(h.runs('a')).toEqual([]);
    for (const name of ['a', 'b', 'c']) h.record(offline(name));
    h.configure([
      { name: 'a', kind: 'http' },
      { name: 'b', kind: 'device-status' },
    ]);
    expect(h.runs('a')).toHaveLength(1);
    expect(h.failures('a')).toHaveLength(1);
    expect(h.runs('b')).toEqual([]);
    expect(h.failures('c')).toEqual([]);
  });

  it('records a failure in a phase its kind did not declare under that phase name', () => {
    const h = history();
    h.record(run('a', { success: false, reason: 'internal', phase: 'surprise', message: 'x', phases: { surprise: 0.1 } }));
    expect(h.runs('a')[0]).toMatchObject({ reason: 'internal', phase: 'surprise', phases: {} });
  });

  it('--history 0 turns it off; bad values are refused with the flag named', () => {
    expect(historyFrom(undefined)).toEqual({ runs: 100, failures: 20 });
    expect(historyFrom('500')).toEqual({ runs: 500, failures: 20 });
    const off = history(historyFrom('0'));
    off.record(offline('a'));
    expect(off.enabled).toBe(false);
    expect([off.runs('a'), off.failures('a')]).toEqual([[], []]);
    for (const bad of ['-1', '1.5', 'ten', '', '100000']) expect(() => historyFrom(bad)).toThrow(/--history must be a whole number from 0 to 10000/);
  });

  /**
   * The budget: at most 50 MB more heap with the history on at the defaults, at 11,500
   * probes. Filled with 100 typical runs each (http, 5 phases, 2 failures of 100 with their
   * message and 2 lines of output) and measured as heap plus ArrayBuffers after a full GC.
   * The figures are in docs/status-page.md ("Memory").
   */
  it('holds 11,500 probes × 100 runs within 50 MB; a whole-fleet outage stays bounded', () => {
    const names = Array.from({ length: 11_500 }, (_, i) => `probe-${i}`);
    const typical = measure(names, (name, i) => (i === 30 || i === 70 ? offline(name, `${OFFLINE_PAGE} for ${name} at run ${i}`) : undefined));
    console.log(`run history at 11,500 probes × 100 runs: ${typical.toFixed(1)} MB`);
    expect(typical).toBeLessThanOrEqual(50);
    // Every run of every probe failing: 20 failures kept apart per probe, each with its own times.
    const outage = measure(names, (name) => offline(name, `${OFFLINE_PAGE} for ${name}`));
    console.log(`run history at 11,500 probes × 100 runs, all failing: ${outage.toFixed(1)} MB`);
    expect(outage).toBeLessThanOrEqual(120);
  });
});

const OFFLINE_PAGE = 'the platform served its "cannot reach this device" page (HTTP 502)';

/** MB of heap and ArrayBuffers a history of 100 runs per probe holds; `fail` picks failing runs. */
function measure(names: string[], fail: (name: string, i: number) => RunResult | undefined): number {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const used = () => {
    gc();
    gc();
    const m = process.memoryUsage();
    return m.heapUsed + m.arrayBuffers;
  };
  const before = used();
  const h = new RunHistory(DEFAULT_HISTORY_LIMITS, phasesOf);
  h.configure(names.map((name) => ({ name, kind: 'http' })));
  const pass = run('x');
  for (let i = 0; i < 100; i++) {
    for (const name of names) h.record(fail(name, i) ?? { ...pass, name, startedAt: pass.startedAt + i * 15_000 });
  }
  const mb = (used() - before) / 1e6;
  expect(h.runs(names[names.length - 1])).toHaveLength(100);
  return mb;
}
