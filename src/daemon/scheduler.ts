import { setMaxListeners } from 'node:events';
import { Cron } from 'croner';
import type { Logger } from 'pino';
import type { ProbeSpec } from '../core/kind.js';
import { hashFraction } from '../core/hash.js';

// setTimeout's ceiling; longer waits (a yearly cron) re-arm in steps.
const MAX_TIMER_MS = 2 ** 31 - 1;
// Cron probes keep near their written time: spread over at most a tenth of their gap, capped.
const CRON_SPREAD_SHARE = 0.1;
const CRON_SPREAD_MAX_MS = 30_000;
// Random jitter on top of the deterministic offset: at most 1% of the interval, capped at 1 s.
const JITTER_SHARE = 0.01;
const JITTER_MAX_MS = 1000;

export interface SchedulerHooks {
  /** Runs one probe; resolves when the result has been recorded. Never rejects. */
  run(spec: ProbeSpec, shutdown: AbortSignal): Promise<void>;
  onSkip(spec: ProbeSpec): void;
  onStart(spec: ProbeSpec, lagSeconds: number): void;
  onInFlight(count: number): void;
}

export interface SchedulerOptions {
  /** At most this many runs at once across all probes; the rest wait their turn. */
  concurrency: number;
  log: Logger;
  hooks: SchedulerHooks;
  /** For tests: the random source of jitter. */
  random?: () => number;
}

/**
 * When a probe runs. Interval probes run at epoch-aligned slots shifted by a deterministic offset
 * from the hash of the name, so the same probe fires at the same point of its interval after every
 * restart, and many probes spread out evenly instead of firing together.
 *
 * Worked example: 1,000 probes at a 60 s interval get offsets spread uniformly over [0, 60 s), on
 * average one start every 60 ms, instead of 1,000 at once; jitter (at most 600 ms here) then keeps
 * two probes whose hashes happen to land close from synchronising exactly.
 */
export function staggerOffsetMs(spec: Pick<ProbeSpec, 'name' | 'intervalMs' | 'cron'>, cronGapMs = 0): number {
  const f = hashFraction(spec.name);
  if (spec.intervalMs) return Math.floor(f * spec.intervalMs);
  return Math.floor(f * Math.min(cronGapMs * CRON_SPREAD_SHARE, CRON_SPREAD_MAX_MS));
}

/** The first due time strictly after `after` (ms since the epoch), before jitter. */
export function nextDue(spec: Pick<ProbeSpec, 'name' | 'intervalMs' | 'cron'>, after: number, cron?: Cron): number {
  if (spec.intervalMs) return intervalDue(spec.intervalMs, staggerOffsetMs(spec), after);
  const job = cron ?? new Cron(spec.cron!, { paused: true });
  const [a, b] = job.nextRuns(2, new Date(after));
  if (!a) return Infinity;
  const offset = staggerOffsetMs(spec, b ? b.getTime() - a.getTime() : 0);
  // The first slot whose staggered time is after `after`: a slot just passed may still be pending.
  const slot = job.nextRun(new Date(after - offset));
  return slot ? slot.getTime() + offset : Infinity;
}

/** The first slot of an interval probe strictly after `after`, its offset given. */
function intervalDue(intervalMs: number, offsetMs: number, after: number): number {
  return (Math.floor((after - offsetMs) / intervalMs) + 1) * intervalMs + offsetMs;
}

interface Entry {
  spec: ProbeSpec;
  cron?: Cron;
  /** An interval probe's staggerOffsetMs, kept: it hashes the name, and arm() runs every run. */
  offsetMs?: number;
  timer?: NodeJS.Timeout;
  due: number;
  removed: boolean;
}

function scheduleKey(s: ProbeSpec): string {
  return JSON.stringify([s.intervalMs, s.cron, s.timeoutMs]);
}

export class Scheduler {
  private entries = new Map<string, Entry>();
  private queue: Array<{ entry: Entry; start: () => void }> = [];
  /**
   * Probes (by name) with a run queued or running: a due run of one is skipped meanwhile. Kept by
   * name, not per entry, so a probe removed and re-added by reloads while its run is still going
   * does not get a second run alongside.
   */
  private busy = new Set<string>();
  private running = 0;
  private inFlight = new Set<Promise<void>>();
  private readonly shutdown = new AbortController();
  private stopped = false;
  private readonly random: () => number;

  constructor(private readonly opts: SchedulerOptions) {
    this.random = opts.random ?? Math.random;
    // Every run in flight listens on the shutdown signal (up to --concurrency, 64 by default): not a
    // leak, so no MaxListenersExceededWarning in the log past 10 runs at once.
    setMaxListeners(0, this.shutdown.signal);
  }

