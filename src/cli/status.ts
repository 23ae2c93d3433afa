import pc from 'picocolors';
import { formatSeconds } from '../core/duration.js';
import { FleetprobeError, UsageError } from '../core/errors.js';
import type { RunResult } from '../core/result.js';
import { cleanProgressLine } from '../core/run.js';
import type { StatusStore } from '../daemon/status.js';
import { renderTimeline } from './render.js';

/**
 * `fleetprobe status [NAME] --daemon URL`: what a running daemon knows, for on-call at a terminal.
 * Without NAME every probe's state and last failure (GET /probes); with NAME its last run, last
 * failure, the failures kept apart and its history (GET /probes/NAME). `--json` prints the
 * daemon's answer as it came.
 */

export const DEFAULT_DAEMON_URL = 'http://127.0.0.1:9437';
const REQUEST_TIMEOUT_MS = 10_000;
const MAX_ANSWER_BYTES = 64 * 1024 * 1024;

type ProbeItem = ReturnType<StatusStore['toJson']>[number];
type ProbeDetail = NonNullable<ReturnType<StatusStore['detailJson']>>;
type Entry = ProbeDetail['history'][number];

export async function cmdStatus(args: { positionals: string[]; values: { daemon?: string; json?: boolean } }): Promise<number> {
  const name = args.positionals[1];
  if (args.positionals.length > 2) throw new UsageError('status takes at most one probe name: fleetprobe status [NAME] --daemon URL');
  const base = daemonUrl(args.values.daemon ?? (process.env.FLEETPROBE_DAEMON || DEFAULT_DAEMON_URL));
  const color = Boolean(process.stdout.isTTY) && pc.isColorSupported;
  try {
    if (name === undefined) {
      const items = (await ask(base, '/probes')) as ProbeItem[];
      process.stdout.write(args.values.json ? JSON.stringify(items, null, 2) + '\n' : renderOverview(items, color) + '\n');
      return items.some((i) => i.lastRun && !i.lastRun.success) ? 1 : 0;
    }
    const detail = (await ask(base, `/probes/${encodeURIComponent(name)}`, name)) as ProbeDetail;
    process.stdout.write(args.values.json ? JSON.stringify(detail, null, 2) + '\n' : renderDetail(detail, color) + '\n');
    return detail.lastRun && !detail.lastRun.success ? 1 : 0;
  } catch (err) {
    if (!(err instanceof FleetprobeError) || (err.code !== 'FP_ERR_DAEMON' && err.code !== 'FP_ERR_UNKNOWN_PROBE')) throw err;
    process.stderr.write(`fleetprobe: ${err.message}\n`);
    return 2;
  }
}

function daemonUrl(value: string): URL {
  const url = URL.canParse(value) ? new URL(value) : undefined;
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    throw new UsageError(`--daemon must be the daemon's http(s) URL, such as ${DEFAULT_DAEMON_URL}, got "${value}"`);
  }
  return url;
}

/** GET one JSON document from the daemon, within REQUEST_TIMEOUT_MS. */
async function ask(base: URL, path: string, probe?: string): Promise<unknown> {
  const url = new URL(path, base);
  const fail = (why: string, cause?: unknown) => new FleetprobeError('FP_ERR_DAEMON', `cannot read ${url.href} from the daemon: ${why}`, { cause });
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS), headers: { accept: 'application/json' } });
  } catch (err) {
    const e = err as Error & { cause?: { code?: string; message?: string } };
    throw fail(e.name === 'TimeoutError' ? `no answer within ${REQUEST_TIMEOUT_MS / 1000}s` : (e.cause?.code ?? e.cause?.message ?? e.message), err);
  }
  const text = await readCapped(res, MAX_ANSWER_BYTES).catch((err: unknown) => {
    throw fail(`the answer broke off (${(err as Error).message})`, err);
  });
  if (res.status === 404 && probe !== undefined) {
    throw new FleetprobeError('FP_ERR_UNKNOWN_PROBE', `no probe named "${probe}" at ${base.origin}; \`fleetprobe status\` lists them`);
  }
  if (res.status !== 200) throw fail(`HTTP ${res.status}`);
  try {
    return JSON.parse(text);
  } catch {
    throw fail('the answer is not JSON (is this a fleetprobe daemon?)');
  }
}

