import { z } from 'zod';
import { duration, secretRef } from '../config/fields.js';
import { classifyError } from '../core/classify.js';
import { formatDuration } from '../core/duration.js';
import { ProbeError } from '../core/errors.js';
import { defineKind, type ProbeContext } from '../core/kind.js';
import { isReason, type Reason } from '../core/reasons.js';
import type { Secret } from '../core/redact.js';
import { deviceAuthority } from '../net/connect-tunnel.js';
import { listOnlineDevices, readDevice, type ApiDevice, type ApiEndpoint } from './shared/platform-api.js';
import { withoutPhases } from './shared/context.js';
import { inParallel, nameSome } from './shared/batch.js';
import { sampleOf } from './shared/fleet-pick.js';
import { listingFields } from './shared/fleet-selector.js';
import { deviceUuid, fleetSlug } from './shared/device.js';
import { portNumber } from './shared/host-port.js';
import { httpUrl } from './shared/http-expect.js';
import { tlsField, warnIfInsecure } from './shared/tls.js';
import { stepTimeout, tunnelField, tunnelReach, tunnelTlsField, tunnelUser, type Reach } from './shared/tunnel.js';

/**
 * `device-status`: compares what the platform API says about a device (`is_online`) with whether
 * the device can really be reached through the tunnel (the 2025-09-10 incident: devices shown as
 * connected for over an hour after they had disconnected). Reachability comes from a companion
 * probe's latest result or from a quick tunnel check of its own. In fleet sample mode it lists the
 * devices of a fleet the API marks online and checks a random sample of them through the tunnel.
 *
 * Phases: `api` (reading the API), `reachability` (the companion's result or the tunnel checks, and
 * the verdict).
 */

const schema = z.object({
  api: httpUrl.default('https://api.balena-cloud.com'),
  /** An API key: reads the device, and opens the tunnel (the platform accepts it there too). */
  token: secretRef,
  tls: tlsField,
  device: deviceUuid.optional(),
  fleet: fleetSlug.optional(),
  /** A companion probe (e.g. a tunnel probe of the same device) whose latest result says whether the device is reachable. */
  reachability: z.string().min(1).optional(),
  tunnel: tunnelField,
  tunnelTls: tunnelTlsField,
  user: tunnelUser,
  /** A token for the tunnel when it is not the API token. */
  tunnelToken: secretRef.optional(),
  /** The device port the tunnel check opens (22222: every balenaOS device's SSH). */
  port: portNumber.default(22222),
  stepTimeout,
  /** How long the API may say "online" about an unreachable device before it is drift. */
  maxDrift: duration.default(10 * 60_000),
  /** How long the API may say "offline" about a reachable device before it is drift (it may lag a reconnect). */
  offlineGrace: duration.default(2 * 60_000),
  sample: z.number().int().min(1).max(1000).default(10),
  concurrency: z.number().int().min(1).max(64).default(5),
  maxDevices: listingFields.maxDevices,
  pageSize: listingFields.pageSize,
  minReachableRatio: z.number().min(0).max(1).default(0.9),
});
type StatusConfig = z.output<typeof schema>;

/**
 * Only a verdict about the device says it is unreachable: the proxy's "not connected" answer or the
 * device's own port refusing (both `device_offline`). Anything else (the proxy down, our token, a
 * timeout on the way) is about the path: inconclusive, the run fails with the path's own reason and
 * the drift memory is left as it was (issue 13: a stopped proxy read as `status_drift`).
 */
const UNREACHABLE_REASON: Reason = 'device_offline';
/** Reasons of a tunnel check that are about our own path or credentials, never about one device. */
const PATH_REASONS = new Set<Reason>(['dns', 'tls', 'auth', 'denied', 'resources', 'internal']);
/** Unreachable uuids quoted in a failing sample's message. */
const QUOTED_UUIDS = 5;

function elapsed(ms: number): string {
  if (ms < 60_000) return `${(Math.max(0, ms) / 1000).toFixed(1)}s`;
  return formatDuration(Math.round(ms / 1000) * 1000);
}

function endpointOf(cfg: StatusConfig): ApiEndpoint {
  return { url: new URL(cfg.api), token: cfg.token, tls: cfg.tls, stepTimeoutMs: cfg.stepTimeout };
}

