import { PROBER_REASONS, type KindMetric, type ProbeKind } from '../core/kind.js';
import { REASONS, type Reason } from '../core/reasons.js';
import { PROBE_FAMILIES, type Family, type MetricType } from './families.js';
import { ByteWriter, escapeHelp, escapeLabel, labelBytes, latin1 } from './exposition.js';
import { bump, makeLayout, resolveShape, type Layout, type ProbeShape } from './probe-layout.js';
import { Assembler, type Rendered } from './probe-render.js';

/**
 * The per-probe series of /metrics: 20-35 per probe (see docs/metrics.md), so 11,500 probes make
 * about 290,000. prom-client keeps each series as an object with its own label map and hash key
 * (about 100 KB per probe once scraped) and renders them in seconds; here each probe has one label
 * string and one Float64Array of values in a layout shared by probes alike (probe-layout.ts),
 * rendered by a plain loop. NaN marks a series not exported (yet): a gauge never set, as
 * prom-client does with a gauge never set, or a reason the probe did not declare.
 */

export { LATENCY_BUCKETS, PROBE_FAMILIES } from './families.js';
type Labels = Record<string, string>;

interface Entry extends Rendered {
  labels: Labels;
  /** `probe="x",kind="http",...`, escaped, without braces. */
  text: string;
  /** The same as UTF-8, made at the first render. */
  bytes?: Uint8Array;
  layout: Layout;
  v: Float64Array;
}

/** Probes formatted between two turns of the event loop (about 10 ms of work). */
const RENDER_CHUNK = 500;

const REASON_LABELS = REASONS.map((r) => Buffer.from(`reason="${r}"`, 'latin1'));

/** A probe as configure takes it: its name, labels and interval, and what decides its layout. */
export interface SeriesSpec extends ProbeShape {
  name: string;
  labels: Labels;
  intervalSeconds: number;
}

/**
 * Every field from the start, in one order: the render's loops read tens of thousands of entries,
 * and entries that gained fields in different orders would have different shapes (slower reads).
 */
function newEntry(labels: Labels, text: string, layout: Layout): Entry {
  return { labels, text, bytes: undefined, layout, v: layout.initial.slice(), lines: undefined, size: 0, idx: 0, gen: 0, version: 0 };
}

export class ProbeSeries {
  private entries = new Map<string, Entry>();
  private layouts = new Map<string, Layout>();
  /** Every kind metric by name (one metric may serve several kinds), in first-seen order. */
  private readonly extraFamilies = new Map<string, KindMetric>();
  private staticLabels: string[] = [];

  /**
   * `onUndeclared`: a probe failed with a reason its kind (and companions) did not declare, nor a
   * prober reason: a bug in the kind's `reasons`. Its series is made there and then.
   */
  constructor(
    private readonly kinds: Record<string, ProbeKind>,
    private readonly onUndeclared?: (probe: string, kind: string, reason: string) => void,
    options: { sliceMs?: number } = {},
  ) {
    this.assembler = new Assembler(options.sliceMs);
    for (const k of Object.values(kinds)) for (const m of k.metrics ?? []) if (!this.extraFamilies.has(m.name)) this.extraFamilies.set(m.name, m);
  }

  /** Every family with its type, for docs and rule checks (names, not values). */
  families(): { name: string; help: string; type: MetricType }[] {
    return [...Object.values(PROBE_FAMILIES), ...[...this.extraFamilies.values()].map((m) => ({ name: m.name, help: m.help, type: m.type }))];
  }

  private layoutOf(shape: ProbeShape): Layout {
    const resolved = resolveShape(this.kinds, shape);
    let layout = this.layouts.get(resolved.key);
    if (!layout) this.layouts.set(resolved.key, (layout = makeLayout(resolved)));
    return layout;
  }

