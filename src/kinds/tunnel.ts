import { defineKind } from '../core/kind.js';
import { runSessions, sessionMetrics } from './shared/sessions.js';
import { warnIfInsecure } from './shared/tls.js';
import { withFleetTargets } from './shared/fleet-targets.js';
import { checkConfig, PHASES, schema } from './tunnel-config.js';
import { holdTunnel } from './tunnel-hold.js';
import { openAndCheck } from './tunnel-session.js';

/**
 * `tunnel`: a port tunnel through the platform's CONNECT proxy (docs/protocols.md "CONNECT tunnel"),
 * through the real authorization path, then a check of what answers at the far end: the device's
 * first line (`expect.banner`), `send`/`expect` steps, or an HTTP request. With `hold` the daemon
 * keeps the tunnel open and counts its interruptions instead of opening one per run. With
 * `sessions: N` a run opens N tunnels at once, in lockstep (shared/sessions.ts, as the ssh kind).
 */

// Files: tunnel-config.ts (fields), tunnel-session.ts (one tunnel and its checks),
// tunnel-stream-reader.ts (what the device sends, in a bounded window), tunnel-hold.ts (hold).

/** The held-tunnel series are only a held probe's. */
const held = (cfg: { hold?: unknown }) => cfg.hold !== undefined;

const tunnelKindOne = defineKind({
  kind: 'tunnel',
  description:
    "a port tunnel through the platform's CONNECT proxy to a device port, checked end to end (banner, send/expect, HTTP, an SSH session), optionally held open",
  phases: PHASES,
  // hostkey and auth also from an `ssh:` check through the tunnel.
  reasons: ['tls', 'auth', 'denied', 'device_offline', 'proxy', 'protocol', 'assertion', 'hostkey'],
  // A tunnel and its check take 0.1 s to a few s; 5 s is the latency objective, 10 s above it.
  buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10],
  platformFields: ['tunnel', 'tunnelTls', 'user', 'token'],
  metrics: [
    {
      name: 'fleetprobe_tunnel_interruptions_total',
      type: 'counter',
      observation: 'tunnel_interruptions',
      when: held,
      help: 'Held tunnels that broke after they were up (reset, closed, or keepalive stalled or wrong).',
    },
    {
      name: 'fleetprobe_tunnel_held_seconds',
      type: 'gauge',
      observation: 'tunnel_held_seconds',
      when: held,
      help: 'How long the current held tunnel has been up, as of its last keepalive (0 while down).',
    },
    {
      name: 'fleetprobe_tunnel_last_interruption_seconds',
      type: 'gauge',
      observation: 'tunnel_last_interruption_seconds',
      when: held,
      help: 'How long the last interruption of a held tunnel lasted, from the break to the next working tunnel.',
    },
    {
      name: 'fleetprobe_tunnel_down_seconds_total',
      type: 'counter',
      observation: 'tunnel_down_seconds',
      when: held,
      help: 'Total time held tunnels spent interrupted (added when each interruption ends).',
    },
    ...sessionMetrics('tunnel', 'tunnel sessions'),
  ],
  schema,
  check: checkConfig,
  async run(ctx, cfg) {
    await runSessions(ctx, 'tunnel', cfg, async (sub) => (await openAndCheck(sub, cfg))?.close());
    warnIfInsecure(ctx, cfg.tunnelTls, ' of the tunnel proxy', 'tunnelTls.insecureSkipVerify');
  },
  holds: (cfg) => cfg.hold !== undefined,
  async hold(h, cfg, spec) {
    await holdTunnel(h, cfg, spec.intervalMs ?? 60_000);
  },
});

/** With `fleet:` (shared/fleet-targets.ts), a tunnel to each picked device's port. */
export const tunnelKind = withFleetTargets(tunnelKindOne, {
  targetField: 'device',
  forDevice: (cfg, uuid) => ({ ...cfg, device: uuid }),
  check: (cfg) => [
    ...(cfg.target ? [{ field: 'target', message: 'a fleet probe reaches each device as <uuid>.<targetSuffix>:<port>, not a literal target' }] : []),
    ...(cfg.hold !== undefined ? [{ field: 'hold', message: 'a fleet probe picks its devices anew each run: it cannot hold one tunnel open' }] : []),
  ],
});
