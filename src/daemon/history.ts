import { UsageError } from '../core/errors.js';
import { REASONS, type Reason } from '../core/reasons.js';
import type { RunResult } from '../core/result.js';
import { fromHalf, toHalf } from './half-float.js';

/**
 * Run history in memory: the last N runs of each probe and, kept apart, its last M failures with
 * their message and the target's output, so a failure that has since recovered can still be read
 * (the status page, /probes/NAME, `fleetprobe status`). Nothing is written to disk: a restart
 * starts empty, as /probes always did.
 */
export interface HistoryLimits {
  /** Runs kept per probe (`--history N`); 0 turns the history off, failures included. */
  runs: number;
  /** Failures kept apart per probe, with their message and output. */
  failures: number;
}
export const DEFAULT_HISTORY_LIMITS: HistoryLimits = { runs: 100, failures: 20 };

/** The limits `--history N` asks for (N runs per probe, 0 for none); the defaults without it. */
export function historyFrom(flag: string | undefined): HistoryLimits {
  if (flag === undefined) return DEFAULT_HISTORY_LIMITS;
  const runs = Number(flag);
  // The ring's row indices and the page's sizes assume a human-sized N.
  if (!/^\d+$/.test(flag) || runs > 10_000) throw new UsageError(`--history must be a whole number from 0 to 10000 (runs kept per probe), got "${flag}"`);
  return { runs, failures: runs === 0 ? 0 : DEFAULT_HISTORY_LIMITS.failures };
}

/** One run as the history keeps it (durations to about 0.05%: see half-float.ts). */
export interface HistoryEntry {
  /** ms since the epoch (whole seconds in the ring). */
  startedAt: number;
  durationSeconds: number;
  success: boolean;
  reason: Reason | null;
  phase: string | null;
  /** Seconds per phase reached, in the kind's order; phases a kind did not declare are not kept. */
  phases: Record<string, number>;
}

/** A failure kept apart, exactly as the run reported it. */
export interface FailureRecord extends HistoryEntry {
  /** Redacted, bounded, one line. */
  message: string | null;
  /** The last lines of the target's output (redacted, bounded; see OUTPUT_TAIL_LINES). */
  output: readonly string[];
}

const PASS = 0;
/** A failure without a reason: runProbe never gives one, but a result is kept as it came. */
const NO_REASON = 255;
const NO_PHASE = 255;
/** A phase the run never reached (a NaN pattern toHalf never produces). */
const NOT_REACHED = 0xffff;

/**
 * One probe's last runs in a ring of 16-bit words, not objects: per run two words of start time
 * (whole seconds since the epoch, good until 2106), one of result and failing phase (the high byte
 * 0 for a pass, 1 + i for a failure with REASONS[i]; the low byte the phase's index), then one per
 * duration (a half float of seconds: the run's, then one per phase the kind declares). An http
 * probe (5 phases) takes 9 words, 18 bytes a run, 1.8 KB for 100 runs; as objects (an entry and
 * its phases) each run would take hundreds of bytes. The measured whole: docs/status-page.md, "Memory".
 */
class RunRing {
  private readonly words: Uint16Array;
  private readonly stride: number;
  private next = 0;
  size = 0;

  constructor(
    /** The kind's phases, then any other failing phase seen (its time is not kept). */
    private phaseNames: readonly string[],
    private readonly columns: number,
    readonly capacity: number,
  ) {
    this.stride = 4 + columns;
    this.words = new Uint16Array(capacity * this.stride);
  }

  push(r: RunResult): void {
    const at = this.next * this.stride;
    this.next = (this.next + 1) % this.capacity;
    this.size = Math.min(this.size + 1, this.capacity);
    const seconds = Math.floor(r.startedAt / 1000);
    this.words[at] = seconds >>> 16;
    this.words[at + 1] = seconds & 0xffff;
    const reason = r.reason === null ? -1 : REASONS.indexOf(r.reason);
    const code = r.success ? PASS : reason < 0 ? NO_REASON : 1 + reason;
    this.words[at + 2] = (code << 8) | (r.phase === null || r.success ? NO_PHASE : this.phaseIndex(r.phase));
    this.words[at + 3] = toHalf(r.durationSeconds);
    for (let i = 0; i < this.columns; i++) {
      const s = r.phases[this.phaseNames[i]];
      this.words[at + 4 + i] = s === undefined ? NOT_REACHED : toHalf(s);
    }
  }

  /** The offset of the k-th newest row (0: the newest), k < size. */
  row(k: number): number {
    return ((this.next - 1 - k + this.capacity) % this.capacity) * this.stride;
  }

  /** One run; without `withPhases` its phase times are left out (the uptime bar needs none). */
  entry(at: number, withPhases = true): HistoryEntry {
    const phases: Record<string, number> = {};
    for (let i = 0; withPhases && i < this.columns; i++) {
      const half = this.words[at + 4 + i];
      if (half !== NOT_REACHED) phases[this.phaseNames[i]] = fromHalf(half);
    }
    const code = this.words[at + 2] >> 8;
    const phase = this.words[at + 2] & 0xff;
    return {
      startedAt: (this.words[at] * 0x10000 + this.words[at + 1]) * 1000,
      durationSeconds: fromHalf(this.words[at + 3]),
      success: code === PASS,
      reason: code === PASS || code === NO_REASON ? null : REASONS[code - 1],
      phase: phase === NO_PHASE ? null : this.phaseNames[phase],
      phases,
    };
  }

