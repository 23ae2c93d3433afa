import { z } from 'zod';
import { duration, secretRef } from '../../config/fields.js';
import { fleetSlug } from './device.js';
import { tlsField } from './tls.js';

/**
 * The `fleet:` field of an ssh, tunnel or http probe: which devices of which fleet it probes, how
 * many per run and how they are picked, and how the run is judged over them. `fleet: <org>/<fleet>`
 * (or a numeric id) is short for `fleet: { slug: <org>/<fleet> }` with every default.
 */

/** How a fleet's device list is read from the API (also device-status's sample mode). */
export const listingFields = {
  /** Devices per API request. */
  pageSize: z.number().int().min(1).max(1000).default(200),
  /** At most this many devices are listed (by id: the same ones every time). */
  maxDevices: z.number().int().min(1).max(100_000).default(1000),
};

const selector = z.strictObject({
  slug: fleetSlug.optional(),
  id: z.number().int().positive().optional(),
  /** Device tags that must all be set, to these values. */
  tags: z.record(z.string().min(1).max(100), z.string().max(200)).default({}),
  /** A device type's slug (`raspberrypi4-64`). */
  deviceType: z
    .string()
    .regex(/^[a-z0-9][a-z0-9_-]*$/, 'a device type slug is lower-case letters, digits, "-" and "_"')
    .optional(),
  /** Skip devices the API marks offline (they are not the platform's trouble). */
  onlineOnly: z.boolean().default(true),
  /** Devices probed per run. */
  sample: z.number().int().min(1).max(100).default(1),
  pick: z.enum(['random', 'round-robin']).default('random'),
  /** Share of the probed devices that must pass; default 1 for one device, 0.5 for more. */
  minSuccess: z.number().min(0).max(1).optional(),
  /** Devices probed at once. */
  concurrency: z.number().int().min(1).max(32).default(5),
  /** How long a fetched device list is used before it is fetched again. */
  listTtl: duration.default(5 * 60_000),
  /** Limit of each API request. */
  apiTimeout: duration.default(10_000),
  ...listingFields,
  /** TLS to the API. */
  tls: tlsField,
  /** The API token, when it is not the probe's `token`. */
  token: secretRef.optional(),
});

export const fleetSelectorField = z.preprocess((v) => (typeof v === 'string' ? { slug: v } : typeof v === 'number' ? { id: v } : v), selector);
export type FleetSelector = z.output<typeof selector>;

/** The ratio a run must reach over its devices. */
export function minSuccessOf(sel: FleetSelector): number {
  return sel.minSuccess ?? (sel.sample === 1 ? 1 : 0.5);
}

/** Problems of the selector itself, by field (the loader reports them under `fleet.`). */
export function selectorProblems(sel: FleetSelector): { field: string; message: string }[] {
  if (sel.slug === undefined && sel.id === undefined) return [{ field: 'fleet', message: 'names the fleet: `slug: <org>/<fleet>` or `id: <number>`' }];
  if (sel.slug !== undefined && sel.id !== undefined) return [{ field: 'fleet.id', message: 'set either slug or id, not both' }];
  return [];
}
