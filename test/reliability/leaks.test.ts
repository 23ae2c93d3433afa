import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProbeSpec } from '../../src/core/kind.js';
import type { Reason } from '../../src/core/reasons.js';
import { runProbe } from '../../src/core/run.js';
import { KINDS } from '../../src/kinds/index.js';
import { LAB_FAULTS } from '../../src/lab/index.js';
import { Scheduler } from '../../src/daemon/scheduler.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { startLabProcess, type LabProcess } from '../helpers/lab-process.js';
import { activeResources, heapAfterGc, settle } from '../helpers/resources.js';
import { type KindEnv, MATRIX, type MatrixCase, runCase, startMatrixEnvs } from './matrix-cases.js';

/**
 * Thousands of runs mixed over every kind and every fault of the matrix, in one process, then:
 * sockets, servers and timers back to where they were, and the heap after GC within 10% of its
 * level after the first tenth of the runs. FLEETPROBE_LEAK_RUNS=10000 runs the full form.
 *
 * New kinds join by being in MATRIX: their rows (except lab-fault rows, which are lab-wide and are
 * toggled in the background here instead) are the mix.
 */

const RUNS = Number(process.env.FLEETPROBE_LEAK_RUNS || 2000);
const CONCURRENCY = 32;
// Short, so stalled rows cost little; long enough for a healthy TLS run on a loaded CI machine.
const TIMEOUT_MS = 300;
// The heap after GC may sit this much above its level after the first tenth (noise of lazily
// compiled code, caches filled once). It catches a leak of about 1.5 KB per run at the default
// 2,000 runs and about 300 bytes per run in the full form; leaked sockets and timers are caught exactly.
const HEAP_SLACK = 0.1;

const log = pino({ level: 'silent' });
// The lab runs in a child process: its servers, sessions and fault timers are not ours to count.
let lab: LabProcess;
let envs = new Map<string, KindEnv>();
let closeEnvs = async () => {};

/** Deterministic, so a failure reproduces with the same mix (mulberry32). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Switches lab faults on and off at random while runs go on, so lab-fault rows are in the mix too. */
function toggleLabFaults(random: () => number, everyMs: number): () => Promise<void> {
  const names = Object.keys(LAB_FAULTS);
  let pending = Promise.resolve();
  const timer = setInterval(() => {
    const name = names[Math.floor(random() * names.length)];
    const on = random() < 0.3;
    pending = pending.then(() => lab.faults.set(name, on));
  }, everyMs);
  return async () => {
    clearInterval(timer);
    await pending;
    for (const n of names) await lab.faults.set(n, false);
  };
}

async function pool(count: number, concurrency: number, work: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) await work(next++);
    }),
  );
}

beforeAll(async () => {
  lab = await startLabProcess();
  ({ envs, close: closeEnvs } = await startMatrixEnvs(lab, log));
}, 60_000);

afterAll(async () => {
  await closeEnvs();
  await lab?.close();
});