/** A tunnel opened to the device and closed at once (see tunnelReach). */
function tunnelCheck(ctx: ProbeContext, cfg: StatusConfig, uuid: string): Promise<Reach> {
  return tunnelReach(ctx, cfg, deviceAuthority(uuid, cfg.port), (cfg.tunnelToken ?? cfg.token) as Secret);
}

/** The companion's latest result, judged for freshness and meaning. */
function companionReach(ctx: ProbeContext, name: string, device: string): Reach {
  const c = ctx.companion?.(name);
  const unknown = `: whether device ${device} is reachable is unknown`;
  if (!c?.last) {
    throw new ProbeError(
      'assertion',
      `companion probe "${name}" has no result yet (this daemon has not run it since it started, or it runs on another shard)${unknown}`,
    );
  }
  const age = Date.now() - c.last.startedAt;
  if (age > 2 * c.intervalMs) {
    throw new ProbeError(
      'assertion',
      `companion probe "${name}" is stale: its last result is ${elapsed(age)} old, older than two of its intervals (2 × ${formatDuration(c.intervalMs)})${unknown}`,
    );
  }
  if (c.last.success) return { reachable: true, detail: `companion probe "${name}" passed ${elapsed(age)} ago`, lastReachableAt: c.last.startedAt };
  const failed = `companion probe "${name}" failed ${elapsed(age)} ago with ${c.last.reason} in ${c.last.phase}: ${c.last.message}`;
  if (c.last.reason === UNREACHABLE_REASON) return { reachable: false, detail: failed, lastReachableAt: c.lastSuccessAt };
  // The companion's own reason (a path failure: connect, proxy, auth, timeout...), never drift.
  const reason = isReason(c.last.reason) && c.last.reason !== 'status_drift' ? c.last.reason : 'assertion';
  throw new ProbeError(reason, `${failed}; ${c.last.reason} is about the path, not the device: inconclusive, drift not judged${unknown}`);
}

/** What a probe remembers between runs: when it last saw the API agree, and when a disagreement began. */
interface DriftMemory {
  agreedAt?: number;
  since?: { apiOnline: boolean; at: number };
}
// Kept by the runner per probe (ctx.state): a restart or a change of the probe forgets it, and a
// drift is then timed from the first run that sees it (a companion's last success still dates an
// unreachable device).

function describeApi(d: ApiDevice): string {
  return `is_online ${d.is_online}, is_connected_to_vpn ${d.is_connected_to_vpn}, api_heartbeat_state ${d.api_heartbeat_state}, last_vpn_event ${d.last_vpn_event}`;
}

/** Compares the API's view with reachability; observes the drift and throws `status_drift` past the limit. */
function judge(ctx: ProbeContext, name: string, cfg: StatusConfig, api: ApiDevice, reach: Reach): void {
  const now = Date.now();
  const mem = ctx.state<DriftMemory>(() => ({}));
  if (api.is_online === reach.reachable) {
    mem.agreedAt = now;
    mem.since = undefined;
    ctx.observe('device_status_drift_seconds', 0);
    return;
  }
  if (mem.since?.apiOnline !== api.is_online) mem.since = { apiOnline: api.is_online, at: now };
  let start = mem.since.at;
  // Unreachable: the disagreement began after the device was last known reachable (a companion's
  // last success) and after the probe last saw the API agree, whichever is later.
  if (api.is_online && (reach.lastReachableAt !== undefined || mem.agreedAt !== undefined)) {
    start = Math.min(now, Math.max(reach.lastReachableAt ?? -Infinity, mem.agreedAt ?? -Infinity));
  }
  const lasted = now - start;
  ctx.observe('device_status_drift_seconds', lasted / 1000);
  const limit = api.is_online ? cfg.maxDrift : cfg.offlineGrace;
  const apiSays = `the API says device ${cfg.device} is ${api.is_online ? 'online' : 'offline'} (${describeApi(api)})`;
  const state = api.is_online ? 'unreachable' : 'reachable';
  const limitName = api.is_online ? 'maxDrift' : 'offlineGrace';
  // At least the limit: `maxDrift: 0s` makes any disagreement drift at once.
  if (lasted >= limit) {
    throw new ProbeError(
      'status_drift',
      `${apiSays} but it has been ${state} for ${elapsed(lasted)}, not less than ${limitName} ${formatDuration(limit)}: ${reach.detail}`,
    );
  }
  // `fleetprobe run` has no earlier run to time the disagreement from and no later one to see it
  // last: passing would hide what the engineer asked about, so it fails and says what the daemon does.
  if (ctx.oneShot) {
    // The verdict and what the daemon does first: the message is cut at 512 characters.
    throw new ProbeError(
      'status_drift',
      `the API says device ${cfg.device} is ${api.is_online ? 'online' : 'offline'} but it is ${state} now. ` +
        `One run cannot tell for how long: the daemon alerts (status_drift) once it lasts ${limitName} ${formatDuration(limit)}. ` +
        `API: ${describeApi(api)}; device: ${reach.detail}`,
    );
  }
  ctx.log.debug(
    { device: cfg.device, apiOnline: api.is_online, reachable: reach.reachable, driftSeconds: lasted / 1000 },
    `${apiSays} but it is ${state}, for ${elapsed(lasted)} so far`,
  );
}

