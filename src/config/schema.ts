import { z } from 'zod';
import { KIND_NAMES } from '../kinds/index.js';
import { duration } from './fields.js';

/** Label names we set ourselves; a static label may not take one of them. */
export const RESERVED_LABELS = ['probe', 'kind', 'phase', 'reason', 'result', 'job', 'instance', 'le', 'quantile'];

const labelName = z
  .string()
  .regex(/^[a-zA-Z_][a-zA-Z0-9_]*$/, 'a label name must match [a-zA-Z_][a-zA-Z0-9_]*')
  .refine((n) => !n.startsWith('__'), 'label names starting with __ are reserved by Prometheus')
  .refine((n) => !RESERVED_LABELS.includes(n), `is a label fleetprobe sets itself (${RESERVED_LABELS.join(', ')})`);

export const labels = z.record(labelName, z.string().max(256));

export const defaultsSchema = z.strictObject({
  interval: duration.optional(),
  timeout: duration.optional(),
  labels: labels.optional(),
});

/** Fields every probe has, whatever its kind. The kind's own fields are added to these. */
export const commonProbeFields = {
  name: z
    .string()
    .min(1)
    .max(128)
    .regex(/^[a-zA-Z0-9][a-zA-Z0-9._-]*$/, 'a probe name is letters, digits, ".", "_" and "-", starting with a letter or digit'),
  kind: z.string(),
  description: z.string().optional(),
  enabled: z.boolean().default(true),
  interval: duration.optional(),
  cron: z.string().optional(),
  timeout: duration.optional(),
  labels: labels.optional(),
};

/** `probe_latency_seconds` bucket bounds in seconds: a few, increasing (each bound is a series per probe). */
const bucketList = z
  .array(z.number('a bucket bound is a number of seconds').positive('a bucket bound is a number of seconds above 0').finite())
  .min(1, 'needs at least one bound (+Inf is always added)')
  .max(20, 'at most 20 bounds (each is a series per probe)')
  .refine((b) => b.every((x, i) => i === 0 || x > b[i - 1]), 'bucket bounds must increase, each larger than the one before');

/** A file's `buckets:`: one list for every probe of the file, or a list per kind. */
export const bucketsSchema = z.union([bucketList, z.partialRecord(z.enum(KIND_NAMES as [string, ...string[]]), bucketList)], {
  error: `a list of bounds in seconds (e.g. [0.1, 0.5, 2]) for every probe of the file, or one per kind (e.g. {http: [0.1, 2]}; kinds: ${KIND_NAMES.join(', ')})`,
});

/** The buckets a probe of `kind` takes from its file's `buckets:`, if the file sets any for it. */
export function bucketsFor(buckets: z.output<typeof bucketsSchema> | undefined, kind: string): number[] | undefined {
  return Array.isArray(buckets) ? buckets : buckets?.[kind];
}

export const fileSchema = z.strictObject({
  /** A file marked `lab: true` describes probes of the embedded lab; it is loaded only with --lab. */
  lab: z.boolean().optional(),
  defaults: defaultsSchema.optional(),
  /** Shared platform endpoints and credentials: fields the probes of this file take when they do not set them. */
  platform: z.record(z.string(), z.unknown()).optional(),
  /** Latency histogram buckets of this file's probes (else each kind's own, see docs/metrics.md). */
  buckets: bucketsSchema.optional(),
  probes: z.array(z.record(z.string(), z.unknown())).default([]),
});
