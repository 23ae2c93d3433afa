import type { ProbeContext } from '../../core/kind.js';

/**
 * `ctx` whose phase() just runs its function: for steps whose time belongs to the caller's own
 * phase (a dialer's `resolve`/`connect`/`tls` would otherwise cut it up), or to no phase at all
 * (a held connection's keepalives).
 */
export function withoutPhases(ctx: ProbeContext): ProbeContext {
  return { ...ctx, phase: async (_name, fn) => fn() };
}
