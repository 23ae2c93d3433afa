import { classifyError, describeError } from '../core/classify.js';
import type { ProbeContext } from '../core/kind.js';
import type { Reason } from '../core/reasons.js';

/**
 * N sessions of one probe at once, in lockstep: every session does phase k at the same time, and
 * phase k+1 starts when every session still alive has finished phase k. So the sessions really
 * overlap (N handshakes at once, N execs at once: the load that showed the 2025-09-10 problem), the
 * run's phases stay one after another as runProbe expects, and each phase's duration is that of
 * the slowest session in it. A session that fails leaves the batch; the others go on.
 */

export interface SessionOutcome {
  ok: boolean;
  /** Seconds spent in the session's own phases (not waiting for the others). */
  seconds: number;
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

export async function runLockstep(ctx: ProbeContext, n: number, session: (ctx: ProbeContext, index: number) => Promise<void>): Promise<SessionOutcome[]> {
  const steps: Step[] = [];
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
      let last: string | undefined;
      const sub: ProbeContext = {
        ...ctx,
        async phase<T>(name: string, fn: () => Promise<T> | T): Promise<T> {
          const s = step(calls++, name);
          s.arrived++;
          last = name;
          settle();
          await s.open;
          await steps[calls - 2]?.done;
          ctx.signal.throwIfAborted();
          const t0 = performance.now();
          try {
            return await fn();
          } finally {
            seconds += (performance.now() - t0) / 1000;
            s.finished++;
            settle();
          }
        },
      };
      try {
        await session(sub, i);
        return { ok: true, seconds };
      } catch (err) {
        return { ok: false, seconds, reason: classifyError(err), phase: last, message: describeError(err), error: err };
      } finally {
        endedAfter[i] = calls;
        settle();
      }
    }),
  );
  await Promise.all(steps.map((s) => s.done));
  return outcomes;
}

/** The q-quantile (0..1) of values, nearest rank; 0 for none. */
export function quantile(values: number[], q: number): number {
  if (!values.length) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}