  passed(at: number): boolean {
    return this.words[at + 2] >> 8 === PASS;
  }

  durationSeconds(at: number): number {
    return fromHalf(this.words[at + 3]);
  }

  private phaseIndex(name: string): number {
    const at = this.phaseNames.indexOf(name);
    if (at >= 0) return at;
    // Shared with the kind until a probe fails in a phase its kind did not declare (a kind's bug).
    if (this.phaseNames.length >= NO_PHASE) return NO_PHASE;
    this.phaseNames = [...this.phaseNames, name];
    return this.phaseNames.length - 1;
  }
}

interface ProbeHistory {
  kind: string;
  /** Made at the first run, so a probe that never ran costs nothing. */
  ring?: RunRing;
  /** Oldest first, at most limits.failures. */
  failures: FailureRecord[];
}

/** Counts and duration quantiles over a probe's history. */
export interface HistorySummary {
  runs: number;
  failures: number;
  /** Over the passing runs kept; null without any. */
  p50Seconds: number | null;
  p95Seconds: number | null;
}

export class RunHistory {
  private probes = new Map<string, ProbeHistory>();

  constructor(
    readonly limits: HistoryLimits,
    /** The phases a kind declares (ProbeKind.phases): the columns of its probes' rings. */
    readonly phasesOf: (kind: string) => readonly string[],
  ) {}

  get enabled(): boolean {
    return this.limits.runs > 0;
  }

  /** Keeps the history of probes still configured with the same kind; forgets the others. */
  configure(specs: readonly { name: string; kind: string }[]): void {
    const next = new Map<string, ProbeHistory>();
    if (this.enabled) {
      for (const { name, kind } of specs) {
        const old = this.probes.get(name);
        next.set(name, old?.kind === kind ? old : { kind, failures: [] });
      }
    }
    this.probes = next;
  }

  /** Records a finished run; aborted runs (shutdown) are neither passes nor failures and are not kept. */
  record(r: RunResult): void {
    const h = this.probes.get(r.name);
    if (!h || r.aborted) return;
    if (!h.ring) {
      const phases = this.phasesOf(h.kind);
      h.ring = new RunRing(phases, phases.length, this.limits.runs);
    }
    h.ring.push(r);
    if (r.success || this.limits.failures === 0) return;
    // A failing probe usually says the same every run: share the text with its previous failure.
    const prev = h.failures.at(-1);
    const message = prev && prev.message === r.message ? prev.message : r.message;
    const output = prev && sameLines(prev.output, r.output ?? []) ? prev.output : (r.output ?? []);
    if (h.failures.length === this.limits.failures) h.failures.shift();
    h.failures.push({
      startedAt: r.startedAt,
      durationSeconds: r.durationSeconds,
      success: false,
      reason: r.reason,
      phase: r.phase,
      phases: r.phases,
      message,
      output,
    });
  }

  /**
   * The runs kept, newest first, started to the second. A failing run still among the kept
   * failures carries its exact start and its message; older failures keep reason, phase and times.
   */
  runs(name: string, opts: { phases?: boolean; limit?: number } = {}): (HistoryEntry & { message?: string | null })[] {
    const h = this.probes.get(name);
    if (!h?.ring) return [];
    // At most one run of a probe starts in a given second (intervals are 1 s at least).
    const failures = new Map(h.failures.map((f) => [Math.floor(f.startedAt / 1000) * 1000, f]));
    const out = [];
    for (let k = 0; k < Math.min(h.ring.size, opts.limit ?? Infinity); k++) {
      const e = h.ring.entry(h.ring.row(k), opts.phases ?? true);
      const f = e.success ? undefined : failures.get(e.startedAt);
      out.push(f ? { ...e, startedAt: f.startedAt, message: f.message } : e);
    }
    return out;
  }

  /** The failures kept apart, newest first. */
  failures(name: string): readonly FailureRecord[] {
    return [...(this.probes.get(name)?.failures ?? [])].reverse();
  }

  lastFailure(name: string): FailureRecord | undefined {
    return this.probes.get(name)?.failures.at(-1);
  }

  /** Cheap enough for every row of a page: a pass over the ring and one sort of ≤ N durations. */
  summary(name: string): HistorySummary {
    const ring = this.probes.get(name)?.ring;
    const passing: number[] = [];
    for (let k = 0; ring && k < ring.size; k++) if (ring.passed(ring.row(k))) passing.push(ring.durationSeconds(ring.row(k)));
    passing.sort((a, b) => a - b);
    const runs = ring?.size ?? 0;
    return { runs, failures: runs - passing.length, p50Seconds: quantile(passing, 0.5), p95Seconds: quantile(passing, 0.95) };
  }
}

function sameLines(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((line, i) => line === b[i]);
}

/** Nearest-rank quantile of sorted values (the value below which a fraction q of them lie). */
function quantile(sorted: readonly number[], q: number): number | null {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}
