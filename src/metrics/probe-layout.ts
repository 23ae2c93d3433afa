import { PROBER_REASONS, SHARED_REASONS, type KindMetric, type ProbeKind } from '../core/kind.js';
import { REASONS, type Reason } from '../core/reasons.js';
import { labelBytes } from './exposition.js';
import { LATENCY_BUCKETS } from './families.js';

/**
 * Which series one probe has, and where each value lives in its Float64Array. Probes of one kind
 * differ in their buckets (a file's `buckets:`), their declared reasons (a companion's reasons add
 * to the kind's) and which of the kind's own series they feed (KindMetric.when); probes alike
 * share one Layout. A slot holding NaN is a series not exported (yet): a gauge never set, a reason
 * not declared that has not happened, the skipped and aborted counters before their first event.
 */
export interface Layout {
  /** Identifies the layout: probes with equal keys share it. */
  key: string;
  kind: string;
  phases: readonly string[];
  phaseLabels: Uint8Array[];
  /** Reasons whose series exist from the start (the kind's, the shared ones, a companion's). */
  declared: ReadonlySet<Reason>;
  buckets: readonly number[];
  /** `le="..."` for each bucket, then `le="+Inf"`. */
  bucketLabels: Uint8Array[];
  success: number;
  duration: number;
  phase: number;
  /** One slot per REASONS entry. */
  failures: number;
  /** buckets.length cumulative bucket counts, then sum, then count (the +Inf bucket). */
  latency: number;
  lastRun: number;
  lastSuccess: number;
  skipped: number;
  aborted: number;
  certExpiry: number;
  interval: number;
  /** The kind's own series this probe has, by metric name: first slot and, with a label, one slot per value. */
  extra: Map<string, { metric: KindMetric; slot: number }>;
  /** A new probe's values: 0 for a series that exists from the start, NaN for one that does not. */
  initial: Float64Array;
}

/** What decides a probe's layout. */
export interface ProbeShape {
  kind: string;
  /** Its own buckets (a file's `buckets:`); else the kind's, else LATENCY_BUCKETS. */
  buckets?: readonly number[];
  /** The kind's config, for KindMetric.when (absent: every series of the kind). */
  config?: unknown;
  /** Kinds of the companion probes it reads: their reasons become its own (it fails with them). */
  companionKinds?: readonly string[];
}

/** The reasons a probe of `kind` may fail with and gets series for up front (prober reasons excluded). */
export function declaredReasons(kinds: Record<string, ProbeKind>, kind: string, companionKinds: readonly string[] = []): Set<Reason> {
  const out = new Set<Reason>(SHARED_REASONS);
  for (const k of [kind, ...companionKinds]) for (const r of kinds[k]?.reasons ?? []) out.add(r);
  for (const r of PROBER_REASONS) out.delete(r);
  return out;
}

const bucketLabel = (b: number) => Buffer.from(`le="${b}"`, 'latin1');
const INF_LABEL = Buffer.from('le="+Inf"', 'latin1');

/** What a probe's layout is made from, and the key that says which probes share one. */
export interface ResolvedShape {
  key: string;
  kind: string;
  phases: readonly string[];
  buckets: readonly number[];
  declared: Set<Reason>;
  metrics: KindMetric[];
}

export function resolveShape(kinds: Record<string, ProbeKind>, shape: ProbeShape): ResolvedShape {
  const k = kinds[shape.kind];
  const buckets = shape.buckets ?? k?.buckets ?? LATENCY_BUCKETS;
  const cfg = shape.config ?? {};
  const declared = declaredReasons(kinds, shape.kind, shape.companionKinds);
  for (const r of k?.reasonsFor?.(cfg) ?? []) if (!(PROBER_REASONS as readonly Reason[]).includes(r)) declared.add(r);
  const metrics = (k?.metrics ?? []).filter((m) => !m.when || m.when(cfg));
  const phases = k?.phasesFor?.(cfg) ?? k?.phases ?? [];
  const key = [shape.kind, phases.join(','), buckets.join(','), [...declared].sort().join(','), metrics.map((m) => m.name).join(',')].join('|');
  return { key, kind: shape.kind, phases, buckets, declared, metrics };
}

// long: one slot table, one line per family; splitting it would scatter the layout over functions.
export function makeLayout({ key, kind, phases, buckets, declared, metrics }: ResolvedShape): Layout {
  let next = 0;
  const take = (n: number) => ((next += n), next - n);
  const l: Omit<Layout, 'initial'> = {
    key,
    kind,
    phases,
    phaseLabels: phases.map((p) => labelBytes('phase', p)),
    declared,
    buckets,
    bucketLabels: [...buckets.map(bucketLabel), INF_LABEL],
    success: take(1),
    duration: take(1),
    phase: take(phases.length),
    failures: take(REASONS.length),
    latency: take(buckets.length + 2),
    lastRun: take(1),
    lastSuccess: take(1),
    skipped: take(1),
    aborted: take(1),
    certExpiry: take(1),
    interval: take(1),
    extra: new Map(),
  };
  for (const m of metrics) l.extra.set(m.name, { metric: m, slot: take(m.label ? m.label.values.length : 1) });
  const v = new Float64Array(next);
  // Gauges appear when first set; the skipped and aborted counters at their first event (rare, and
  // a series each for every probe: the first event is lost to increase(), the next ones are not).
  for (const slot of [l.success, l.duration, l.lastRun, l.lastSuccess, l.certExpiry, l.skipped, l.aborted]) v[slot] = NaN;
  REASONS.forEach((r, i) => {
    if (!declared.has(r)) v[l.failures + i] = NaN;
  });
  for (const { metric, slot } of l.extra.values()) {
    const values = metric.label?.values ?? [''];
    values.forEach((value, i) => {
      // Counters start at 0 (rate() works before the first event); gauges appear when first set.
      const zero = metric.type === 'counter' && (!metric.declaredReasonsOnly || declared.has(value as Reason));
      v[slot + i] = zero ? 0 : NaN;
    });
  }
  return { ...l, initial: v };
}

/** Adds to a counter slot; one holding NaN (not exported yet) starts at 0. */
export function bump(v: Float64Array, slot: number, by: number): void {
  const x = v[slot];
  v[slot] = (x === x ? x : 0) + by;
}
