import { classifyError, describeError } from '../../core/classify.js';
import { ProbeError } from '../../core/errors.js';
import type { ProbeContext } from '../../core/kind.js';
import { CERT_EXPIRY } from '../../core/observations.js';
import type { Reason } from '../../core/reasons.js';
import type { TargetResult } from '../../core/result.js';
import { inParallel, mostCommon, nameSome } from './batch.js';

/**
 * The devices of a fleet-target run, probed at most `concurrency` at once inside the run's one
 * deadline (every device's steps share the run's signal and deadline: the timeout is the run's, not
 * one per device), and the verdict over them: a pass when at least `minSuccess` of them passed,
 * else the most common reason among the failed, with a message naming them (bounded).
 */

/** Failed devices named in a failing run's message; the rest are counted. */
const QUOTED_DEVICES = 5;

/**
 * One device's run: the kind's own run on a context of its own. Its phases are not the run's (they
 * overlap with the other devices'): the last one entered is kept for its result; its signal ends
 * with it, so whatever it left open closes; its observations are the kind's per-target values and
 * are dropped, except a certificate's expiry (the earliest is kept).
 */
async function probeOne(ctx: ProbeContext, device: string, run: (sub: ProbeContext) => Promise<void>): Promise<TargetResult> {
  const done = new AbortController();
  const signal = AbortSignal.any([ctx.signal, done.signal]);
  let last: string | null = null;
  const log = ctx.log.child({ device });
  const sub: ProbeContext = {
    ...ctx,
    signal,
    log,
    async phase(name, fn) {
      signal.throwIfAborted();
      last = name;
      return await fn();
    },
    observe(key, value) {
      if (key !== CERT_EXPIRY || typeof value !== 'number') return;
      ctx.observe(key, value);
    },
    progress: (line, opts) => ctx.progress(`${device}: ${line}`, opts),
    // A device's run keeps nothing between runs (the probe's memory is the fleet list's).
    state: (init) => init(),
    reportTargets: undefined,
  };
  const t0 = performance.now();
  try {
    await run(sub);
    return { device, success: true, reason: null, phase: null, message: null, durationSeconds: (performance.now() - t0) / 1000 };
  } catch (err) {
    // The run itself is over (deadline, shutdown): not this device's failure.
    if (ctx.signal.aborted) throw ctx.signal.reason;
    const reason = classifyError(err);
    if (reason === 'internal') log.error({ err }, 'probe kind threw an unclassified error (a bug in fleetprobe)');
    return { device, success: false, reason, phase: last, message: describeError(err), durationSeconds: (performance.now() - t0) / 1000 };
  } finally {
    done.abort();
  }
}

/** Runs every device, `concurrency` at once; results in the order of `devices`, reported as each ends. */
export async function fanOut(
  ctx: ProbeContext,
  devices: readonly string[],
  concurrency: number,
  run: (sub: ProbeContext, device: string) => Promise<void>,
): Promise<TargetResult[]> {
  const results: (TargetResult | undefined)[] = devices.map(() => undefined);
  await inParallel(devices.length, concurrency, ctx.signal, async (i) => {
    results[i] = await probeOne(ctx, devices[i], (sub) => run(sub, devices[i]));
    ctx.reportTargets?.(results.filter((r): r is TargetResult => r !== undefined));
  });
  ctx.signal.throwIfAborted();
  return results as TargetResult[];
}

/** The verdict over a run's devices: returns on a pass, throws the run's failure otherwise. */
export function judgeTargets(results: readonly TargetResult[], minSuccess: number, what: string): void {
  const failed = results.filter((r) => !r.success);
  const passed = results.length - failed.length;
  const ratio = passed / results.length;
  if (ratio >= minSuccess) return;
  const reason: Reason = mostCommon(failed.map((f) => f.reason!));
  const first = failed.find((f) => f.reason === reason)!;
  const named = nameSome(
    failed.map((f) => `${f.device} ${f.reason}${f.phase ? ` in ${f.phase}` : ''}`),
    QUOTED_DEVICES,
  );
  throw new ProbeError(
    reason,
    `${failed.length} of ${results.length} devices of ${what} failed (${passed} passed, ${(ratio * 100).toFixed(0)}% < minSuccess ${minSuccess}): ` +
      `${named}; ${first.device}: ${first.message ?? reason}`,
  );
}