async function readCapped(res: Response, maxBytes: number): Promise<string> {
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  for await (const chunk of res.body ?? []) {
    bytes += chunk.length;
    if (bytes > maxBytes) throw new Error(`longer than ${maxBytes} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Text from the daemon that came from targets, made safe for a terminal (control characters out). */
const clean = (text: string | null | undefined) => cleanProgressLine(text ?? '');

function when(iso: string): string {
  return iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

function stateOf(item: Pick<ProbeItem, 'lastRun' | 'consecutiveFailures'>): string {
  if (!item.lastRun) return 'PENDING';
  if (item.lastRun.success) return 'PASS';
  return `FAIL${item.consecutiveFailures > 1 ? ` x${item.consecutiveFailures}` : ''}`;
}

/** A state coloured after padding, so colour codes do not upset the columns. */
function paint(state: string, c: ReturnType<typeof pc.createColors>): string {
  return state.startsWith('PASS') ? c.green(state) : state.startsWith('FAIL') ? c.red(state) : c.dim(state);
}

function outcome(e: { success: boolean; reason: string | null; phase: string | null }): string {
  return e.success ? 'pass' : `${e.reason ?? 'failed'}${e.phase ? ` in ${e.phase}` : ''}`;
}

export function renderOverview(items: ProbeItem[], color: boolean): string {
  const c = pc.createColors(color);
  const rows = [['NAME', 'KIND', 'STATE', 'LAST RUN', 'LAST FAILURE']];
  for (const i of items) {
    const failure = i.lastFailure ? `${when(i.lastFailure.startedAt)} ${outcome(i.lastFailure)}: ${clean(i.lastFailure.message).slice(0, 100)}` : '-';
    rows.push([i.name, i.kind, stateOf(i), i.lastRun ? when(i.lastRun.startedAt) : '-', failure]);
  }
  const widths = rows[0].map((_, k) => Math.max(...rows.map((r) => r[k].length)));
  const line = (r: string[], n: number) =>
    r.map((cell, k) => (k === r.length - 1 ? cell : k === 2 && n > 0 ? paint(cell.padEnd(widths[k]), c) : cell.padEnd(widths[k])));
  return rows.map((r, n) => line(r, n).join('  ')).join('\n');
}

export function renderDetail(d: ProbeDetail, color: boolean): string {
  const c = pc.createColors(color);
  const labels = Object.entries(d.labels).map(([k, v]) => `${k}=${v}`);
  const out = [`${c.bold(d.name)} (${d.kind})  ${paint(stateOf(d), c)}  ${d.schedule}, timeout ${d.timeout}${labels.length ? `  ${labels.join(',')}` : ''}`];
  if (d.lastRun) out.push('', c.bold(`Last run, ${when(d.lastRun.startedAt)}`), renderTimeline(asResult(d, d.lastRun), d.phases, color));
  if (d.lastOutput.length) out.push(...d.lastOutput.map((l) => c.dim(`  | ${clean(l)}`)));
  const [last, ...older] = d.failures;
  if (last) {
    out.push('', c.bold(`Last failure, ${when(last.startedAt)}`), renderTimeline(asResult(d, last), d.phases, color));
    out.push(...(last.output ?? []).map((l) => c.dim(`  | ${clean(l)}`)));
  }
  if (older.length) {
    out.push('', c.bold(`Earlier failures (${older.length} more of the ${d.failures.length} kept, at most ${d.historyLimits.failures})`));
    for (const f of older) out.push(`  ${when(f.startedAt)}  ${c.red(outcome(f))}  ${formatSeconds(f.durationSeconds)}  ${clean(f.message)}`);
  }
  const s = d.summary;
  const quantiles = s.p50Seconds === null ? '' : `; passing runs p50 ${formatSeconds(s.p50Seconds)}, p95 ${formatSeconds(s.p95Seconds!)}`;
  if (d.historyLimits.runs === 0) out.push('', c.dim('History is off (daemon started with --history 0).'));
  else if (d.history.length) {
    out.push('', c.bold(`History (last ${s.runs} runs, ${s.failures} failed${quantiles})`), `  ${bar(d.history, c)}`);
    for (const e of d.history) out.push(historyLine(e, c));
  }
  return out.join('\n');
}

/** Oldest left, as on the status page: `.` a pass, `x` a failure. */
function bar(newestFirst: readonly Entry[], c: ReturnType<typeof pc.createColors>): string {
  return [...newestFirst]
    .reverse()
    .map((e) => (e.success ? c.green('.') : c.red('x')))
    .join('');
}

function historyLine(e: Entry, c: ReturnType<typeof pc.createColors>): string {
  const result = e.success ? c.green('pass') : c.red(outcome(e));
  return `  ${when(e.startedAt)}  ${formatSeconds(e.durationSeconds).padStart(9)}  ${result}${e.message ? `  ${clean(e.message)}` : ''}`;
}

/** A run as served, in the shape renderTimeline reads. */
interface ServedRun {
  startedAt: string;
  durationSeconds: number;
  success: boolean;
  reason: RunResult['reason'];
  phase: string | null;
  phases: Record<string, number>;
  message?: string | null;
  observations?: Record<string, number | string>;
  targets?: RunResult['targets'];
}

function asResult(d: ProbeDetail, e: ServedRun): RunResult {
  return {
    name: d.name,
    kind: d.kind,
    success: e.success,
    aborted: false,
    reason: e.reason,
    phase: e.phase,
    message: e.message === null || e.message === undefined ? null : clean(e.message),
    durationSeconds: e.durationSeconds,
    phases: e.phases,
    startedAt: Date.parse(e.startedAt),
    observations: e.observations ?? {},
    labels: d.labels,
    ...(e.targets ? { targets: e.targets.map((t) => ({ ...t, message: t.message === null ? null : clean(t.message) })) } : {}),
  };
}
