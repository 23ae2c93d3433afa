import { setMaxListeners } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import pLimit from 'p-limit';
import type { ProbeSpec } from '../core/kind.js';
import { formatDuration } from '../core/duration.js';
import type { ManyProbes } from './many-probes.js';
import { runCollected, type RunRecord } from './probe-run.js';
import type { Outcome } from './report.js';
import type { ProbeTally } from './tally.js';

export interface GateOptions {
  forMs: number;
  everyMs: number;
  /** Failures in a row of one probe that fail the gate. */
  failAfter: number;
}

/**
 * `fleetprobe gate`: after a deploy, every selected probe runs at 0, every, 2 × every, ... up to
 * and including `for`; the gate fails as soon as one probe fails `failAfter` times in a row, and
 * passes when the period ends without that.
 *
 * Each probe keeps its own beat (a slow build does not delay the quick probes), so a path that
 * breaks mid-gate is caught within failAfter × every plus one run: with --every 5s --fail-after 2,
 * a fault switched on at 12 s fails the runs at 15 s and 20 s, and the gate exits at about 20 s.
 * A run that overruns `every` is followed at once by the next, never overlapped.
 */
export async function runGate(m: ManyProbes, g: GateOptions): Promise<Outcome> {
  const limit = pLimit(m.concurrency);
  const failed = new AbortController();
  const stop = AbortSignal.any([m.interrupted, failed.signal]);
  // Every probe's wait and run listen on it: not a leak, so no MaxListenersExceededWarning.
  setMaxListeners(0, stop);
  const t0 = performance.now();
  const elapsedMs = () => performance.now() - t0;
  const progress = new RoundProgress(m, g);
  let failedBy: RunRecord | undefined;

  m.report.print(
    `gate: ${m.specs.length} probe${m.specs.length === 1 ? '' : 's'} for ${formatDuration(g.forMs)}, every ${formatDuration(g.everyMs)}; ` +
      `fails when one fails ${g.failAfter} time${g.failAfter === 1 ? '' : 's'} in a row (concurrency ${m.concurrency})`,
  );
  if (m.labControl) process.stderr.write(`lab control: ${m.labControl} (curl -X PUT ${m.labControl}/faults/<name> switches a fault on)\n`);

  const probeLoop = async (spec: ProbeSpec) => {
    try {
      await beat(spec);
    } finally {
      // A probe whose last run ended past the period has no more rounds to wait for.
      if (!stop.aborted) progress.finished(spec.name, elapsedMs());
    }
  };
  const beat = async (spec: ProbeSpec) => {
    let dueMs = 0;
    for (let attempt = 1; dueMs <= g.forMs && !stop.aborted; attempt++) {
      const waitMs = dueMs - elapsedMs();
      if (waitMs > 0 && !(await sleep(waitMs, true, { signal: stop }).catch(() => false))) return;
      const rec = await limit(() => (stop.aborted ? undefined : runCollected(spec, m.all, attempt, { shutdown: stop, log: m.log })));
      if (!rec) return;
      const t = m.report.record(rec);
      // Runs the gate itself cut short (Ctrl-C, another probe failing it) are in the reports only.
      if (rec.result.aborted) return;
      showRun(m, rec, t);
      if (t.streak >= g.failAfter && !failedBy) {
        failedBy = rec;
        failed.abort();
        return;
      }
      progress.update(elapsedMs());
      dueMs = Math.max(dueMs + g.everyMs, elapsedMs());
    }
  };
  await Promise.all(m.specs.map(probeLoop));

  return gateOutcome(m, g, { failedBy, rounds: progress.round, tookMs: elapsedMs() });
}

/** The verdict: interrupted (Ctrl-C, SIGTERM), failed (a probe failed K times in a row), or passed. */
function gateOutcome(m: ManyProbes, g: GateOptions, end: { failedBy?: RunRecord; rounds: number; tookMs: number }): Outcome {
  const settings = { forSeconds: g.forMs / 1000, everySeconds: g.everyMs / 1000, failAfter: g.failAfter, rounds: end.rounds };
  const took = `${(end.tookMs / 1000).toFixed(1)}s`;
  const times = (n: number) => `${n} time${n === 1 ? '' : 's'}`;
  if (m.interrupted.aborted && !end.failedBy) {
    const verdict = `gate interrupted after ${took}: the report holds the runs that ended`;
    return { success: false, interrupted: true, verdict, extra: { gate: { ...settings, verdict: 'interrupted' } } };
  }
  if (end.failedBy) {
    const r = end.failedBy.result;
    const verdict = `gate FAILED after ${took}: ${r.name} failed ${times(g.failAfter)} in a row (${r.reason} in ${r.phase}: ${r.message})`;
    return { success: false, interrupted: false, verdict, extra: { gate: { ...settings, verdict: 'failed', failedProbe: r.name } } };
  }
  const neverRan = m.report.tallies.list.filter((t) => t.counted === 0).map((t) => t.spec.name);
  const success = neverRan.length === 0;
  const verdict = success
    ? `gate passed: ${m.specs.length} probe${m.specs.length === 1 ? '' : 's'} for ${formatDuration(g.forMs)} (${end.rounds} rounds), none failed ${times(g.failAfter)} in a row`
    : `gate FAILED: never ran: ${neverRan.join(', ')}`;
  return { success, interrupted: false, verdict, extra: { gate: { ...settings, verdict: success ? 'passed' : 'failed', failedProbe: null } } };
}

/** People see failures and recoveries as they happen; passing runs show in the round lines. */
function showRun(m: ManyProbes, rec: RunRecord, t: ProbeTally): void {
  if (!rec.result.success) m.report.printRun(rec, { of: 0, note: `(${t.streak} in a row)` });
  else if (t.runs.length > 1 && t.runs.at(-2)?.result.success === false) m.report.printRun(rec, { of: 0, note: '(recovered)' });
}

/**
 * A progress line each time every probe has completed one more run:
 *   [10.2s/30s] round 3: 39 runs, 38 passed, 1 failed; failing now: lab-url (1 in a row)
 */
class RoundProgress {
  round = 0;
  private readonly done = new Set<string>();
  constructor(
    private readonly m: ManyProbes,
    private readonly g: GateOptions,
  ) {}

  finished(name: string, elapsedMs: number): void {
    this.done.add(name);
    this.update(elapsedMs);
  }

  /** A round is complete when every probe still going has run once more. */
  update(elapsedMs: number): void {
    const tallies = this.m.report.tallies;
    const going = tallies.list.filter((t) => !this.done.has(t.spec.name));
    if (!going.length) return;
    const done = Math.min(...going.map((t) => t.counted));
    if (done <= this.round) return;
    this.round = done;
    const totals = tallies.runTotals();
    const failing = tallies.list.filter((t) => t.streak > 0).map((t) => ({ name: t.spec.name, streak: t.streak }));
    const elapsed = Math.round(elapsedMs / 100) / 10;
    this.m.report.event({
      type: 'progress',
      elapsedSeconds: elapsed,
      round: done,
      runs: totals.runs,
      passed: totals.passedRuns,
      failed: totals.failedRuns,
      failing,
    });
    const now = failing.length ? `failing now: ${failing.map((f) => `${f.name} (${f.streak} in a row)`).join(', ')}` : 'all passing';
    this.m.report.print(
      `[${elapsed}s/${formatDuration(this.g.forMs)}] round ${done}: ${totals.runs} runs, ${totals.passedRuns} passed, ${totals.failedRuns} failed; ${now}`,
    );
  }
}
