import { Cron } from 'croner';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ProbeSpec } from '../../src/core/kind.js';
import { Scheduler, nextDue, staggerOffsetMs } from '../../src/daemon/scheduler.js';

const log = pino({ level: 'silent' });

function spec(name: string, over: Partial<ProbeSpec> = {}): ProbeSpec {
  return {
    name,
    kind: 'fake',
    intervalMs: 60_000,
    timeoutMs: 5_000,
    labels: {},
    source: { file: 'test.yaml', line: 1 },
    config: {},
    digest: `digest-${name}`,
    ...over,
  };
}

function cronSpec(name: string, cron: string): ProbeSpec {
  return spec(name, { intervalMs: undefined, cron });
}

// ---------------------------------------------------------------------------------------------
// Pure scheduling maths
// ---------------------------------------------------------------------------------------------

describe('staggerOffsetMs', () => {
  it('is deterministic: the same name always gets the same offset', () => {
    for (const name of ['api-health', 'ssh-proxy', 'tunnel/eu-1', '']) {
      const s = spec(name, { intervalMs: 30_000 });
      const a = staggerOffsetMs(s);
      expect(staggerOffsetMs({ ...s })).toBe(a);
      expect(staggerOffsetMs(spec(name, { intervalMs: 30_000, timeoutMs: 1, labels: { x: 'y' } }))).toBe(a);
    }
  });

  it('differs between names', () => {
    const offsets = new Set(Array.from({ length: 50 }, (_, i) => staggerOffsetMs(spec(`p${i}`))));
    expect(offsets.size).toBeGreaterThan(45);
  });

  it('is an integer within [0, interval) for all sorts of intervals', () => {
    for (const interval of [1, 2, 7, 1000, 15_000, 60_000, 3_600_000, 86_400_000]) {
      for (let i = 0; i < 200; i++) {
        const o = staggerOffsetMs(spec(`probe-${i}`, { intervalMs: interval }));
        expect(Number.isInteger(o)).toBe(true);
        expect(o).toBeGreaterThanOrEqual(0);
        expect(o).toBeLessThan(interval);
      }
    }
  });

  it('spreads 1,000 probes at 60 s evenly: no 1-second window holds more than 3% of them', () => {
    const n = 1000;
    const interval = 60_000;
    const offsets = Array.from({ length: n }, (_, i) => staggerOffsetMs(spec(`probe-${i}`, { intervalMs: interval }))).sort((a, b) => a - b);
    // Sliding window (wrapping around the interval, since slots repeat), not just aligned buckets.
    const doubled = [...offsets, ...offsets.map((o) => o + interval)];
    let maxInWindow = 0;
    let j = 0;
    for (let i = 0; i < n; i++) {
      while (doubled[j] < offsets[i] + 1000) j++;
      maxInWindow = Math.max(maxInWindow, j - i);
    }
    expect(maxInWindow).toBeLessThanOrEqual(n * 0.03);

    // Roughly uniform: Kolmogorov-Smirnov distance to U[0, interval) well under the 0.1% critical value.
    let d = 0;
    offsets.forEach((o, i) => {
      const f = o / interval;
      d = Math.max(d, Math.abs((i + 1) / n - f), Math.abs(i / n - f));
    });
    expect(d).toBeLessThan(1.95 / Math.sqrt(n));

    // And every tenth of the interval gets a fair share (expected 100 each).
    const tenths = new Array(10).fill(0);
    for (const o of offsets) tenths[Math.floor((o / interval) * 10)]++;
    for (const c of tenths) {
      expect(c).toBeGreaterThan(60);
      expect(c).toBeLessThan(140);
    }
  });

  it('spreads cron probes over at most a tenth of their gap, capped at 30 s', () => {
    for (let i = 0; i < 200; i++) {
      const s = cronSpec(`c${i}`, '* * * * *');
      expect(staggerOffsetMs(s, 60_000)).toBeLessThan(6_000);
      expect(staggerOffsetMs(s, 3_600_000)).toBeLessThan(30_000);
      expect(staggerOffsetMs(s, 3_600_000)).toBeGreaterThanOrEqual(0);
      expect(staggerOffsetMs(s, 0)).toBe(0);
    }
  });
});

