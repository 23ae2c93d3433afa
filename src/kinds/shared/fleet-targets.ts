import { type z } from 'zod';
import { secretRef } from '../../config/fields.js';
import type { KindMetric, ProbeContext, ProbeKind, ProbeSpec } from '../../core/kind.js';
import type { Secret } from '../../core/redact.js';
import type { Reason } from '../../core/reasons.js';
import { discover } from './fleet-discover.js';
import { fanOut, judgeTargets } from './fleet-fanout.js';
import { fleetSelectorField, minSuccessOf, selectorProblems, type FleetSelector } from './fleet-selector.js';
import { httpUrl } from './http-expect.js';

/**
 * Fleet targets: an ssh, tunnel or http probe that names, instead of one device, a `fleet:` whose
 * devices it probes a sample of each run (issue 15: one canary's own trouble is never a platform
 * page, and a fault that hits only some devices is seen). `withFleetTargets` wraps the kind: it adds
 * the `fleet` field (and `api`/`token` to list the devices, usually from the platform block) and
 * the `discover` and `targets` phases; a probe without `fleet` runs the kind as before. A fleet run
 * is discovery (fleet-discover.ts), the kind's own run once per picked device on a context of its
 * own (fleet-fanout.ts), and the verdict over them. Only bounded series: how many devices were
 * probed and failed, and how old the device list is; never a label per device.
 */

/** The phases a fleet run adds: listing the devices, then probing them (their own phases overlap). */
export const FLEET_PHASES = ['discover', 'targets'] as const;
type FleetPhase = (typeof FLEET_PHASES)[number];

/** What discovery can fail with (the API's answer) beyond the shared reasons; a device's own reasons are its kind's. */
const DISCOVER_REASONS: readonly Reason[] = ['auth', 'proxy', 'protocol', 'assertion'];

/** The fleet series are only a fleet probe's. */
const isFleet = (cfg: { fleet?: unknown }) => cfg.fleet !== undefined;

export const FLEET_METRICS: readonly KindMetric[] = [
  {
    name: 'probe_targets',
    type: 'gauge',
    observation: 'targets',
    when: isFleet,
    help: 'Fleet targets: devices probed in the last run (absent for a probe of one device).',
  },
  {
    name: 'probe_targets_failed',
    type: 'gauge',
    observation: 'targets_failed',
    when: isFleet,
    help: 'Fleet targets: devices that failed in the last run.',
  },
  {
    name: 'probe_targets_list_age_seconds',
    type: 'gauge',
    observation: 'targets_list_age_seconds',
    when: isFleet,
    help: 'Fleet targets: age of the device list the last run picked from (it grows while the API cannot be read and the last good list is used).',
  },
];

/** What the wrapper needs to know of a kind. */
export interface FleetAdapter<C> {
  /** The field that names the one target (`device`), which a fleet probe leaves out. */
  targetField: string;
  /** The probe's settings aimed at one device. */
  forDevice(cfg: C, uuid: string): C;
  /** Rules of this kind for a fleet probe (e.g. ssh: proxy mode only). */
  check?(cfg: C): { field: string; message: string }[];
}

interface FleetFields {
  fleet?: FleetSelector;
  api?: string;
  token?: Secret;
}

/** A uuid that stands for "each device" when a fleet probe's settings are checked at load. */
const PLACEHOLDER_UUID = '0000000';

// The kind's run, typed loosely: the wrapper hands it the kind's own settings, aimed at a device.
type AnyRun = (ctx: ProbeContext, cfg: unknown, spec: ProbeSpec) => Promise<void>;

export function withFleetTargets<S extends z.ZodObject, P extends string>(
  kind: ProbeKind<S, P>,
  adapter: FleetAdapter<z.output<S>>,
): ProbeKind<z.ZodObject, P | FleetPhase> {
  const shape = kind.schema.shape as Record<string, unknown>;
  const schema = kind.schema.extend({
    fleet: fleetSelectorField.optional(),
    // The API that lists the devices; a kind that has its own (ssh's corroboration) keeps it.
    ...('api' in shape ? {} : { api: httpUrl.optional() }),
    ...('token' in shape ? {} : { token: secretRef.optional() }),
  });
  type Cfg = z.output<S> & FleetFields;
  const run = kind.run as unknown as AnyRun;

  const check = (cfg: Cfg) => {
    if (!cfg.fleet) return kind.check?.(cfg) ?? [];
    const problems: { field: string; message: string; unresolved?: boolean }[] = [...selectorProblems(cfg.fleet)];
    if ((cfg as Record<string, unknown>)[adapter.targetField] !== undefined)
      problems.push({ field: 'fleet', message: `set either ${adapter.targetField} or fleet (devices picked from the API's list), not both` });
    if (!cfg.api)
      problems.push({ field: 'api', message: "is required with fleet: the platform API that lists the fleet's devices (here or in the platform block)" });
    if (!cfg.token && !cfg.fleet.token)
      problems.push({ field: 'token', message: 'is required with fleet: the API token that lists the devices (or fleet.token)' });
    // The kind's own rules, as each device's run will see its settings.
    problems.push(...(kind.check?.(adapter.forDevice(cfg, PLACEHOLDER_UUID)) ?? []), ...(adapter.check?.(cfg) ?? []));
    return problems;
  };

  return {
    ...(kind as unknown as ProbeKind<z.ZodObject, P | FleetPhase>),
    phases: [...kind.phases, ...FLEET_PHASES],
    // A probe without `fleet` never enters discover/targets nor meets the API's reasons: its series
    // stay those of the kind alone.
    phasesFor: (cfg: Cfg) => [...(kind.phasesFor?.(cfg) ?? kind.phases), ...(cfg.fleet ? FLEET_PHASES : [])],
    reasonsFor: (cfg: Cfg) => [...(kind.reasonsFor?.(cfg) ?? []), ...(cfg.fleet ? DISCOVER_REASONS : [])],
    metrics: [...(kind.metrics ?? []), ...FLEET_METRICS],
    platformFields: [...new Set([...(kind.platformFields ?? []), 'api', 'token'])],
    schema,
    check: (cfg) => check(cfg as Cfg),
    async run(ctx, cfg, spec) {
      const c = cfg as Cfg;
      if (!c.fleet) return run(ctx as ProbeContext, c, spec as ProbeSpec);
      const sel = c.fleet;
      const what = `fleet ${sel.slug ?? sel.id}`;
      ctx.reportTargets?.([]);
      const picked = await ctx.phase('discover', () => discover(ctx as ProbeContext, { fleet: sel, api: c.api, token: c.token }));
      const results = await ctx.phase('targets', async () => {
        const out = await fanOut(
          ctx as ProbeContext,
          picked.map((d) => d.uuid),
          sel.concurrency,
          (sub, uuid) => run(sub, adapter.forDevice(c, uuid), spec as ProbeSpec),
        );
        ctx.observe('targets', out.length);
        ctx.observe('targets_failed', out.filter((r) => !r.success).length);
        judgeTargets(out, minSuccessOf(sel), what);
        return out;
      });
      const failed = results.filter((r) => !r.success);
      if (failed.length)
        ctx.log.debug(
          { failed: failed.length, probed: results.length },
          `${failed.length} of ${results.length} devices of ${what} failed, within minSuccess ${minSuccessOf(sel)}`,
        );
    },
  };
}
