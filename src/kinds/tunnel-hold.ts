import { setTimeout as sleep } from 'node:timers/promises';
import { ProbeError } from '../core/errors.js';
import type { HoldContext, ProbeContext } from '../core/kind.js';
import { withoutPhases } from './shared/context.js';
import type { TunnelConfig } from './tunnel-config.js';
import { exchange, openAndCheck, type Session } from './tunnel-session.js';

/**
 * `hold`: the daemon keeps one tunnel open, repeats the keepalive checks on it every interval,
 * reopens it after `hold`, and counts its interruptions (with backoff between reconnects).
 *
 * Pacing (issue 13): successive opens are never closer than the interval, and a hold that ends
 * within HOLD_GRACE_MS of opening is one failure ("closed right after it opened"), not an
 * interruption, and grows the backoff like a failed open. Without this, a device whose app closes
 * after each answer (HTTP/1.0) made every open succeed, reset the backoff and reconnect twice a
 * second: the prober's own thundering herd.
 */

// Reconnect delays of a held tunnel: exponential from 0.5 s to 30 s, each a random point in the
// upper half of its step ("equal jitter"). Probers cut together by a deploy then come back spread
// out instead of as a herd (the 2024-11-19 incident was a thundering herd of reconnecting tunnels).
// Worked example: after the 3rd failed attempt in a row the wait is 2-4 s; from the 7th on, 15-30 s.
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 30_000;
function backoffMs(failures: number, random: () => number = Math.random): number {
  const step = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.min(failures, 16));
  return Math.round(step / 2 + random() * (step / 2));
}

/** A hold shorter than this was never really held: the device closed the tunnel on opening. */
export const HOLD_GRACE_MS = 150;

async function pause(ms: number, signal: AbortSignal): Promise<void> {
  await sleep(ms, undefined, { signal }).catch(() => undefined);
}

type HoldEnd = { kind: 'stopped' } | { kind: 'rotated' } | { kind: 'interrupted'; err: unknown };

/** Keeps an open session alive with the repeatable checks every `intervalMs` until it ends. */
async function keepAlive(h: HoldContext, ctx: ProbeContext, s: Session, cfg: TunnelConfig, intervalMs: number, upSince: number): Promise<HoldEnd> {
  const holdUntil = upSince + cfg.hold!;
  let ended: Error | undefined;
  void s.ended.then((e) => (ended = e));
  const wake = new AbortController();
  void s.ended.then(() => wake.abort());
  const stop = AbortSignal.any([h.signal, wake.signal]);
  for (;;) {
    const wait = Math.min(intervalMs, holdUntil - Date.now());
    if (wait > 0) await pause(wait, stop);
    if (h.signal.aborted) return { kind: 'stopped' };
    if (ended) return { kind: 'interrupted', err: ended };
    if (Date.now() >= holdUntil) return { kind: 'rotated' };
    try {
      await exchange(ctx, s, cfg);
    } catch (err) {
      if (h.signal.aborted) return { kind: 'stopped' };
      return { kind: 'interrupted', err: ended ?? err };
    }
    h.observe({ tunnel_held_seconds: (Date.now() - upSince) / 1000 });
    h.checked();
  }
}

export async function holdTunnel(h: HoldContext, cfg: TunnelConfig, intervalMs: number): Promise<void> {
  // Failed opens and short-lived holds in a row; a hold past the grace period resets it.
  let failures = 0;
  // Set while an interruption lasts: from the break to the next working tunnel.
  let downSince: number | undefined;
  let lastOpenAt = -Infinity;
  // Waits for the backoff of `failures` and at least until one interval after the last open.
  const paced = async (backoff: number) => pause(Math.max(backoff, lastOpenAt + intervalMs - Date.now()), h.signal);
  while (!h.signal.aborted) {
    lastOpenAt = Date.now();
    let keepCtx: ProbeContext | undefined;
    const session = await h.attempt(async (ctx) => {
      // The tunnel must outlive this attempt: tie it to the hold, and to the attempt only until it passes.
      const life = new AbortController();
      const onHold = () => life.abort(h.signal.reason);
      const onAttempt = () => life.abort(ctx.signal.reason);
      h.signal.addEventListener('abort', onHold, { once: true });
      ctx.signal.addEventListener('abort', onAttempt, { once: true });
      try {
        const s = (await openAndCheck({ ...ctx, signal: life.signal }, cfg))!;
        ctx.signal.throwIfAborted();
        void s.ended.then(() => h.signal.removeEventListener('abort', onHold));
        keepCtx = { ...withoutPhases(ctx), signal: life.signal, deadline: Infinity, remainingMs: () => Infinity };
        ctx.observe('tunnel_held_seconds', 0);
        return s;
      } catch (err) {
        life.abort(err);
        h.signal.removeEventListener('abort', onHold);
        throw err;
      } finally {
        ctx.signal.removeEventListener('abort', onAttempt);
      }
    });
    if (!session || !keepCtx) {
      await paced(backoffMs(failures++));
      continue;
    }
    const upSince = Date.now();
    if (downSince !== undefined) {
      const seconds = (upSince - downSince) / 1000;
      h.observe({ tunnel_last_interruption_seconds: seconds, tunnel_down_seconds: seconds });
      h.log.info({ downSeconds: seconds }, `tunnel back after an interruption of ${seconds.toFixed(1)}s`);
      downSince = undefined;
    }
    const end = await keepAlive(h, keepCtx, session, cfg, intervalMs, upSince);
    session.close();
    const heldMs = Date.now() - upSince;
    if (end.kind === 'stopped') break;
    if (heldMs >= HOLD_GRACE_MS) failures = 0;
    if (end.kind === 'rotated') {
      await paced(0);
      continue;
    }
    const heldSeconds = heldMs / 1000;
    if (heldMs < HOLD_GRACE_MS) {
      const err = new ProbeError('connect', `the device closed the tunnel right after it opened (after ${heldSeconds.toFixed(1)}s)`, { cause: end.err });
      h.interrupted(err, { phase: 'hold', durationSeconds: heldSeconds, observations: { tunnel_held_seconds: 0 } });
      await paced(backoffMs(failures++));
      continue;
    }
    downSince = Date.now();
    const err = new Error(`the tunnel was interrupted after being held ${heldSeconds.toFixed(1)}s`, { cause: end.err });
    h.interrupted(err, { phase: 'hold', durationSeconds: heldSeconds, observations: { tunnel_interruptions: 1, tunnel_held_seconds: 0 } });
    await paced(backoffMs(failures++));
  }
}
