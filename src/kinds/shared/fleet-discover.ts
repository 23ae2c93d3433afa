import { describeError } from '../../core/classify.js';
import { formatDuration } from '../../core/duration.js';
import { ProbeError } from '../../core/errors.js';
import type { ProbeContext } from '../../core/kind.js';
import type { Secret } from '../../core/redact.js';
import { withoutPhases } from './context.js';
import { nextInTurn, sampleOf } from './fleet-pick.js';
import { listFleetDevices, type ApiEndpoint, type ListedDevice } from './platform-api.js';
import type { FleetSelector } from './fleet-selector.js';

/**
 * The `discover` phase of a fleet-target run: the fleet's device list from the platform API,
 * cached for `listTtl` in the probe's state, and the devices this run probes picked from it.
 * A refresh that fails keeps the last good list (its age is exported, so a stale list is seen);
 * with no list at all the run fails here with the API's reason (auth, proxy, connect...).
 */

/** What a fleet-target probe remembers between runs (ProbeContext.state). */
interface FleetMemory {
  list?: ListedDevice[];
  /** When `list` was fetched (ms since the epoch). */
  fetchedAt?: number;
  /** Where round-robin goes on. */
  cursor: number;
}

/** The part of a probe's config discovery reads. */
export interface DiscoverConfig {
  fleet: FleetSelector;
  api?: string;
  token?: Secret;
}

/** With a list in hand, a refresh may take at most this share of what is left of the run. */
const REFRESH_SHARE = 0.25;

function describeQuery(sel: FleetSelector): string {
  const parts = [`fleet ${sel.slug ?? sel.id}`];
  if (sel.deviceType) parts.push(`device type ${sel.deviceType}`);
  const tags = Object.entries(sel.tags);
  if (tags.length) parts.push(`tags ${tags.map(([k, v]) => `${k}=${v}`).join(', ')}`);
  return parts.join(', ');
}

/** The devices this run probes (at least one), from the cached or a fresh list. */
export async function discover(ctx: ProbeContext, cfg: DiscoverConfig): Promise<ListedDevice[]> {
  const sel = cfg.fleet;
  const mem = (ctx.state<{ fleetTargets?: FleetMemory }>(() => ({})).fleetTargets ??= { cursor: 0 });
  const now = Date.now();
  if (mem.list === undefined || mem.fetchedAt === undefined || now - mem.fetchedAt >= sel.listTtl) {
    // With a list to fall back on, a slow API must not eat the run: the devices still get their time.
    const stepMs = mem.list ? Math.max(1, Math.min(sel.apiTimeout, Math.floor(ctx.remainingMs() * REFRESH_SHARE))) : sel.apiTimeout;
    const ep: ApiEndpoint = { url: new URL(cfg.api!), token: (sel.token ?? cfg.token)!, tls: sel.tls, stepTimeoutMs: stepMs };
    const query = { fleet: sel.slug ?? sel.id!, tags: sel.tags, deviceType: sel.deviceType, onlineOnly: sel.onlineOnly };
    try {
      mem.list = await listFleetDevices(withoutPhases(ctx), ep, query, sel.pageSize, sel.maxDevices);
      mem.fetchedAt = Date.now();
    } catch (err) {
      if (mem.list === undefined || mem.fetchedAt === undefined || ctx.signal.aborted) throw err;
      ctx.log.warn(
        { listAgeSeconds: Math.round((now - mem.fetchedAt) / 1000) },
        `could not refresh the device list of ${describeQuery(sel)} (${describeError(err)}): probing from the list of ${formatDuration(Math.max(1000, Math.round((now - mem.fetchedAt) / 1000) * 1000))} ago`,
      );
    }
  }
  ctx.observe('targets_list_age_seconds', (Date.now() - mem.fetchedAt!) / 1000);
  // onlineOnly was asked of the API; a device it marks offline all the same is skipped here too.
  const candidates = sel.onlineOnly ? mem.list.filter((d) => d.online) : mem.list;
  if (candidates.length === 0) {
    throw new ProbeError(
      'assertion',
      `the API lists no ${sel.onlineOnly ? 'online ' : ''}device of ${describeQuery(sel)}: nothing to probe (a fleet-target probe needs at least one)`,
    );
  }
  if (sel.pick === 'random') return sampleOf(candidates, sel.sample);
  const next = nextInTurn(candidates, sel.sample, mem.cursor);
  mem.cursor = next.cursor;
  return next.picked;
}