  get isRunning(): boolean {
    return !this.stopped;
  }

  /** Applies a (re)loaded configuration: unchanged schedules keep their timers, others are re-armed. */
  update(specs: ProbeSpec[]): void {
    if (this.stopped) return;
    const next = new Map(specs.map((s) => [s.name, s]));
    for (const [name, entry] of this.entries) {
      if (!next.has(name)) {
        this.disarm(entry);
        entry.removed = true;
        this.entries.delete(name);
      }
    }
    // A removed probe's run waiting for a concurrency slot never starts.
    const dropped = this.queue.filter((q) => q.entry.removed);
    if (dropped.length) {
      this.queue = this.queue.filter((q) => !q.entry.removed);
      for (const q of dropped) this.busy.delete(q.entry.spec.name);
    }
    for (const spec of specs) {
      const existing = this.entries.get(spec.name);
      if (existing) {
        const rescheduled = scheduleKey(spec) !== scheduleKey(existing.spec);
        existing.spec = spec; // the new settings apply from the next run
        if (rescheduled) {
          // Same entry, new timer: a run in progress still makes the next due run of it skip.
          this.disarm(existing);
          existing.offsetMs = undefined;
          existing.cron = spec.cron ? new Cron(spec.cron, { paused: true }) : undefined;
          this.arm(existing, Date.now());
        }
        continue;
      }
      const entry: Entry = { spec, due: 0, removed: false };
      if (spec.cron) entry.cron = new Cron(spec.cron, { paused: true });
      this.entries.set(spec.name, entry);
      this.arm(entry, Date.now());
    }
  }

  private jitterMs(spec: ProbeSpec): number {
    const basis = spec.intervalMs ?? 60_000;
    return Math.floor(this.random() * Math.min(basis * JITTER_SHARE, JITTER_MAX_MS));
  }

  private arm(entry: Entry, after: number): void {
    const { spec } = entry;
    const due = spec.intervalMs ? intervalDue(spec.intervalMs, (entry.offsetMs ??= staggerOffsetMs(spec)), after) : nextDue(spec, after, entry.cron);
    if (!Number.isFinite(due)) return; // a cron pattern with no future run
    entry.due = due;
    const fireAt = due + this.jitterMs(entry.spec);
    const wait = () => {
      const delay = fireAt - Date.now();
      if (delay > MAX_TIMER_MS) {
        entry.timer = setTimeout(wait, MAX_TIMER_MS);
        return;
      }
      entry.timer = setTimeout(() => this.fire(entry, due), Math.max(0, delay));
    };
    wait();
  }

  private disarm(entry: Entry): void {
    if (entry.timer) clearTimeout(entry.timer);
    entry.timer = undefined;
  }

  private fire(entry: Entry, due: number): void {
    if (this.stopped || entry.removed) return;
    // Arm the next slot first, from the slot just due (not from now), so timer drift never skips one.
    this.arm(entry, due);
    if (this.busy.has(entry.spec.name)) {
      this.opts.hooks.onSkip(entry.spec);
      this.opts.log.warn({ probe: entry.spec.name }, 'run skipped: the previous run of this probe is still going');
      return;
    }
    this.busy.add(entry.spec.name);
    const start = () => {
      this.running++;
      this.opts.hooks.onInFlight(this.running);
      const spec = entry.spec;
      this.opts.hooks.onStart(spec, Math.max(0, Date.now() - due) / 1000);
      const p = this.opts.hooks
        .run(spec, this.shutdown.signal)
        .catch((err) => this.opts.log.error({ err, probe: spec.name }, 'probe run crashed (a bug in fleetprobe)'))
        .finally(() => {
          this.running--;
          this.opts.hooks.onInFlight(this.running);
          this.busy.delete(spec.name);
          this.inFlight.delete(p);
          this.queue.shift()?.start();
        });
      this.inFlight.add(p);
    };
    if (this.running < this.opts.concurrency) start();
    else this.queue.push({ entry, start });
  }

  /** Runs waiting for a concurrency slot. */
  get queued(): number {
    return this.queue.length;
  }

  /** Stops scheduling and aborts runs in flight; resolves when they have all ended or `graceMs` passed. */
  async stop(graceMs: number): Promise<boolean> {
    this.stopped = true;
    for (const entry of this.entries.values()) this.disarm(entry);
    this.queue = [];
    this.shutdown.abort();
    if (this.inFlight.size === 0) return true;
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), graceMs)));
    const done = Promise.allSettled([...this.inFlight]).then(() => true);
    const ok = await Promise.race([done, grace]);
    clearTimeout(timer);
    return ok;
  }
}
