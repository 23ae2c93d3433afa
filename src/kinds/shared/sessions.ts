import { z } from 'zod';
import { duration } from '../../config/fields.js';
import { formatDuration, formatSeconds } from '../../core/duration.js';
import { ProbeError } from '../../core/errors.js';
import type { KindMetric, ProbeContext } from '../../core/kind.js';
import { REASONS, type Reason } from '../../core/reasons.js';
import { mostCommon, quantile } from './batch.js';
import { runLockstep, type SessionOutcome } from './lockstep.js';

/**
 * The concurrency mode a kind can offer (`ssh`, `tunnel`): `sessions: N` runs N sessions of the
 * probe at once in lockstep (lockstep.ts), `minSuccessRatio` is the share that must pass, and
 * `maxLatency` bounds a percentile of the sessions' time in a phase, or in all of them, so a path
 * that queues instead of refusing fails as `timeout` with the measured percentile. The kind gives
 * its fields, its three series and one session; the verdict is the same for every kind.
 *
 *   schema: z.object({ ..., ...sessionFields(['resolve', 'connect', 'proxy_connect']) })
 *   metrics: sessionMetrics('tunnel', 'tunnel sessions')
 *   run: (ctx, cfg) => runSessions(ctx, 'tunnel', cfg, (sub) => oneSession(sub, cfg))
 */

/** The kinds with a sessions mode: each has its series' observation keys in core/observations.ts. */
export type SessionsKind = 'ssh' | 'tunnel';

// Percentiles, not a `quantile` label: Prometheus reserves that for summaries (promtool rejects it).
const PERCENTILES = ['50', '90', '99', '100'] as const;
/** maxLatency's key for a whole session, from its first phase to the end of its last. */
export const TOTAL = 'total';

function observationsOf(kind: SessionsKind) {
  return { ratio: `${kind}_sessions_success_ratio`, latency: `${kind}_session_latency_seconds`, failures: `${kind}_session_failures` } as const;
}

/** The kind's series of its sessions: `what` names them in the help text ("SSH sessions"). */
export function sessionMetrics(kind: SessionsKind, what: string): KindMetric[] {
  const obs = observationsOf(kind);
  // The session series are a batch's (`sessions: N`): one session is probe_success and
  // probe_duration_seconds already.
  const batch = (cfg: { sessions?: number }) => (cfg.sessions ?? 1) > 1;
  return [
    {
      name: `probe_${kind}_sessions_success_ratio`,
      help: `Share of the ${what} of the last run that passed (sessions: N opens N at once).`,
      type: 'gauge',
      observation: obs.ratio,
      when: batch,
    },
    {
      name: `probe_${kind}_session_latency_seconds`,
      help: `Percentiles of the durations of the passed ${what} of the last run, in seconds (100 = the slowest).`,
      type: 'gauge',
      observation: obs.latency,
      label: { name: 'percentile', values: PERCENTILES },
      when: batch,
    },
    {
      name: `probe_${kind}_session_failures_total`,
      help: `Failed ${what} by failure reason (each session of a batch counts).`,
      type: 'counter',
      observation: obs.failures,
      label: { name: 'reason', values: REASONS },
      declaredReasonsOnly: true,
      when: batch,
    },
  ];
}

const bound = duration.refine((ms) => ms > 0, 'must be more than 0');

/**
 * `maxLatency`: a bound per phase of `phases` and for the whole session (`total`), and the
 * percentile of the sessions' times compared with them (default 95; with one session, its time).
 */
function maxLatencyField<const P extends string>(phases: readonly P[]) {
  const bounds = Object.fromEntries([...phases, TOTAL].map((p) => [p, bound.optional()])) as Record<P | typeof TOTAL, z.ZodOptional<typeof bound>>;
  const known = new Set<string>([...phases, TOTAL, 'percentile']);
  return z
    .object({ ...bounds, percentile: z.number().gt(0).max(100).default(95) })
    .catchall(z.unknown())
    .superRefine((v, ctx) => {
      // An unknown key is most often another kind's phase or a typo: say which this kind has.
      for (const key of Object.keys(v).filter((k) => !known.has(k)))
        ctx.addIssue({ code: 'custom', path: [key], message: `is not a phase maxLatency can bound here: use ${phases.join(', ')} or \`${TOTAL}\`` });
    })
    .transform((v) => Object.fromEntries(Object.entries(v).filter(([k]) => known.has(k))) as { [K in P | typeof TOTAL]?: number } & { percentile: number });
}

/** The fields of the mode, to spread into a kind's schema. */
export function sessionFields<const P extends string>(phases: readonly P[]) {
  return {
    sessions: z.number().int().min(1).max(256).default(1),
    minSuccessRatio: z.number().min(0).max(1).default(1),
    maxLatency: maxLatencyField(phases).optional(),
  };
}

export interface SessionsConfig {
  sessions: number;
  minSuccessRatio: number;
  maxLatency?: { percentile: number } & { [phase: string]: number | undefined };
}

/** Load-time problems of the mode's fields. */
export function sessionProblems(cfg: SessionsConfig): { field: string; message: string }[] {
  const given = Object.keys(cfg.maxLatency ?? {}).filter((k) => k !== 'percentile' && cfg.maxLatency![k] !== undefined);
  if (cfg.maxLatency && !given.length) return [{ field: 'maxLatency', message: `names no bound: give a phase or \`${TOTAL}\` with a duration` }];
  return [];
}