describe('nextDue', () => {
  const T = Date.UTC(2024, 0, 15, 10, 0, 0);

  it('interval probes: the epoch-aligned slot plus the offset, strictly after `after`, and the first such', () => {
    for (const interval of [1000, 15_000, 60_000, 300_000]) {
      for (let i = 0; i < 40; i++) {
        const s = spec(`probe-${i}`, { intervalMs: interval });
        const offset = staggerOffsetMs(s);
        for (const after of [T, T + 1, T + offset, T + offset - 1, T + offset + 1, T + 12_345, T + interval - 1, 0]) {
          const due = nextDue(s, after);
          expect(due).toBeGreaterThan(after);
          expect(due - after).toBeLessThanOrEqual(interval);
          expect((due - offset) % interval).toBe(0);
        }
      }
    }
  });

  it('interval probes: exactly on a due time gives the next slot', () => {
    const s = spec('exact', { intervalMs: 10_000 });
    const due = nextDue(s, T);
    expect(nextDue(s, due)).toBe(due + 10_000);
    expect(nextDue(s, due - 1)).toBe(due);
  });

  it('cron probes: a cron slot plus an offset below min(10% of the gap, 30 s), strictly after `after`', () => {
    const cases: Array<[string, number]> = [
      ['* * * * *', 60_000],
      ['*/5 * * * *', 300_000],
      ['0 * * * *', 3_600_000],
    ];
    for (const [pattern, gap] of cases) {
      const cron = new Cron(pattern, { paused: true });
      for (let i = 0; i < 30; i++) {
        const s = cronSpec(`cron-${i}`, pattern);
        const offset = staggerOffsetMs(s, gap);
        expect(offset).toBeLessThan(Math.min(gap * 0.1, 30_000));
        for (const after of [T, T + 1, T + offset, T + offset - 1, T + 61_000, T + gap - 1]) {
          const due = nextDue(s, after, cron);
          expect(due).toBe(nextDue(s, after)); // same with a fresh Cron
          expect(due).toBeGreaterThan(after);
          const slot = due - offset;
          expect(slot % gap).toBe(0); // UTC-aligned slot (these patterns have whole-minute/hour slots)
          // The first such time: the previous slot's staggered time is not after `after`.
          expect(slot - gap + offset).toBeLessThanOrEqual(after);
        }
      }
    }
  });

  it('cron: a slot just passed whose staggered time is still ahead is the one returned', () => {
    const s = cronSpec('late-slot', '0 * * * *');
    const offset = staggerOffsetMs(s, 3_600_000);
    expect(offset).toBeGreaterThan(0);
    // Just after the 10:00 slot, but before 10:00 + offset: the 10:00 run is still pending.
    const after = T + Math.floor(offset / 2);
    expect(nextDue(s, after)).toBe(T + offset);
  });

  it('cron with no future run is Infinity', () => {
    const s = cronSpec('never', '2000-01-01T00:00:00Z'); // croner: an ISO date is a one-off run, long past
    expect(nextDue(s, T)).toBe(Infinity);
  });
});

// ---------------------------------------------------------------------------------------------
// The Scheduler, on fake timers
// ---------------------------------------------------------------------------------------------

interface RunRecord {
  spec: ProbeSpec;
  signal: AbortSignal;
  startedAt: number;
  finish: () => void;
  ended: boolean;
}

/** Hooks that record everything and let a test decide when each run ends. */
function harness(opts: { concurrency?: number; honourSignal?: boolean; autoFinishMs?: number } = {}) {
  const runs: RunRecord[] = [];
  const skips: string[] = [];
  const starts: Array<{ name: string; lag: number; at: number }> = [];
  const inFlightReports: number[] = [];
  const active = new Map<string, number>();
  let maxActivePerProbe = 0;
  let activeTotal = 0;
  let maxActiveTotal = 0;

  const scheduler = new Scheduler({
    concurrency: opts.concurrency ?? 100,
    log,
    random: () => 0, // no jitter: due times are exact
    hooks: {
      run(s, shutdown) {
        activeTotal++;
        maxActiveTotal = Math.max(maxActiveTotal, activeTotal);
        active.set(s.name, (active.get(s.name) ?? 0) + 1);
        maxActivePerProbe = Math.max(maxActivePerProbe, active.get(s.name)!);
        return new Promise<void>((resolve) => {
          const rec: RunRecord = {
            spec: s,
            signal: shutdown,
            startedAt: Date.now(),
            ended: false,
            finish: () => {
              if (rec.ended) return;
              rec.ended = true;
              activeTotal--;
              active.set(s.name, active.get(s.name)! - 1);
              resolve();
            },
          };
          runs.push(rec);
          if (opts.honourSignal) shutdown.addEventListener('abort', () => setTimeout(rec.finish, 10), { once: true });
          if (opts.autoFinishMs !== undefined) setTimeout(rec.finish, opts.autoFinishMs);
        });
      },
      onSkip: (s) => skips.push(s.name),
      onStart: (s, lag) => starts.push({ name: s.name, lag, at: Date.now() }),
      onInFlight: (n) => inFlightReports.push(n),
    },
  });
  return {
    scheduler,
    runs,
    skips,
    starts,
    inFlightReports,
    get maxActivePerProbe() {
      return maxActivePerProbe;
    },
    get maxActiveTotal() {
      return maxActiveTotal;
    },
    runsOf: (name: string) => runs.filter((r) => r.spec.name === name),
  };
}

