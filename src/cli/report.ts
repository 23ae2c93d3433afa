import pc from 'picocolors';
import type { ProbeSpec } from '../core/kind.js';
import { resultToJson } from '../core/result.js';
import { renderJunit, type JunitFile } from './junit.js';
import type { RunRecord } from './probe-run.js';
import { renderRunLine, renderTable, renderTotals } from './summary.js';
import { Tallies, type Bar, type ProbeTally } from './tally.js';

export interface ReportOptions {
  mode: 'run' | 'gate';
  /** JSON Lines on stdout instead of lines for people. */
  json: boolean;
  junit?: JunitFile;
  bar: Bar;
  out: { write(text: string): unknown; isTTY?: boolean };
}

export interface Outcome {
  success: boolean;
  interrupted: boolean;
  /** The last line for people, e.g. "gate passed: ...". */
  verdict?: string;
  /** More fields of the JSON summary (the gate's settings and verdict). */
  extra?: Record<string, unknown>;
}

/**
 * Everything `run` (many probes) and `gate` report: each run as it ends (a line, or a JSON object),
 * then a summary (a table and totals, or a JSON object) and the JUnit file. The same tallies feed
 * all three, so they cannot disagree.
 */
export class Report {
  readonly tallies: Tallies;
  readonly startedAt = Date.now();
  private readonly t0 = performance.now();
  readonly c: ReturnType<typeof pc.createColors>;

  constructor(
    specs: ProbeSpec[],
    private readonly opts: ReportOptions,
  ) {
    this.tallies = new Tallies(specs);
    this.c = pc.createColors(!opts.json && Boolean(opts.out.isTTY));
  }

  elapsedSeconds(): number {
    return (performance.now() - this.t0) / 1000;
  }

  /** Counts a run; in JSON mode prints it as one line. People's lines are the caller's choice (printRun). */
  record(rec: RunRecord): ProbeTally {
    const t = this.tallies.add(rec);
    if (this.opts.json) {
      const output = rec.output.length ? { output: rec.output } : {};
      this.event({ type: 'run', attempt: rec.attempt, ...resultToJson(rec.result), ...output });
    }
    return t;
  }

  printRun(rec: RunRecord, opts: { of?: number; note?: string } = {}): void {
    this.print(renderRunLine(rec, this.c, opts));
  }

  /** A line for people (nothing in JSON mode). */
  print(line: string): void {
    if (!this.opts.json) this.opts.out.write(line + '\n');
  }

  /** A JSON Lines object (nothing for people). */
  event(obj: Record<string, unknown>): void {
    if (this.opts.json) this.opts.out.write(JSON.stringify(obj) + '\n');
  }

  finish(outcome: Outcome): void {
    const { bar, junit } = this.opts;
    const elapsed = this.elapsedSeconds();
    junit?.write(
      renderJunit({ name: `fleetprobe ${this.opts.mode}`, tallies: this.tallies.list, bar, startedAt: this.startedAt, interrupted: outcome.interrupted }),
    );
    if (this.opts.json) {
      this.event({
        type: 'summary',
        mode: this.opts.mode,
        success: outcome.success,
        interrupted: outcome.interrupted,
        durationSeconds: Math.round(elapsed * 1000) / 1000,
        ...outcome.extra,
        totals: this.tallies.totals(bar),
        probes: this.tallies.list.map((t) => probeSummary(t, bar)),
      });
      return;
    }
    this.print('');
    this.print(renderTable(this.tallies, bar, this.c));
    this.print(renderTotals(this.tallies, bar, elapsed));
    if (junit) this.print(`JUnit report: ${junit.file}`);
    if (outcome.verdict) this.print(outcome.success ? this.c.green(outcome.verdict) : this.c.red(this.c.bold(outcome.verdict)));
  }
}

function probeSummary(t: ProbeTally, bar: Bar) {
  const f = t.lastFailure?.result;
  return {
    name: t.spec.name,
    kind: t.spec.kind,
    labels: t.spec.labels,
    success: bar.met(t),
    runs: t.counted,
    passed: t.passed,
    failed: t.failed,
    aborted: t.aborted,
    longestFailureStreak: t.longestStreak,
    medianDurationSeconds: Math.round(t.medianSeconds() * 1e6) / 1e6,
    lastFailure: f ? { reason: f.reason, phase: f.phase, message: f.message, startedAt: new Date(f.startedAt).toISOString() } : null,
  };
}
