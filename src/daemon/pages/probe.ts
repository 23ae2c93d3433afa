import { stringify } from 'yaml';
import { formatDuration, formatSeconds } from '../../core/duration.js';
import { configView } from '../config-view.js';
import type { FailureRecord, HistoryEntry } from '../history.js';
import { scheduleOf, type StatusStore } from '../status.js';
import { html, type Html } from './html.js';
import { page } from './layout.js';
import { ago, outcome, state, uptimeBar, waterfall, when } from './parts.js';

/**
 * `/probe/NAME`: one probe's last run and last failure as waterfalls, its failures kept apart with
 * their target output, its history, and its config as loaded (secrets as references only).
 * Undefined for a name that is not configured.
 */
export function probePage(status: StatusStore, name: string, now = Date.now()): string | undefined {
  const item = status.get(name);
  if (!item) return undefined;
  const { spec, last } = item;
  const history = status.history;
  const phases = history.phasesOf(spec.kind);
  const failures = history.failures(name);
  const runs = history.runs(name);
  const summary = history.summary(name);
  const labels = Object.entries(spec.labels).map(([k, v]) => `${k}=${v}`);
  const kept = history.enabled
    ? `${summary.runs} of at most ${history.limits.runs} (${summary.failures} failed); failures kept apart: ${failures.length} of at most ${history.limits.failures}`
    : 'history off (--history 0)';

  const body = html`<h1>${spec.name} ${state(item)}</h1>
    ${spec.description ? html`<p>${spec.description}</p>` : ''}
    <dl>
      <dt>kind</dt>
      <dd>${spec.kind}</dd>
      <dt>schedule</dt>
      <dd>${scheduleOf(spec)}, timeout ${formatDuration(spec.timeoutMs)}</dd>
      <dt>labels</dt>
      <dd>${labels.join(', ') || '-'}</dd>
      <dt>defined in</dt>
      <dd>${spec.source.file}${spec.source.line ? `:${spec.source.line}` : ''}</dd>
      <dt>last run</dt>
      <dd>${last ? html`${when(last.startedAt)} (${ago(last.startedAt, now)}): ${outcome(last)}` : 'none yet'}</dd>
      <dt>last success</dt>
      <dd>${item.lastSuccessAt ? `${when(item.lastSuccessAt)} (${ago(item.lastSuccessAt, now)})` : 'none yet'}</dd>
      <dt>consecutive failures</dt>
      <dd>${item.consecutiveFailures}</dd>
      <dt>runs kept</dt>
      <dd>${kept}</dd>
      <dt>p50 / p95 (passing runs)</dt>
      <dd>${summary.p50Seconds === null ? '-' : `${formatSeconds(summary.p50Seconds)} / ${formatSeconds(summary.p95Seconds!)}`}</dd>
      <dt>as JSON</dt>
      <dd><a href="${`/probes/${encodeURIComponent(name)}`}">${`/probes/${name}`}</a></dd>
    </dl>
    <h2>Last run</h2>
    ${
      last
        ? html`<p>${when(last.startedAt)}: <strong>${outcome(last)}</strong>${last.message ? html`: <span class="msg">${last.message}</span>` : ''}</p>
            ${waterfall(last, phases)}${outputBlock('output of the last run', last.output)}`
        : html`<p>No run yet.</p>`
    }
    <h2>Last failure</h2>
    ${failures[0] ? failureSection(failures[0], phases, now) : html`<p>${history.enabled ? 'No failure kept.' : 'History is off.'}</p>`}
    <h2>Recent failures</h2>
    ${failures.length ? failureTable(failures) : html`<p>None kept.</p>`}
    <h2>History</h2>
    ${
      runs.length
        ? html`<p>${uptimeBar(runs)}</p>
            ${historyTable(runs, phases)}`
        : html`<p>${history.enabled ? 'No runs yet.' : 'History is off.'}</p>`
    }
    <h2>Configuration as loaded</h2>
    <p>Secrets are shown as the reference they were given by.</p>
    <pre>${stringify(configView(spec.config))}</pre>`;
  return page(`fleetprobe: ${spec.name}`, body);
}

function failureSection(f: FailureRecord, phases: readonly string[], now: number): Html {
  return html`<p>
      ${when(f.startedAt)} (${ago(f.startedAt, now)}): <strong class="fail">${f.reason ?? 'failed'}</strong> in phase <strong>${f.phase ?? '-'}</strong>
    </p>
    <p class="msg">${f.message ?? ''}</p>
    ${waterfall(f, phases)} ${outputBlock('target output of this failure', f.output, true)}`;
}

function failureTable(failures: readonly FailureRecord[]): Html {
  const rows = failures.map(
    (f) =>
      html`<tr>
        <td class="when">${when(f.startedAt)}</td>
        <td class="num">${formatSeconds(f.durationSeconds)}</td>
        <td>${f.reason ?? '-'}</td>
        <td>${f.phase ?? '-'}</td>
        <td class="msg">${f.message ?? ''}${outputBlock(`output (${f.output.length} lines)`, f.output)}</td>
      </tr>`,
  );
  return table(
    ['started', 'duration', 'reason', 'phase', 'message'].map((h) => html`<th class="${h === 'duration' ? 'num' : ''}">${h}</th>`),
    rows,
  );
}

function historyTable(runs: readonly (HistoryEntry & { message?: string | null })[], phases: readonly string[]): Html {
  const rows = runs.map(
    (e) =>
      html`<tr>
        <td class="when">${when(e.startedAt)}</td>
        <td class="${e.success ? 'pass' : 'fail'}">${outcome(e)}</td>
        <td class="num">${formatSeconds(e.durationSeconds)}</td>
        ${phases.map((p) => html`<td class="num">${e.phases[p] === undefined ? '-' : formatSeconds(e.phases[p])}</td>`)}
        <td class="msg">${e.message ?? ''}</td>
      </tr>`,
  );
  return table(
    ['started', 'result', 'duration', ...phases, 'message'].map((h) => html`<th class="${h === 'duration' || phases.includes(h) ? 'num' : ''}">${h}</th>`),
    rows,
  );
}

function table(head: Html[], rows: Html[]): Html {
  return html`<table>
    <thead>
      <tr>
        ${head}
      </tr>
    </thead>
    <tbody>
      ${rows}
    </tbody>
  </table>`;
}

/** Target output in a <pre>; folded in a <details> (no script needed) unless `open`. */
function outputBlock(label: string, lines: readonly string[] | undefined, open = false): Html | '' {
  if (!lines?.length) return '';
  return html`<details${open ? html` open` : ''}><summary>${label}</summary><pre>${lines.join('\n')}</pre></details>`;
}
