import { classifyError, describeError } from '../../core/classify.js';
import { ProbeError } from '../../core/errors.js';
import type { ProbeContext } from '../../core/kind.js';
import type { Reason } from '../../core/reasons.js';

/**
 * N sessions of one probe at once, in lockstep: every session does phase k at the same time, and
 * phase k+1 starts when every session still alive has finished phase k. So the sessions really
 * overlap (N handshakes at once, N execs at once: the load that showed the 2025-09-10 problem), the
 * run's phases stay one after another as runProbe expects, and each phase's duration is that of
 * the slowest session in it. A session that fails leaves the batch; the others go on.
 *
 * Used by every kind with a `sessions: N` mode (sessions.ts); a kind's session is a function of a
 * ProbeContext that calls ctx.phase as a single run would.
 */

/** Kept back from the run's deadline in a batch, so the batch's verdict is given (not a bare run timeout). */
export const BATCH_VERDICT_MARGIN_MS = 200;

export interface SessionOutcome {
  ok: boolean;
  /** Seconds spent in the session's own phases (not waiting for the others). */
  seconds: number;
  /** The same, phase by phase (only the phases the session entered). */
  phases: Record<string, number>;
  reason?: Reason;
  phase?: string;
  message?: string;
  error?: unknown;
}

interface Step {
  name: string;
  arrived: number;
  finished: number;
  opened: boolean;
  closed: boolean;
  open: Promise<void>;
  release(): void;
  allFinished(): void;
  /** Settles when this step's ctx.phase has returned, so the next one never overlaps it. */
  done: Promise<void>;
}

/**
 * Runs `n` sessions in lockstep. With n > 1 the sessions end BATCH_VERDICT_MARGIN_MS before the
 * run's deadline, with a `timeout` of their own, so the outcomes still come back to be judged.
 */
// long: one barrier: the steps, the settle rule and the session wrapper share its state.
export async function runLockstep(ctx: ProbeContext, n: number, session: (ctx: ProbeContext, index: number) => Promise<void>): Promise<SessionOutcome[]> {
  const steps: Step[] = [];
  const batch = n > 1 ? batchDeadline(ctx) : undefined;
  const signal = batch ? AbortSignal.any([ctx.signal, batch.signal]) : ctx.signal;
  const deadline = batch?.deadline ?? ctx.deadline;
  // How many phase calls each session made before it ended (Infinity while it runs).
  const endedAfter: number[] = Array.from({ length: n }, () => Infinity);

  const step = (k: number, name: string): Step => {
    if (steps[k]) return steps[k];
    let release!: () => void;
    let allFinished!: () => void;
    const open = new Promise<void>((r) => (release = r));
    const finished = new Promise<void>((r) => (allFinished = r));
    const prev = k > 0 ? (steps[k - 1]?.done ?? Promise.resolve()) : Promise.resolve();
    const s: Step = { name, arrived: 0, finished: 0, opened: false, closed: false, open, release, allFinished, done: Promise.resolve() };
    s.done = open
      .then(() => prev)
      .then(() => ctx.phase(name, () => finished))
      .catch(() => undefined);
    steps[k] = s;
    return s;
  };
  // Everyone who will ever take step k has arrived: those still running are all there.
  const settle = () => {
    steps.forEach((s, k) => {
      const departed = endedAfter.filter((c) => c <= k).length;
      if (!s.opened && s.arrived + departed >= n) {
        s.opened = true;
        s.release();
      }
      if (s.opened && !s.closed && s.finished === s.arrived) {
        s.closed = true;
        s.allFinished();
      }
    });
  };

  const outcomes = await Promise.all(
    Array.from({ length: n }, async (_, i): Promise<SessionOutcome> => {
      let calls = 0;
      let seconds = 0;
      const phases: Record<string, number> = {};
      let last: string | undefined;
      const sub: ProbeContext = {
        ...ctx,
        signal,
        deadline,
        remainingMs: () => Math.max(0, deadline - Date.now()),
        async phase<T>(name: string, fn: () => Promise<T> | T): Promise<T> {
          const s = step(calls++, name);
          s.arrived++;
          last = name;
          settle();
          await s.open;
          await steps[calls - 2]?.done;
          signal.throwIfAborted();
          const t0 = performance.now();
          try {
            return await fn();
          } finally {
            const took = (performance.now() - t0) / 1000;
            seconds += took;
            phases[name] = (phases[name] ?? 0) + took;
            s.finished++;
            settle();
          }
        },
      };
      try {
        await session(sub, i);
        return { ok: true, seconds, phases };
      } catch (err) {
        return { ok: false, seconds, phases, reason: classifyError(err), phase: last, message: describeError(err), error: err };
      } finally {
        endedAfter[i] = calls;
        settle();
      }
    }),
  );
  await Promise.all(steps.map((s) => s.done));
  batch?.done();
  return outcomes;
}

/** Aborts just inside the run's deadline with a `timeout` that says so. */
function batchDeadline(ctx: ProbeContext): { signal: AbortSignal; deadline: number; done(): void } {
  const ms = Math.max(1, ctx.remainingMs() - BATCH_VERDICT_MARGIN_MS);
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new ProbeError('timeout', `the session did not finish within the run's timeout (${ms}ms left for it)`)), ms);
  timer.unref?.();
  return { signal: controller.signal, deadline: Date.now() + ms, done: () => clearTimeout(timer) };
}