/** Stops on fake timers: lets the grace period pass so stop() always settles. */
async function stopNow(scheduler: Scheduler, graceMs: number): Promise<boolean> {
  const p = scheduler.stop(graceMs);
  await vi.advanceTimersByTimeAsync(graceMs + 1);
  return p;
}

// An instant aligned on every interval used here, so due times are easy to reason about.
const T0 = Date.UTC(2024, 0, 15, 10, 0, 0);

describe('Scheduler', () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: T0 });
  });
  afterEach(async () => {
    vi.clearAllTimers();
    vi.useRealTimers();
  });

  it('runs an interval probe at each due time, with zero lag', async () => {
    const h = harness({ autoFinishMs: 100 });
    const s = spec('steady', { intervalMs: 10_000 });
    const due = nextDue(s, T0);
    h.scheduler.update([s]);
    await vi.advanceTimersByTimeAsync(due - T0 - 1);
    expect(h.runs).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(h.runs).toHaveLength(1);
    expect(h.runs[0].startedAt).toBe(due);
    await vi.advanceTimersByTimeAsync(30_000);
    expect(h.runs.map((r) => r.startedAt)).toEqual([due, due + 10_000, due + 20_000, due + 30_000]);
    expect(h.starts.every((x) => x.lag === 0)).toBe(true);
    expect(h.skips).toEqual([]);
    expect(await stopNow(h.scheduler, 1000)).toBe(true);
  });

  it('skips a due run while the previous run of the probe is still going, and never overlaps runs of one probe', async () => {
    const h = harness();
    const s = spec('slow', { intervalMs: 1000 });
    const due = nextDue(s, T0);
    h.scheduler.update([s]);
    await vi.advanceTimersByTimeAsync(due - T0);
    expect(h.runs).toHaveLength(1);
    // The run takes 3.5 intervals: the next three due runs are skipped.
    await vi.advanceTimersByTimeAsync(3500);
    expect(h.runs).toHaveLength(1);
    expect(h.skips).toEqual(['slow', 'slow', 'slow']);
    h.runs[0].finish();
    await vi.advanceTimersByTimeAsync(0);
    // The next slot after the run ended runs normally, at its own due time.
    await vi.advanceTimersByTimeAsync(500);
    expect(h.runs).toHaveLength(2);
    expect(h.runs[1].startedAt).toBe(due + 4000);
    expect(h.skips).toHaveLength(3);
    expect(h.maxActivePerProbe).toBe(1);
    h.runs[1].finish();
    await stopNow(h.scheduler, 100);
  });

  it('with many slow probes, never runs two of the same probe at once', async () => {
    const h = harness({ autoFinishMs: 2500 });
    const specs = Array.from({ length: 20 }, (_, i) => spec(`p${i}`, { intervalMs: 1000 }));
    h.scheduler.update(specs);
    await vi.advanceTimersByTimeAsync(20_000);
    expect(h.maxActivePerProbe).toBe(1);
    expect(h.skips.length).toBeGreaterThan(0);
    // Each probe ran about every 3 s (2.5 s run, then the next free slot).
    for (const s of specs) expect(h.runsOf(s.name).length).toBeGreaterThanOrEqual(5);
    await stopNow(h.scheduler, 5000);
  });

  it('caps concurrency: with a cap of 2, five due probes run two at a time, the rest queued', async () => {
    const h = harness({ concurrency: 2 });
    const specs = Array.from({ length: 5 }, (_, i) => spec(`capped-${i}`, { intervalMs: 10_000 }));
    const dues = new Map(specs.map((s) => [s.name, nextDue(s, T0)]));
    const order = [...specs].sort((a, b) => dues.get(a.name)! - dues.get(b.name)!);
    const lastDue = Math.max(...dues.values());
    h.scheduler.update(specs);

    await vi.advanceTimersByTimeAsync(lastDue - T0);
    // All five are due; only the first two have started.
    expect(h.runs.map((r) => r.spec.name)).toEqual(order.slice(0, 2).map((s) => s.name));
    expect(h.scheduler.queued).toBe(3);
    expect(h.starts.map((x) => x.lag)).toEqual([0, 0]);

    // Five seconds later, one ends: the earliest queued probe starts, its lag is its wait.
    await vi.advanceTimersByTimeAsync(5000);
    const t1 = Date.now();
    h.runs[0].finish();
    await vi.advanceTimersByTimeAsync(0);
    expect(h.runs).toHaveLength(3);
    expect(h.runs[2].spec.name).toBe(order[2].name);
    expect(h.starts[2].lag).toBeCloseTo((t1 - dues.get(order[2].name)!) / 1000, 6);
    expect(h.starts[2].lag).toBeGreaterThanOrEqual(5);
    expect(h.scheduler.queued).toBe(2);

    // Finish the rest one at a time.
    for (let i = 1; i < 5; i++) {
      h.runs[i].finish();
      await vi.advanceTimersByTimeAsync(0);
    }
    expect(h.runs).toHaveLength(5);
    expect(new Set(h.runs.map((r) => r.spec.name)).size).toBe(5);
    expect(h.scheduler.queued).toBe(0);
    expect(h.maxActiveTotal).toBe(2);
    expect(Math.max(...h.inFlightReports)).toBe(2);
    expect(h.inFlightReports.every((n) => n >= 0 && n <= 2)).toBe(true);
    // Queued runs started later than they were due, and the lag says so.
    for (const x of h.starts.slice(2)) expect(x.lag).toBeGreaterThan(0);
    for (const r of h.runs) r.finish();
    await stopNow(h.scheduler, 100);
  });

  it('a probe waiting in the queue is skipped (not queued twice) when its next slot comes', async () => {
    const h = harness({ concurrency: 1 });
    const a = spec('hog', { intervalMs: 60_000 });
    const b = spec('waiter', { intervalMs: 1000 });
    h.scheduler.update([a]);
    await vi.advanceTimersByTimeAsync(nextDue(a, T0) - T0);
    expect(h.runsOf('hog')).toHaveLength(1);
    h.scheduler.update([a, b]);
    await vi.advanceTimersByTimeAsync(5000);
    // 'waiter' became due at most once per second; it holds at most one place in the queue.
    expect(h.scheduler.queued).toBeLessThanOrEqual(1);
    expect(h.skips.filter((n) => n === 'waiter').length).toBeGreaterThanOrEqual(3);
    h.runsOf('hog')[0].finish();
    await vi.advanceTimersByTimeAsync(0);
    expect(h.runsOf('waiter')).toHaveLength(1);
    for (const r of h.runs) r.finish();
    await stopNow(h.scheduler, 100);
  });

  it('update() with an unchanged schedule keeps the timer but uses the new spec at the next run', async () => {
    const h = harness({ autoFinishMs: 10 });
    const v1 = spec('reloaded', { intervalMs: 10_000, config: { v: 1 }, labels: { team: 'a' }, digest: 'v1' });
    const v2 = { ...v1, config: { v: 2 }, labels: { team: 'b' }, digest: 'v2', description: 'changed' };
    const due = nextDue(v1, T0);
    h.scheduler.update([v1]);
    await vi.advanceTimersByTimeAsync(due - T0 + 100);
    expect(h.runs).toHaveLength(1);
    expect(h.runs[0].spec).toBe(v1);
    const timersBefore = vi.getTimerCount();

    h.scheduler.update([v2]);
    expect(vi.getTimerCount()).toBe(timersBefore);
    // No extra run: the next one is at the next slot, and only one.
    await vi.advanceTimersByTimeAsync(10_000 - 100 - 1);
    expect(h.runs).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(h.runs).toHaveLength(2);
    expect(h.runs[1].startedAt).toBe(due + 10_000);
    expect(h.runs[1].spec).toBe(v2);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(h.runs).toHaveLength(3);
    await stopNow(h.scheduler, 100);
  });

  it('update() with a changed schedule re-arms the probe on its new schedule', async () => {
    const h = harness({ autoFinishMs: 10 });
    const v1 = spec('rescheduled', { intervalMs: 10_000 });
    const v2 = { ...v1, intervalMs: 60_000 };
    h.scheduler.update([v1]);
    await vi.advanceTimersByTimeAsync(nextDue(v1, T0) - T0 + 100);
    expect(h.runs).toHaveLength(1);
    const now = Date.now();
    h.scheduler.update([v2]);
    const due2 = nextDue(v2, now);
    await vi.advanceTimersByTimeAsync(due2 - now);
    expect(h.runs.map((r) => r.startedAt)).toEqual([nextDue(v1, T0), due2]);
    expect(h.runs[1].spec).toBe(v2);
    await stopNow(h.scheduler, 100);
  });

  it('update() rescheduling a probe while it runs does not start a second concurrent run of it', async () => {
    const h = harness();
    const v1 = spec('resched-busy', { intervalMs: 1000 });
    h.scheduler.update([v1]);
    await vi.advanceTimersByTimeAsync(nextDue(v1, T0) - T0);
    expect(h.runs).toHaveLength(1);
    h.scheduler.update([{ ...v1, intervalMs: 2000 }]);
    await vi.advanceTimersByTimeAsync(5000);
    expect(h.maxActivePerProbe).toBe(1);
    expect(h.runs).toHaveLength(1);
    h.runs[0].finish();
    await vi.advanceTimersByTimeAsync(2000);
    expect(h.runs).toHaveLength(2);
    expect(h.maxActivePerProbe).toBe(1);
    for (const r of h.runs) r.finish();
    await stopNow(h.scheduler, 100);
  });

  it('a probe removed and re-added by reloads while its run goes on does not get a second run alongside', async () => {
    const h = harness();
    const s = spec('flapping', { intervalMs: 1000 });
    h.scheduler.update([s]);
    await vi.advanceTimersByTimeAsync(1000);
    expect(h.runs).toHaveLength(1);
    h.scheduler.update([]);
    await vi.advanceTimersByTimeAsync(1000);
    h.scheduler.update([{ ...s, digest: 'again' }]);
    await vi.advanceTimersByTimeAsync(3000);
    expect(h.runs).toHaveLength(1);
    expect(h.skips.length).toBeGreaterThanOrEqual(2);
    h.runs[0].finish();
    await vi.advanceTimersByTimeAsync(1000);
    expect(h.runs).toHaveLength(2);
    expect(h.runs[1].spec.digest).toBe('again');
    expect(h.maxActivePerProbe).toBe(1);
    for (const r of h.runs) r.finish();
    await stopNow(h.scheduler, 100);
  });

  it('a removed probe never runs again, even one waiting in the queue', async () => {
    const h = harness({ concurrency: 1 });
    const keep = spec('keep', { intervalMs: 10_000 });
    const gone = spec('gone', { intervalMs: 10_000 });
    const queued = spec('queued-then-removed', { intervalMs: 10_000 });
    h.scheduler.update([keep, gone, queued]);
    // Let all three come due once while the first one to start holds the only slot.
    await vi.advanceTimersByTimeAsync(10_000);
    expect(h.runs).toHaveLength(1);
    expect(h.scheduler.queued).toBe(2);
    const first = h.runs[0].spec.name;
    const removed = [gone, queued].map((s) => s.name).filter((n) => n !== first);

    h.scheduler.update([keep]);
    expect(vi.getTimerCount()).toBe(1); // only keep's timer is left
    expect(h.scheduler.queued).toBe(first === 'keep' ? 0 : 1);
    for (const r of h.runs) r.finish();
    for (let i = 0; i < 10; i++) {
      await vi.advanceTimersByTimeAsync(10_000);
      for (const r of h.runs) r.finish();
    }
    for (const name of removed) {
      expect(h.runsOf(name)).toHaveLength(0);
    }
    if (first !== 'keep') expect(h.runsOf(first)).toHaveLength(1);
    expect(h.runsOf('keep').length).toBeGreaterThanOrEqual(9);
    expect(h.scheduler.queued).toBe(0);
    await stopNow(h.scheduler, 100);
  });

  it('stop(grace) aborts runs in flight through the shutdown signal and resolves true when they end', async () => {
    const h = harness({ honourSignal: true });
    const specs = [spec('s1', { intervalMs: 1000 }), spec('s2', { intervalMs: 1000 })];
    h.scheduler.update(specs);
    await vi.advanceTimersByTimeAsync(1000);
    expect(h.runs).toHaveLength(2);
    expect(h.runs.every((r) => !r.signal.aborted)).toBe(true);
    const stopped = h.scheduler.stop(5000);
    expect(h.scheduler.isRunning).toBe(false);
    expect(h.runs.every((r) => r.signal.aborted)).toBe(true);
    await vi.advanceTimersByTimeAsync(10);
    await expect(stopped).resolves.toBe(true);
    expect(vi.getTimerCount()).toBe(0);
    // Nothing runs after stop, and update() is ignored.
    h.scheduler.update([spec('late', { intervalMs: 1000 })]);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(h.runs).toHaveLength(2);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('stop(grace) resolves false when a run ignores the signal past the grace, and leaves no timers', async () => {
    const h = harness();
    h.scheduler.update([spec('stubborn', { intervalMs: 1000 }), spec('idle', { intervalMs: 3_600_000 })]);
    await vi.advanceTimersByTimeAsync(1000);
    expect(h.runsOf('stubborn')).toHaveLength(1);
    let result: boolean | undefined;
    void h.scheduler.stop(2000).then((r) => (result = r));
    await vi.advanceTimersByTimeAsync(1999);
    expect(result).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1);
    expect(result).toBe(false);
    expect(vi.getTimerCount()).toBe(0);
    // The stubborn run ending later starts nothing.
    h.runs[0].finish();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(h.runs).toHaveLength(1);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('stop() with nothing in flight resolves true at once and clears every timer; queued runs never start', async () => {
    const h = harness({ concurrency: 1 });
    h.scheduler.update(Array.from({ length: 3 }, (_, i) => spec(`q${i}`, { intervalMs: 1000 })));
    await vi.advanceTimersByTimeAsync(1000);
    expect(h.runs).toHaveLength(1);
    expect(h.scheduler.queued).toBe(2);
    const stopped = h.scheduler.stop(1000);
    h.runs[0].finish();
    await expect(stopped).resolves.toBe(true);
    await vi.advanceTimersByTimeAsync(5000);
    expect(h.runs).toHaveLength(1);
    expect(vi.getTimerCount()).toBe(0);

    const idle = harness();
    idle.scheduler.update([spec('x', { intervalMs: 60_000 }), cronSpec('y', '*/5 * * * *')]);
    expect(vi.getTimerCount()).toBe(2);
    await expect(idle.scheduler.stop(1000)).resolves.toBe(true);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('runs a cron probe at its cron slot plus its offset', async () => {
    const h = harness({ autoFinishMs: 10 });
    const s = cronSpec('cron-probe', '*/5 * * * *');
    const offset = staggerOffsetMs(s, 300_000);
    h.scheduler.update([s]);
    await vi.advanceTimersByTimeAsync(15 * 60_000);
    const expected = [T0 + 300_000, T0 + 600_000, T0 + 900_000].map((t) => t + offset).filter((t) => t <= T0 + 900_000);
    // The T0 slot itself: its staggered time T0 + offset is after T0, so it runs too (if offset > 0).
    if (offset > 0) expected.unshift(T0 + offset);
    expect(h.runs.map((r) => r.startedAt)).toEqual(expected);
    await stopNow(h.scheduler, 100);
  });

  it('adds at most 1% (capped at 1 s) of random jitter to the due time, and lag counts from the due time', async () => {
    const starts: Array<{ at: number; lag: number }> = [];
    const scheduler = new Scheduler({
      concurrency: 10,
      log,
      random: () => 0.999,
      hooks: {
        run: async () => {},
        onSkip: () => {},
        onStart: (_s, lag) => starts.push({ at: Date.now(), lag }),
        onInFlight: () => {},
      },
    });
    const s = spec('jittery', { intervalMs: 10_000 });
    const due = nextDue(s, T0);
    scheduler.update([s]);
    await vi.advanceTimersByTimeAsync(due - T0 + 200);
    expect(starts).toHaveLength(1);
    expect(starts[0].at - due).toBe(99); // floor(0.999 * 100)
    expect(starts[0].lag).toBeCloseTo(0.099, 6);
    await stopNow(scheduler, 100);
  });
});
