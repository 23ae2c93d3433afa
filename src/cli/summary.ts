import type pc from 'picocolors';
import type { RunRecord } from './probe-run.js';
import { formatSeconds } from '../core/duration.js';
import type { Bar, ProbeTally, Tallies } from './tally.js';

/** What `run` and `gate` print for people: a line per run, then a table per probe and the totals. */

type Colors = ReturnType<typeof pc.createColors>;

/** Lines of a failing run's output shown under it; the rest is in the JUnit and JSON reports. */
const OUTPUT_TAIL = 10;

/**
 *   PASS lab-url (http)  41.0ms
 *   FAIL lab-ssh (ssh) [2/3]  reason=auth  phase=auth  12.3ms  → permission denied (publickey)
 */
export function renderRunLine(rec: RunRecord, c: Colors, opts: { of?: number; note?: string } = {}): string {
  const r = rec.result;
  const head = r.success ? c.green(c.bold('PASS')) : r.aborted ? c.yellow(c.bold('ABORTED')) : c.red(c.bold('FAIL'));
  const which = opts.of && opts.of > 1 ? ` [${rec.attempt}/${opts.of}]` : opts.of === 0 ? ` [#${rec.attempt}]` : '';
  const why = r.success || r.aborted ? '' : `  reason=${c.red(c.bold(r.reason ?? ''))}  phase=${c.bold(r.phase ?? '')}`;
  const lines = [`${head} ${c.bold(r.name)} (${r.kind})${which}${why}  ${formatSeconds(r.durationSeconds)}${opts.note ? `  ${opts.note}` : ''}`];
  if (!r.success && !r.aborted) {
    if (r.message) lines.push(`  ${c.red('→')} ${r.message}`);
    for (const l of rec.output.slice(-OUTPUT_TAIL)) lines.push(c.dim(`  │ ${l}`));
  }
  return lines.join('\n');
}

function resultCell(t: ProbeTally, bar: Bar, c: Colors): [string, (s: string) => string] {
  if (t.counted === 0) return [t.aborted ? 'aborted' : 'not run', c.yellow];
  const ok = bar.met(t);
  const word = ok ? 'pass' : 'FAIL';
  return [t.runs.length > 1 ? `${word} ${t.passed}/${t.counted}` : word, ok ? c.green : c.red];
}

/**
 *   PROBE    KIND  RESULT    REASON          PHASE     DURATION
 *   lab-url  http  pass 3/3  -               -         41.0ms
 *   lab-ssh  ssh   FAIL 1/3  auth            auth      12.3ms
 * REASON and PHASE are those of the probe's latest failure; DURATION is the median of its runs.
 */
export function renderTable(tallies: Tallies, bar: Bar, c: Colors): string {
  const rows = [['PROBE', 'KIND', 'RESULT', 'REASON', 'PHASE', 'DURATION']];
  const paint: ((s: string) => string)[] = [(s) => s];
  for (const t of tallies.list) {
    const [result, color] = resultCell(t, bar, c);
    const f = t.lastFailure?.result;
    rows.push([t.spec.name, t.spec.kind, result, f?.reason ?? '-', f?.phase ?? '-', t.counted ? formatSeconds(t.medianSeconds()) : '-']);
    paint.push(color);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows
    .map((r, n) =>
      r
        .map((cell, i) => {
          const padded = i === r.length - 1 ? cell : cell.padEnd(widths[i]);
          return n === 0 ? c.bold(padded) : i === 2 ? paint[n](padded) : padded;
        })
        .join('  '),
    )
    .join('\n');
}

/** `13 probes: 12 passed, 1 failed; 39 runs: 37 passed, 2 failed in 4.2s` */
export function renderTotals(tallies: Tallies, bar: Bar, elapsedSeconds: number): string {
  const t = tallies.totals(bar);
  const probes = [`${t.passedProbes} passed`, `${t.failedProbes} failed`, ...(t.notRunProbes ? [`${t.notRunProbes} not run`] : [])];
  const runs = [`${t.passedRuns} passed`, `${t.failedRuns} failed`, ...(t.abortedRuns ? [`${t.abortedRuns} aborted`] : [])];
  const plural = (n: number, w: string) => `${n} ${w}${n === 1 ? '' : 's'}`;
  return `${plural(t.probes, 'probe')}: ${probes.join(', ')}; ${plural(t.runs, 'run')}: ${runs.join(', ')}; in ${formatSeconds(elapsedSeconds)}`;
}
