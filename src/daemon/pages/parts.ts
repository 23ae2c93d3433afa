import { formatSeconds } from '../../core/duration.js';
import type { HistoryEntry } from '../history.js';
import type { ProbeStatus } from '../status.js';
import escapeHtml from 'escape-html';
import { Html, html } from './html.js';

/** Cells in a probe's uptime bar on the overview: its last 100 runs at most. */
export const BAR_RUNS = 100;

/** A time for on-call across locations: UTC, to the second. */
export function when(ms: number): string {
  return new Date(ms).toISOString().replace('T', ' ').slice(0, 19) + 'Z';
}

export function ago(ms: number, now: number): string {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 120) return `${s}s ago`;
  if (s < 7200) return `${Math.round(s / 60)}m ago`;
  if (s < 172_800) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86_400)}d ago`;
}

/** `device_offline in transfer`, or `pass`. */
export function outcome(e: Pick<HistoryEntry, 'success' | 'reason' | 'phase'>): string {
  if (e.success) return 'pass';
  return `${e.reason ?? 'failed'}${e.phase ? ` in ${e.phase}` : ''}`;
}

export function state(item: ProbeStatus): Html {
  if (!item.last) return html`<span class="pending">PENDING</span>`;
  if (item.last.success) return html`<span class="pass">PASS</span>`;
  return html`<span class="fail">FAIL</span>${item.consecutiveFailures > 1 ? `\u00a0×${item.consecutiveFailures}` : ''}`;
}

/**
 * One cell per run, oldest on the left, each titled with its time, outcome and duration. A cell's
 * text (`.` pass, `x` fail) is what a terminal browser shows; CSS hides it and colours the cell.
 */
export function uptimeBar(newestFirst: readonly HistoryEntry[]): Html {
  const runs = newestFirst.slice(0, BAR_RUNS).reverse();
  const passed = runs.filter((e) => e.success).length;
  // One string for all cells (a page holds up to 20,000): no whitespace, no Html object per cell.
  let cells = '';
  for (const e of runs) {
    const title = escapeHtml(`${when(e.startedAt)} · ${outcome(e)} · ${formatSeconds(e.durationSeconds)}`);
    cells += e.success ? `<span class="c" title="${title}">.</span>` : `<span class="c f" title="${title}">x</span>`;
  }
  // Non-breaking spaces keep a terminal browser from splitting the bar's cell.
  return html`<span class="bar">${new Html(cells)}</span>&nbsp;<small title="passed">${`${passed}\u00a0of\u00a0${runs.length}`}</small>`;
}

/**
 * The phases of one run as a horizontal waterfall: each phase a bar starting where the ones before
 * it ended (phases run one after another), scaled to the run's whole duration, the failing one red.
 */
export function waterfall(run: Pick<HistoryEntry, 'success' | 'reason' | 'phase' | 'phases' | 'durationSeconds'>, kindPhases: readonly string[]): Html {
  const names = [...kindPhases, ...Object.keys(run.phases).filter((p) => !kindPhases.includes(p))];
  const total =
    Math.max(
      run.durationSeconds,
      Object.values(run.phases).reduce((a, b) => a + b, 0),
    ) || 1;
  let start = 0;
  const rows = names.map((name) => {
    const failed = !run.success && name === run.phase;
    const s = run.phases[name];
    if (s === undefined) {
      return html`<tr>
        <td>${name}</td>
        <td class="num pending">${failed ? '-' : 'not reached'}</td>
        <td class="track"></td>
        <td>${failed ? outcome(run) : ''}</td>
      </tr>`;
    }
    const style = `margin-left:${((start / total) * 100).toFixed(2)}%;width:${((s / total) * 100).toFixed(2)}%`;
    start += s;
    return html`<tr>
      <td>${name}</td>
      <td class="${failed ? 'num fail' : 'num'}">${formatSeconds(s)}</td>
      <td class="track"><div class="${failed ? 'seg f' : 'seg'}" style="${style}"></div></td>
      <td>${failed ? (run.reason ?? 'failed') : ''}</td>
    </tr>`;
  });
  return html`<table class="wf">
    ${rows}
    <tr>
      <td>total</td>
      <td class="num">${formatSeconds(run.durationSeconds)}</td>
      <td></td>
      <td></td>
    </tr>
  </table>`;
}