  /**
   * Creates the series of the given probes (labels: probe, kind and the union of static labels,
   * empty where a probe has none) and drops those of probes no longer configured. A probe whose
   * labels and layout are unchanged keeps its values; a change of the label set restarts every series.
   */
  configure(specs: readonly SeriesSpec[]): void {
    const names = [...new Set(specs.flatMap((s) => Object.keys(s.labels)))].sort();
    if (names.join() !== this.staticLabels.join()) {
      this.staticLabels = names;
      this.entries.clear();
    }
    const next = new Map<string, Entry>();
    for (const spec of specs) {
      const labels: Labels = { probe: spec.name, kind: spec.kind };
      for (const n of this.staticLabels) labels[n] = spec.labels[n] ?? '';
      const text = Object.entries(labels)
        .map(([k, v]) => `${k}="${escapeLabel(v)}"`)
        .join(',');
      const layout = this.layoutOf(spec);
      const old = this.entries.get(spec.name);
      const kept = old && old.text === text && old.layout === layout;
      const entry: Entry = kept ? old : newEntry(labels, text, layout);
      // Set on every reload: an interval can change while the labels stay. A new probe's lines
      // are formatted in the background too, not by the first scrape after a start or reload (at
      // 11,500 probes, that scrape would format them all at once).
      if (!kept || entry.v[entry.layout.interval] !== spec.intervalSeconds) this.changed(entry);
      entry.v[entry.layout.interval] = spec.intervalSeconds;
      next.set(spec.name, entry);
    }
    this.entries = next;
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  recordRun(
    name: string,
    r: {
      success: boolean;
      aborted: boolean;
      reason: string | null;
      durationSeconds: number;
      phases: Record<string, number>;
      startedAt: number;
      certExpiry?: number;
    },
  ): void {
    const e = this.entries.get(name);
    if (!e) return; // removed by a reload while it ran
    this.changed(e);
    const { layout: l, v } = e;
    if (r.aborted) return bump(v, l.aborted, 1);
    v[l.success] = r.success ? 1 : 0;
    v[l.duration] = r.durationSeconds;
    for (let i = 0; i < l.phases.length; i++) v[l.phase + i] = r.phases[l.phases[i]] ?? 0;
    // Every failure counts under a reason: their sum is the failed runs (there is no runs counter).
    if (!r.success) this.failed(name, e, r.reason ?? 'internal');
    const n = l.buckets.length;
    for (let i = 0; i < n; i++) if (r.durationSeconds <= l.buckets[i]) v[l.latency + i]++;
    v[l.latency + n] += r.durationSeconds;
    v[l.latency + n + 1]++;
    // Never backwards: a held tunnel's interruption starts when the hold did, hours before the
    // keepalive that last moved it (checked()), and ProbeNotRunning would see hours without a run.
    const started = r.startedAt / 1000;
    if (!(v[l.lastRun] > started)) v[l.lastRun] = started;
    if (r.success) v[l.lastSuccess] = started;
    if (typeof r.certExpiry === 'number') v[l.certExpiry] = r.certExpiry;
  }

  private failed(name: string, e: Entry, reason: string): void {
    const known = (REASONS as readonly string[]).indexOf(reason);
    // Not a reason at all (a kind's bug): counted as fleetprobe's own trouble, so the sum stays right.
    const at = known < 0 ? REASONS.indexOf('internal') : known;
    const slot = e.layout.failures + at;
    const first = e.v[slot] !== e.v[slot];
    bump(e.v, slot, 1);
    if (first && !e.layout.declared.has(reason as Reason) && !(PROBER_REASONS as readonly string[]).includes(reason)) {
      this.onUndeclared?.(name, e.layout.kind, reason);
    }
  }

  /** A held probe's check passed at `atMs`: the last-run and last-success timestamps move to it. */
  checked(name: string, atMs: number): void {
    const e = this.entries.get(name);
    if (!e) return;
    e.v[e.layout.lastRun] = atMs / 1000;
    e.v[e.layout.lastSuccess] = atMs / 1000;
    this.changed(e);
  }

  skipped(name: string): void {
    const e = this.entries.get(name);
    if (!e) return;
    bump(e.v, e.layout.skipped, 1);
    this.changed(e);
  }

  /** Feeds the kind's own series (KindMetric) the probe has: a gauge is set, a counter increased. */
  observe(name: string, observations: Readonly<Record<string, number | string | undefined>>): void {
    const e = this.entries.get(name);
    if (!e) return;
    for (const { metric, slot } of e.layout.extra.values()) {
      const keys = metric.label ? metric.label.values.map((x) => `${metric.observation}.${x}`) : [metric.observation];
      for (let i = 0; i < keys.length; i++) {
        const x = observations[keys[i]];
        if (typeof x !== 'number') continue;
        this.changed(e);
        if (metric.type === 'gauge') e.v[slot + i] = x;
        else bump(e.v, slot + i, x);
      }
    }
  }

  /** Every family in export order, with how to write one probe's samples of it. */
  private writers?: { head: Buffer; write: (w: ByteWriter, e: Entry) => void }[];

  // long: one table, one entry per family in export order; each entry is a few lines.
  private familyWriters(): { head: Buffer; write: (w: ByteWriter, e: Entry) => void }[] {
    if (this.writers) return this.writers;
    const head = (f: Family) => Buffer.from(`# HELP ${f.name} ${escapeHelp(f.help)}\n# TYPE ${f.name} ${f.type}\n`, 'utf8');
    // One value per probe; NaN (a gauge not set yet) is left out. x === x: not NaN.
    const single = (f: Family, slotOf: (l: Layout) => number) => {
      const name = latin1(f.name + '{');
      return {
        head: head(f),
        write: (w: ByteWriter, e: Entry) => {
          const x = e.v[slotOf(e.layout)];
          if (x === x) w.sample(name, e.bytes!, null, x);
        },
      };
    };
    // One more label of fixed values.
    const labelled = (f: Family, slotOf: (l: Layout) => number, labelsOf: (l: Layout) => readonly Uint8Array[]) => {
      const name = latin1(f.name + '{');
      const write = (w: ByteWriter, e: Entry) => {
        const at = slotOf(e.layout);
        const extra = labelsOf(e.layout);
        for (let i = 0; i < extra.length; i++) {
          const x = e.v[at + i];
          if (x === x) w.sample(name, e.bytes!, extra[i], x);
        }
      };
      return { head: head(f), write };
    };
    const F = PROBE_FAMILIES;
    const bucket = latin1(`${F.latency.name}_bucket{`);
    const sum = latin1(`${F.latency.name}_sum{`);
    const count = latin1(`${F.latency.name}_count{`);
    this.writers = [
      single(F.success, (l) => l.success),
      single(F.duration, (l) => l.duration),
      labelled(
        F.phase,
        (l) => l.phase,
        (l) => l.phaseLabels,
      ),
      labelled(
        F.failures,
        (l) => l.failures,
        () => REASON_LABELS,
      ),
      {
        head: head(F.latency),
        write: (w, e) => {
          const at = e.layout.latency;
          const n = e.layout.buckets.length;
          const le = e.layout.bucketLabels;
          for (let i = 0; i <= n; i++) w.sample(bucket, e.bytes!, le[i], e.v[at + (i < n ? i : n + 1)]);
          w.sample(sum, e.bytes!, null, e.v[at + n]);
          w.sample(count, e.bytes!, null, e.v[at + n + 1]);
        },
      },
      single(F.lastRun, (l) => l.lastRun),
      single(F.lastSuccess, (l) => l.lastSuccess),
      single(F.skipped, (l) => l.skipped),
      single(F.aborted, (l) => l.aborted),
      single(F.certExpiry, (l) => l.certExpiry),
      single(F.interval, (l) => l.interval),
      ...[...this.extraFamilies.values()].map((m) => {
        const name = latin1(m.name + '{');
        const valueLabels = m.label ? m.label.values.map((x) => labelBytes(m.label!.name, x)) : null;
        const write = (w: ByteWriter, e: Entry) => {
          const found = e.layout.extra.get(m.name);
          if (!found) return;
          for (let i = 0; i < (valueLabels?.length ?? 1); i++) {
            const x = e.v[found.slot + i];
            if (x === x) w.sample(name, e.bytes!, valueLabels ? valueLabels[i] : null, x);
          }
        };
        return { head: head(m), write };
      }),
    ];
    return this.writers;
  }

  /**
   * Exposition text of every family (HELP, TYPE, samples), families separated by a blank line,
   * after `prefix` (the rest of /metrics), in one buffer. A probe is formatted again only when
   * one of its values changed (in the background, see changed()); the others' lines are copied
   * from the last render (probe-render.ts): with scrapes more frequent than runs, most probes.
   */
  render(prefix = ''): Buffer {
    if (this.rendering) throw new Error('ProbeSeries.render: a renderAsync is still running');
    const steps = this.renderSteps(prefix);
    for (;;) {
      const step = steps.next();
      if (step.done) return step.value;
    }
  }

  /**
   * The same as render, giving the event loop a turn every few hundred probes: at 10,000+ probes
   * a render takes tens of ms, and runs due meanwhile would all start that much late. Renders run
   * one after another (each copies from the last one's buffer).
   */
  async renderAsync(prefix = ''): Promise<Buffer> {
    const before = this.rendering;
    let done!: () => void;
    const mine = new Promise<void>((resolve) => (done = resolve));
    this.rendering = mine;
    await before;
    try {
      const steps = this.renderSteps(prefix);
      let work = 0;
      for (;;) {
        const t0 = performance.now();
        const step = steps.next();
        work += performance.now() - t0;
        if (step.done) {
          this.lastRenderWorkMs = work;
          return step.value;
        }
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    } finally {
      if (this.rendering === mine) this.rendering = undefined;
      done();
    }
  }
  private rendering?: Promise<void>;
  /** Time the last renderAsync spent rendering, its slices added up (not the turns between them). */
  lastRenderWorkMs = 0;

  /**
   * A probe's values changed: its lines are formatted again soon, in the background (a few hundred
   * probes per turn of the event loop), so that a scrape mostly copies lines already made instead
   * of formatting the ones that changed since the last scrape (at 11,500 probes, 2,000 a scrape).
   */
  private changed(e: Entry): void {
    Assembler.changed(e);
    this.dirty.add(e);
    if (this.flushing) return;
    this.flushing = true;
    setImmediate(() => this.flush());
  }
  private dirty = new Set<Entry>();
  private flushing = false;

  private flush(): void {
    let n = 0;
    for (const e of this.dirty) {
      this.dirty.delete(e);
      if (!e.lines && e.gen === 0) this.format(e);
      if (++n === RENDER_CHUNK) return void setImmediate(() => this.flush());
    }
    this.flushing = false;
  }

  /** Formats one probe's samples of every family into one buffer, a view per family. */
  private format(e: Entry): Uint8Array[] {
    const writers = this.familyWriters();
    const scratch = (this.scratch ??= new ByteWriter(16 * 1024));
    e.bytes ??= Buffer.from(e.text, 'utf8');
    scratch.reset();
    const offsets = [0];
    for (const f of writers) {
      f.write(scratch, e);
      offsets.push(scratch.length);
    }
    // A memory of its own, not a slice of Node's shared 8 KB pool: a pool slab lives as long as any
    // slice of it, and while nothing scrapes, each probe keeps its lines (a slab's worth each, at
    // worst, for probes formatted at different times).
    const done = scratch.done();
    const all = Buffer.allocUnsafeSlow(done.length);
    all.set(done);
    e.lines = writers.map((_, i) => all.subarray(offsets[i], offsets[i + 1]));
    e.size = all.length;
    return e.lines;
  }

  /** Gives back a buffer render returned once nothing reads it any more, for a later render to fill. */
  recycle(body: Buffer): void {
    this.assembler.recycle(body);
  }
  private readonly assembler: Assembler;

  private renderSteps(prefix: string): Generator<void, Buffer> {
    const entries = [...this.entries.values()];
    return this.assembler.steps(prefix, this.familyWriters(), entries, (e) => this.format(e as Entry));
  }
  private scratch?: ByteWriter;
}