/**
 * Runs the probe's sessions (one, or `sessions` in lockstep), feeds the kind's series and fails the
 * run: one session's failure as it is; a batch below `minSuccessRatio` with its most common reason,
 * in the phase where it struck most; a latency bound broken as `timeout` in that phase.
 */
export async function runSessions<P extends string>(
  ctx: ProbeContext<P>,
  kind: SessionsKind,
  cfg: SessionsConfig,
  session: (ctx: ProbeContext) => Promise<void>,
): Promise<void> {
  const obs = observationsOf(kind);
  const outcomes = await runLockstep(ctx, cfg.sessions, session);
  const passed = outcomes.filter((o) => o.ok);
  const failed = outcomes.filter((o) => !o.ok);
  const ratio = passed.length / outcomes.length;
  ctx.observe(obs.ratio, ratio);
  if (passed.length || outcomes.length > 1)
    for (const p of PERCENTILES)
      ctx.observe(
        `${obs.latency}.${p}`,
        quantile(
          passed.map((o) => o.seconds),
          Number(p) / 100,
        ),
      );
  const byReason = new Map<Reason, number>();
  for (const o of failed) byReason.set(o.reason!, (byReason.get(o.reason!) ?? 0) + 1);
  for (const [reason, count] of byReason) ctx.observe(`${obs.failures}.${reason}`, count);
  // One session fails as a single run does: its own error, in the phase it was in (the last entered).
  if (outcomes.length === 1 && failed.length) throw failed[0].error;

  const slow = latencyBreaches(outcomes, cfg.maxLatency);
  let verdict: { phase: string; error: ProbeError } | undefined;
  if (ratio < cfg.minSuccessRatio) verdict = batchFailure(outcomes, byReason, cfg.minSuccessRatio, slow);
  else if (slow.length) verdict = { phase: slow[0].phase, error: new ProbeError('timeout', slow.map((b) => b.text).join('; ')) };
  if (!verdict) return;
  const { phase, error } = verdict;
  // One of this kind's own phases: each session ran in it.
  await ctx.phase(phase as P, () => {
    throw error;
  });
}

/** A batch below its success ratio: its most common reason, in the phase where that reason struck most. */
function batchFailure(
  outcomes: SessionOutcome[],
  byReason: Map<Reason, number>,
  minSuccessRatio: number,
  slow: LatencyBreach[],
): { phase: string; error: ProbeError } {
  const failed = outcomes.filter((o) => !o.ok);
  const ratio = (outcomes.length - failed.length) / outcomes.length;
  const reason = mostCommon(failed.map((o) => o.reason!));
  const same = failed.filter((o) => o.reason === reason);
  const phase = mostCommon(same.map((o) => o.phase ?? 'connect'));
  const summary = [...byReason].map(([r, n]) => `${r} x${n}`).join(', ');
  const also = slow.length ? `; ${slow.map((b) => b.text).join('; ')}` : '';
  const message = `${failed.length} of ${outcomes.length} sessions failed (success ratio ${ratio.toFixed(2)} < ${minSuccessRatio}; ${summary})${also}; first: ${same[0].message}`;
  return { phase, error: new ProbeError(reason, message, { cause: same[0].error }) };
}

interface LatencyBreach {
  /** The phase the run fails in: the bounded one, or for `total` the one the sessions spent most in. */
  phase: string;
  text: string;
}

/**
 * Every bound of maxLatency the sessions broke, in the order given. A phase's percentile is over
 * the sessions that entered it (one that timed out there counts with the time it waited); `total`'s
 * over the sessions that passed.
 */
function latencyBreaches(outcomes: SessionOutcome[], maxLatency: SessionsConfig['maxLatency']): LatencyBreach[] {
  if (!maxLatency) return [];
  const pct = maxLatency.percentile;
  const out: LatencyBreach[] = [];
  for (const [key, limitMs] of Object.entries(maxLatency)) {
    if (key === 'percentile' || limitMs === undefined) continue;
    const times = key === TOTAL ? outcomes.filter((o) => o.ok).map((o) => o.seconds) : outcomes.filter((o) => key in o.phases).map((o) => o.phases[key]);
    if (!times.length) continue;
    const value = quantile(times, pct / 100);
    if (value * 1000 <= limitMs) continue;
    const measured = times.length === 1 ? formatSeconds(value) : `p${pct} ${formatSeconds(value)}`;
    const of =
      times.length === 1 ? '' : ` (${times.length} sessions: p50 ${formatSeconds(quantile(times, 0.5))}, slowest ${formatSeconds(quantile(times, 1))})`;
    out.push({ phase: key === TOTAL ? busiestPhase(outcomes) : key, text: `${key} ${measured} > maxLatency ${formatDuration(limitMs)}${of}` });
  }
  return out;
}

/** The phase the passed sessions spent most time in together. */
function busiestPhase(outcomes: SessionOutcome[]): string {
  const sums = new Map<string, number>();
  for (const o of outcomes) if (o.ok) for (const [p, s] of Object.entries(o.phases)) sums.set(p, (sums.get(p) ?? 0) + s);
  return [...sums].sort((a, b) => b[1] - a[1])[0][0];
}
