import type { ProbeSpec } from '../core/kind.js';
import type { RunRecord } from './probe-run.js';

/** What one selected probe has done so far in a `run` or `gate`: the runs and their counts. */
export class ProbeTally {
  readonly runs: RunRecord[] = [];
  passed = 0;
  failed = 0;
  /** Ended by Ctrl-C or by the gate stopping: neither a pass nor a failure. */
  aborted = 0;
  /** Failures in a row up to the latest run, and the longest such streak. */
  streak = 0;
  longestStreak = 0;

  constructor(readonly spec: ProbeSpec) {}

  add(rec: RunRecord): void {
    this.runs.push(rec);
    const r = rec.result;
    if (r.aborted) this.aborted++;
    else if (r.success) {
      this.passed++;
      this.streak = 0;
    } else {
      this.failed++;
      this.streak++;
      this.longestStreak = Math.max(this.longestStreak, this.streak);
    }
  }

  /** Runs that passed or failed (not aborted). */
  get counted(): number {
    return this.passed + this.failed;
  }

  get lastFailure(): RunRecord | undefined {
    return this.runs.findLast((r) => !r.result.success && !r.result.aborted);
  }

  /** Median run time of the counted runs, in seconds (0 when none). */
  medianSeconds(): number {
    const d = this.runs
      .filter((r) => !r.result.aborted)
      .map((r) => r.result.durationSeconds)
      .sort((a, b) => a - b);
    if (!d.length) return 0;
    const mid = Math.floor(d.length / 2);
    return d.length % 2 ? d[mid] : (d[mid - 1] + d[mid]) / 2;
  }

  totalSeconds(): number {
    return this.runs.filter((r) => !r.result.aborted).reduce((t, r) => t + r.result.durationSeconds, 0);
  }
}

/**
 * The bar a probe must meet: `run` asks for a share of passing runs (--min-success), `gate` for no
 * K failures in a row (--fail-after). A probe with no counted run never meets it.
 */
export interface Bar {
  met(t: ProbeTally): boolean;
  /** Why it was not met, e.g. "2 of 3 runs failed (needs 100%)". */
  shortfall(t: ProbeTally): string;
  /** For reports: { 'min-success': '1' } or { 'fail-after': '2' }. */
  settings: Record<string, string>;
}

export function minSuccessBar(ratio: number, repeat: number): Bar {
  return {
    met: (t) => t.counted > 0 && t.passed / t.counted >= ratio,
    shortfall: (t) => (t.counted === 1 ? 'the run failed' : `${t.failed} of ${t.counted} runs failed (needs ${Math.round(ratio * 1000) / 10}% passing)`),
    settings: { repeat: String(repeat), 'min-success': String(ratio) },
  };
}

export function failAfterBar(failAfter: number, settings: Record<string, string>): Bar {
  return {
    met: (t) => t.counted > 0 && t.longestStreak < failAfter,
    shortfall: (t) => `failed ${t.longestStreak} time${t.longestStreak === 1 ? '' : 's'} in a row (fail-after ${failAfter})`,
    settings: { ...settings, 'fail-after': String(failAfter) },
  };
}

export class Tallies {
  readonly list: ProbeTally[];
  private readonly byName: Map<string, ProbeTally>;

  constructor(specs: ProbeSpec[]) {
    this.list = specs.map((s) => new ProbeTally(s));
    this.byName = new Map(this.list.map((t) => [t.spec.name, t]));
  }

  add(rec: RunRecord): ProbeTally {
    const t = this.byName.get(rec.result.name)!;
    t.add(rec);
    return t;
  }

  runTotals() {
    const sum = (f: (t: ProbeTally) => number) => this.list.reduce((n, t) => n + f(t), 0);
    return { runs: sum((t) => t.counted), passedRuns: sum((t) => t.passed), failedRuns: sum((t) => t.failed), abortedRuns: sum((t) => t.aborted) };
  }

  totals(bar: Bar) {
    const met = this.list.filter((t) => bar.met(t)).length;
    const notRun = this.list.filter((t) => t.counted === 0).length;
    return { probes: this.list.length, passedProbes: met, failedProbes: this.list.length - met - notRun, notRunProbes: notRun, ...this.runTotals() };
  }
}