async function runDevice(ctx: ProbeContext, cfg: StatusConfig, name: string): Promise<void> {
  const uuid = cfg.device!.toLowerCase();
  const api = await ctx.phase('api', () => readDevice(withoutPhases(ctx), endpointOf(cfg), uuid));
  ctx.observe('device_api_online', api.is_online ? 1 : 0);
  await ctx.phase('reachability', async () => {
    const reach = cfg.reachability ? companionReach(ctx, cfg.reachability, uuid) : await tunnelCheck(withoutPhases(ctx), cfg, uuid);
    judge(ctx, name, cfg, api, reach);
  });
}

type Checked = { uuid: string; reach: Reach } | { uuid: string; error: unknown };

/** Checks every uuid through the tunnel, at most `concurrency` at once; stops early on a path error. */
async function checkAll(ctx: ProbeContext, cfg: StatusConfig, uuids: string[]): Promise<Checked[]> {
  const out: Checked[] = [];
  const stop = new AbortController();
  const c: ProbeContext = { ...withoutPhases(ctx), signal: AbortSignal.any([ctx.signal, stop.signal]) };
  await inParallel(uuids.length, cfg.concurrency, c.signal, async (i) => {
    const uuid = uuids[i];
    try {
      out.push({ uuid, reach: await tunnelCheck(c, cfg, uuid) });
    } catch (err) {
      if (c.signal.aborted) return;
      out.push({ uuid, error: err });
      // Our token or the proxy's certificate is wrong: every other check would say the same.
      if (PATH_REASONS.has(classifyError(err))) stop.abort(err);
    }
  });
  ctx.signal.throwIfAborted();
  if (stop.signal.aborted) throw stop.signal.reason;
  return out;
}

async function runSample(ctx: ProbeContext, cfg: StatusConfig): Promise<void> {
  const fleet = cfg.fleet!;
  const online = await ctx.phase('api', () => listOnlineDevices(withoutPhases(ctx), endpointOf(cfg), fleet, cfg.pageSize, cfg.maxDevices));
  ctx.observe('device_fleet_online_devices', online.length);
  if (online.length === 0) {
    ctx.observe('device_sample_drifted_devices', 0);
    ctx.log.debug({ fleet }, `the API marks no device of fleet ${fleet} online: nothing to sample`);
    return;
  }
  await ctx.phase('reachability', async () => {
    const checked = await checkAll(ctx, cfg, sampleOf(online, cfg.sample));
    const reachable = checked.filter((x) => 'reach' in x && x.reach.reachable).length;
    const offline = checked.filter((x) => 'reach' in x && !x.reach.reachable).map((x) => x.uuid);
    const failed = checked.filter((x): x is { uuid: string; error: unknown } => 'error' in x);
    // Every check failed on its own (none answered either way): the path is broken, not the devices.
    if (failed.length === checked.length) throw failed[0].error;
    // A failed check (the path, not a verdict about the device) is inconclusive: out of the ratio.
    const conclusive = reachable + offline.length;
    const ratio = reachable / conclusive;
    ctx.observe('device_sample_reachable_ratio', ratio);
    ctx.observe('device_sample_drifted_devices', offline.length);
    const inconclusive = failed.length
      ? `; ${failed.length} inconclusive (${failed
          .slice(0, QUOTED_UUIDS)
          .map((f) => `${f.uuid}: ${classifyError(f.error)}`)
          .join(', ')}${failed.length > QUOTED_UUIDS ? ', ...' : ''})`
      : '';
    if (ratio >= cfg.minReachableRatio) {
      if (failed.length) ctx.log.warn({ fleet, inconclusive: failed.length }, `fleet sample${inconclusive}`);
      return;
    }
    throw new ProbeError(
      'status_drift',
      `${reachable} of ${conclusive} sampled devices of fleet ${fleet} that the API marks online were reachable (${(ratio * 100).toFixed(0)}%, below minReachableRatio ${cfg.minReachableRatio}); not reachable: ${nameSome(offline, QUOTED_UUIDS)}${inconclusive}`,
    );
  });
}