describe('leaks', () => {
  it(`${RUNS} runs mixed over kinds and faults leave no socket, timer or heap behind`, async () => {
    const mix: MatrixCase[] = MATRIX.flatMap((k) => k.cases.filter((c) => !c.labFaults?.length));
    const random = prng(8);
    const reasons: Partial<Record<Reason | 'pass', number>> = {};
    const bad: string[] = [];

    const batch = async (from: number, count: number) => {
      const stopToggling = toggleLabFaults(random, 40);
      try {
        await pool(count, CONCURRENCY, async (i) => {
          const c = mix[Math.floor(random() * mix.length)];
          const { result, proxy } = await runCase(c, envs.get(c.kind)!, lab, { log, timeoutMs: TIMEOUT_MS, name: `leak-${from + i}` });
          await proxy?.close();
          const key = result.success ? 'pass' : result.reason!;
          reasons[key] = (reasons[key] ?? 0) + 1;
          if (result.reason === 'internal' || result.aborted) bad.push(`${c.fault}: ${JSON.stringify(result)}`);
        });
      } finally {
        await stopToggling();
      }
    };

    // Baseline after one warm-up run of every row: lazily loaded modules and caches are in place.
    await batch(0, mix.length);
    const baseline = activeResources();

    const tenth = Math.ceil(RUNS / 10);
    await batch(0, tenth);
    const heapAtTenth = await heapAfterGc();
    await batch(tenth, RUNS - tenth);

    expect(bad, 'no run may end as internal or aborted').toEqual([]);
    expect(await settle(baseline), `handles above baseline ${JSON.stringify(baseline)}`).toBeNull();
    const heapAtEnd = await heapAfterGc();
    const mb = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
    console.log(`leaks: ${RUNS} runs, outcomes ${JSON.stringify(reasons)}; heap after GC ${mb(heapAtTenth)} after ${tenth} runs, ${mb(heapAtEnd)} at the end`);
    expect(heapAtEnd, `heap grew from ${mb(heapAtTenth)} to ${mb(heapAtEnd)}`).toBeLessThanOrEqual(heapAtTenth * (1 + HEAP_SLACK));
    // The mix really was mixed: healthy passes and several kinds of failure.
    expect(reasons.pass ?? 0).toBeGreaterThan(0);
    expect(Object.keys(reasons).length).toBeGreaterThanOrEqual(4);
  }, 300_000);

  it('reloads under load: the old schedule stops completely, removed probes never run again', async () => {
    // Probes of every kind against its default target: half direct, half through a blackhole proxy,
    // so runs are in flight (stalled until their timeout) whenever a reload lands.
    const blackholes = new Map<string, FaultProxy>();
    for (const [kind, env] of envs) blackholes.set(kind, await startFaultProxy({ port: Object.values(env.targets)[0] }, { type: 'blackhole' }));
    const specFor = (name: string, kind: string, intervalMs: number, stalled: boolean): ProbeSpec => {
      const env = envs.get(kind)!;
      const [target, port] = Object.entries(env.targets)[0];
      const s = env.spec({ target, port: stalled ? blackholes.get(kind)!.port : port, timeoutMs: Math.floor(intervalMs * 0.8), name });
      return { ...s, intervalMs, digest: `${name}-${intervalMs}-${stalled}` };
    };

    const random = prng(9);
    const kinds = [...envs.keys()];
    const started: { name: string; at: number }[] = [];
    let inFlight = 0;
    const scheduler = new Scheduler({
      concurrency: 16,
      log,
      random: () => 0,
      hooks: {
        run: async (spec, shutdown) => {
          started.push({ name: spec.name, at: Date.now() });
          await runProbe(spec, KINDS[spec.kind], { shutdown, log });
        },
        onSkip: () => {},
        onStart: () => {},
        onInFlight: (n) => (inFlight = n),
      },
    });
    const baseline = activeResources();
    const generation = () =>
      Array.from({ length: 40 }, (_, i) => i)
        .filter(() => random() < 0.6)
        .map((i) => specFor(`reload-${i}`, kinds[i % kinds.length], 100 + Math.floor(random() * 4) * 50, i % 2 === 1));

    const reloads = 100;
    let heapAtTenth = 0;
    for (let r = 0; r < reloads; r++) {
      scheduler.update(generation());
      await new Promise((res) => setTimeout(res, 30));
      if (r === reloads / 10 - 1) heapAtTenth = await heapAfterGc();
    }
    // The last reload removes every probe: from here on nothing may start.
    scheduler.update([]);
    const removedAt = Date.now();
    const until = Date.now() + 5000;
    while (inFlight > 0 && Date.now() < until) await new Promise((res) => setTimeout(res, 20));
    expect(inFlight).toBe(0);
    // Longer than every interval used: a timer left armed for a removed probe would have fired.
    await new Promise((res) => setTimeout(res, 400));
    expect(started.filter((s) => s.at > removedAt)).toEqual([]);
    expect(started.length).toBeGreaterThan(200);

    for (const p of blackholes.values()) await p.close();
    expect(await settle(baseline), 'no timer or socket of the removed probes is left').toBeNull();
    const heapAtEnd = await heapAfterGc();
    expect(heapAtEnd).toBeLessThanOrEqual(heapAtTenth * (1 + HEAP_SLACK));
    expect(await scheduler.stop(1000)).toBe(true);
  }, 120_000);
});
