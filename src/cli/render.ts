import pc from 'picocolors';
import type { ProbeSpec } from '../core/kind.js';
import { formatDuration, formatSeconds } from '../core/duration.js';
import { CERT_EXPIRY } from '../core/observations.js';
import type { RunResult, TargetResult } from '../core/result.js';
import { isHeld } from '../daemon/hold.js';
import { scheduleOf } from '../daemon/status.js';
import { KINDS } from '../kinds/index.js';
import { FLEET_PHASES } from '../kinds/shared/fleet-targets.js';

/**
 * The phase timeline an on-call engineer reads at 3 a.m.: every phase with its time, the failing
 * one marked with its reason, phases a failure kept from running shown as not reached (a passing
 * run lists only the phases it ran).
 *
 *   FAIL canary-url (http)  reason=device_offline  phase=transfer  0.043s
 *     ✓ resolve     0.1ms
 *     ✓ connect     0.4ms
 *     ✓ tls        12.9ms
 *     ✓ request    18.0ms
 *     ✗ transfer    1.2ms  device_offline
 *   the platform served its "cannot reach this device" page (HTTP 502): ...
 */
export function renderTimeline(r: RunResult, allPhases: readonly string[], color = pc.isColorSupported, shown: readonly string[] = []): string {
  const c = pc.createColors(color);
  const lines: string[] = [];
  const head = r.success ? c.green(c.bold('PASS')) : r.aborted ? c.yellow(c.bold('ABORTED')) : c.red(c.bold('FAIL'));
  const why = r.success || r.aborted ? '' : `  reason=${c.red(c.bold(r.reason ?? ''))}  phase=${c.bold(r.phase ?? '')}`;
  lines.push(`${head} ${c.bold(r.name)} (${r.kind})${why}  ${formatSeconds(r.durationSeconds)}`);
  const names = [...allPhases, ...Object.keys(r.phases).filter((p) => !allPhases.includes(p))];
  const width = Math.max(...names.filter((n) => n in r.phases || !r.success).map((n) => n.length));
  let failedSeen = false;
  for (const name of names) {
    const reached = name in r.phases;
    // A fleet run's phases are `discover` and `targets` (each device's own are in its line below);
    // a run of one target never has those two.
    if (!reached && (r.targets ? true : FLEET_PHASES.includes(name as never))) continue;
    const isFailed = !r.success && name === r.phase;
    const time = reached ? formatSeconds(r.phases[name]).padStart(9) : '';
    if (isFailed) {
      failedSeen = true;
      lines.push(`  ${c.red('✗')} ${c.red(c.bold(name.padEnd(width)))} ${time}  ${c.red(r.aborted ? 'aborted' : (r.reason ?? ''))}`);
    } else if (reached) {
      lines.push(`  ${c.green('✓')} ${name.padEnd(width)} ${time}`);
    } else if (failedSeen || !r.success) {
      lines.push(`  ${c.dim('-')} ${c.dim(name.padEnd(width))} ${c.dim('  not reached')}`);
    }
    // A passing run shows only the phases it ran: the others belong to modes this probe does not
    // use (a tunnel probe that does not hold has no `hold`).
  }
  if (r.message) lines.push(`  ${r.success ? '' : c.red('→ ')}${unrepeated(r.message, shown)}`);
  if (r.targets?.length) lines.push(...renderTargets(r.targets, c));
  for (const [k, v] of Object.entries(r.observations)) {
    const shown = showObservation(k, v);
    lines.push(c.dim(`  ${k}: ${shown}`));
  }
  return lines.join('\n');
}

/** The least of a message already shown that is recognised when quoted again. */
const MIN_REPEAT_CHARS = 24;

/**
 * `message` with the messages already printed above it (a companion's, on its own line) referred
 * to rather than quoted again: a device-status failure quotes its companion's message, which the
 * daemon needs (it shows no companion line) and `run` has just printed. The run's message is
 * bounded, so the quote may be cut at its end (`…`).
 */
export function unrepeated(message: string, shown: readonly string[]): string {
  let out = message;
  for (const m of shown) {
    if (m.length < MIN_REPEAT_CHARS) continue;
    const at = out.indexOf(m.slice(0, MIN_REPEAT_CHARS));
    if (at < 0) continue;
    const rest = out.slice(at);
    if (rest.startsWith(m)) out = `${out.slice(0, at)}(quoted above)${rest.slice(m.length)}`;
    else if (rest.endsWith('…') && m.startsWith(rest.slice(0, -1))) out = `${out.slice(0, at)}(quoted above)`;
  }
  return out;
}

/** One line per device of a fleet-target run: its result, time, and a failure's reason, phase and message. */
function renderTargets(targets: readonly TargetResult[], c: ReturnType<typeof pc.createColors>): string[] {
  const failed = targets.filter((t) => !t.success).length;
  const out = [`  devices: ${targets.length - failed} of ${targets.length} passed`];
  for (const t of targets) {
    const time = formatSeconds(t.durationSeconds).padStart(9);
    if (t.success) out.push(`    ${c.green('✓')} ${t.device} ${time}`);
    else out.push(`    ${c.red('✗')} ${t.device} ${time}  ${c.red(t.reason ?? '')}${t.phase ? ` in ${t.phase}` : ''}: ${t.message ?? ''}`);
  }
  return out;
}

/** An observation as a person reads it: a date for a certificate's expiry, milliseconds for a latency percentile. */
function showObservation(key: string, v: number | string): string {
  if (typeof v !== 'number') return v;
  if (key === CERT_EXPIRY) return new Date(v * 1000).toISOString();
  // `ssh_session_latency_seconds.95`: a percentile in seconds, with float noise in its last digits.
  if (/_seconds\.\d+$/.test(key)) return `${Math.round(v * 1000)}ms`;
  return String(v);
}

/** How the daemon runs a probe: on an interval, on a cron pattern, or held open as one long task. */
export function probeMode(spec: ProbeSpec): 'interval' | 'cron' | 'held' {
  return isHeld(spec, KINDS) ? 'held' : spec.cron ? 'cron' : 'interval';
}

export function renderList(specs: ProbeSpec[]): string {
  const rows = [['NAME', 'KIND', 'SCHEDULE', 'TIMEOUT', 'LABELS', 'SOURCE']];
  for (const s of specs) {
    rows.push([
      s.name,
      s.kind,
      probeMode(s) === 'held' ? 'held' : scheduleOf(s),
      formatDuration(s.timeoutMs),
      Object.entries(s.labels)
        .map(([k, v]) => `${k}=${v}`)
        .join(',') || '-',
      `${s.source.file}${s.source.line ? ':' + s.source.line : ''}`,
    ]);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]))).join('  ')).join('\n');
}