/** Which mode's series a probe has: one device's, or a fleet sample's. */
const sampleMode = (cfg: { fleet?: string }) => cfg.fleet !== undefined;
const deviceMode = (cfg: { fleet?: string }) => cfg.fleet === undefined;

export const deviceStatusKind = defineKind({
  kind: 'device-status',
  description:
    "compares the API's device status (is_online) with reachability through the tunnel (a companion probe or its own check); fleet sample mode checks a random sample of a fleet's online devices",
  phases: ['api', 'reachability'],
  // The API's and the tunnel check's; a companion's own reasons are added per probe.
  reasons: ['tls', 'auth', 'denied', 'proxy', 'protocol', 'assertion', 'status_drift'],
  // An API read and a CONNECT: 50 ms to 1 s; 3 s is the latency objective.
  buckets: [0.05, 0.1, 0.25, 0.5, 1, 3, 5],
  platformFields: ['api', 'token', 'tunnel', 'tunnelTls', 'user'],
  metrics: [
    {
      name: 'fleetprobe_device_api_online',
      type: 'gauge',
      observation: 'device_api_online',
      when: deviceMode,
      help: 'Whether the API said the device is online (is_online) in the last run: 1 or 0.',
    },
    {
      name: 'fleetprobe_device_status_drift_seconds',
      type: 'gauge',
      observation: 'device_status_drift_seconds',
      when: deviceMode,
      help: "How long the API's status and the device's reachability have disagreed (0 when they agree).",
    },
    {
      name: 'fleetprobe_device_fleet_online_devices',
      type: 'gauge',
      observation: 'device_fleet_online_devices',
      when: sampleMode,
      help: 'Fleet sample mode: devices of the fleet the API marks online (at most maxDevices).',
    },
    {
      name: 'fleetprobe_device_sample_reachable_ratio',
      type: 'gauge',
      observation: 'device_sample_reachable_ratio',
      when: sampleMode,
      help: 'Fleet sample mode: share of the sampled online devices that were reachable through the tunnel.',
    },
    {
      name: 'fleetprobe_device_sample_drifted_devices',
      type: 'gauge',
      observation: 'device_sample_drifted_devices',
      when: sampleMode,
      help: 'Fleet sample mode: sampled devices the API marks online that the tunnel proxy says are not connected.',
    },
  ],
  schema,
  check(cfg) {
    const problems: { field: string; message: string }[] = [];
    if (!cfg.device && !cfg.fleet) problems.push({ field: 'device', message: 'is required (or `fleet: <org>/<fleet>` for sample mode)' });
    if (cfg.device && cfg.fleet) problems.push({ field: 'fleet', message: 'set either device or fleet (sample mode), not both' });
    if (cfg.fleet && cfg.reachability)
      problems.push({ field: 'reachability', message: 'sample mode checks its devices itself: a companion probe is for one device' });
    return problems;
  },
  companions: (cfg) => (cfg.reachability ? [{ field: 'reachability', probe: cfg.reachability }] : []),
  async run(ctx, cfg, spec) {
    if (cfg.fleet) await runSample(ctx, cfg);
    else await runDevice(ctx, cfg, spec.name);
    warnIfInsecure(ctx, cfg.tls, ' of the API', 'tls.insecureSkipVerify');
  },
});
