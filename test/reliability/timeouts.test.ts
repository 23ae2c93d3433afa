import dns from 'node:dns/promises';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { defineKind, type ProbeKind, type ProbeSpec } from '../../src/core/kind.js';
import { runProbe } from '../../src/core/run.js';
import { KINDS } from '../../src/kinds/index.js';
import { startLab, type Lab } from '../../src/lab/index.js';
import { Scheduler } from '../../src/daemon/scheduler.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { caseTitle, type KindEnv, MATRIX, type MatrixCase, runCase, startMatrixEnvs } from './matrix-cases.js';

/**
 * Timeouts hold: a target that stalls in any phase ends the run within its timeout plus 100 ms, and
 * a stuck probe never delays another probe's schedule.
 *
 * The stall rows are the matrix's `timeout` rows (so a new kind's stalls are covered by adding its
 * matrix rows), plus stalls no peer can produce on loopback: a resolver that never answers (the
 * system resolver cannot be made to hang portably, so dns.lookup is replaced) and a kind that
 * ignores its abort signal altogether. A SYN that is never answered cannot be made on loopback (the
 * kernel answers for every listening port), so a stalled `connect` is not covered here.
 */

const TIMEOUT_MS = 600;
const MARGIN_MS = 100;
const log = pino({ level: 'silent' });
let lab: Lab;
let envs = new Map<string, KindEnv>();
let closeEnvs = async () => {};

beforeAll(async () => {
  lab = await startLab();
  ({ envs, close: closeEnvs } = await startMatrixEnvs(lab, log));
}, 60_000);

afterAll(async () => {
  await closeEnvs();
  await lab?.close();
});

/** A kind that never settles and never looks at its signal: the worst a kind could do. */
const deafKind = defineKind({
  kind: 'deaf',
  description: 'never settles, ignores its signal',
  phases: ['wait'],
  reasons: [],
  schema: z.object({}),
  run: (ctx) => ctx.phase('wait', () => new Promise<void>(() => {})),
}) as unknown as ProbeKind;

function fakeSpec(name: string, timeoutMs: number, intervalMs = 60_000): ProbeSpec {
  return { name, kind: 'deaf', intervalMs, timeoutMs, labels: {}, source: { file: 'timeouts.test.ts' }, config: {}, digest: name };
}

const stalls = MATRIX.flatMap((k) => k.cases.filter((c) => c.expect !== 'pass' && c.expect.reason === 'timeout'));

async function stallEndsInTime(c: MatrixCase): Promise<void> {
  const { result, elapsedMs, proxy } = await runCase(c, envs.get(c.kind)!, lab, { log, timeoutMs: TIMEOUT_MS });
  try {
    expect({ reason: result.reason, phase: result.phase }).toEqual(c.expect);
    expect(elapsedMs).toBeGreaterThanOrEqual(TIMEOUT_MS - 5);
    expect(elapsedMs).toBeLessThanOrEqual(TIMEOUT_MS + MARGIN_MS);
    expect(result.durationSeconds * 1000).toBeLessThanOrEqual(TIMEOUT_MS + MARGIN_MS);
    await proxy?.idle(2000);
  } finally {
    await proxy?.close();
  }
}

// Lab faults are lab-wide: those rows one at a time. Rows with their own fault proxy run a few at
// once (stalls wait on timers, not on the CPU).
describe('a stall in any phase ends the run within the timeout + 100 ms (lab faults)', () => {
  it.each(stalls.filter((c) => c.labFaults?.length).map((c) => [caseTitle(c), c] as const))('%s', (_t, c) => stallEndsInTime(c));
});

describe.concurrent('a stall in any phase ends the run within the timeout + 100 ms (fault proxy)', () => {
  it.each(stalls.filter((c) => !c.labFaults?.length).map((c) => [caseTitle(c), c] as const))('%s', (_t, c) => stallEndsInTime(c));
});

describe('stalls no peer can make', () => {
  it.each(MATRIX.map((k) => k.kind))('%s: a resolver that never answers → timeout in resolve', async (kind) => {
    const env = envs.get(kind)!;
    const spy = vi.spyOn(dns, 'lookup').mockImplementation(() => new Promise(() => {}));
    try {
      const [target, port] = Object.entries(env.targets)[0];
      const spec = env.spec({ target, port, timeoutMs: TIMEOUT_MS, unresolvable: true });
      const t0 = performance.now();
      const r = await runProbe(spec, KINDS[kind], { log });
      const elapsed = performance.now() - t0;
      expect(spy).toHaveBeenCalled();
      // A kind that folds its dialling into one phase of its own (device-status: `api`) reports that.
      const phase = KINDS[kind].phases.includes('resolve') ? 'resolve' : KINDS[kind].phases[0];
      expect({ reason: r.reason, phase: r.phase }).toEqual({ reason: 'timeout', phase });
      expect(elapsed).toBeLessThanOrEqual(TIMEOUT_MS + MARGIN_MS);
    } finally {
      spy.mockRestore();
    }
  });

  it('a kind that ignores its signal and never settles', async () => {
    const t0 = performance.now();
    const r = await runProbe(fakeSpec('deaf', TIMEOUT_MS), deafKind, { log });
    expect({ reason: r.reason, phase: r.phase }).toEqual({ reason: 'timeout', phase: 'wait' });
    expect(performance.now() - t0).toBeLessThanOrEqual(TIMEOUT_MS + MARGIN_MS);
  });
});

describe('a stuck probe never delays another probe', () => {
  it('the fast probe starts on time with and without stuck probes beside it', async () => {
    const blackholes: FaultProxy[] = [];
    const lags = { alone: [] as number[], beside: [] as number[] };
    let phase: keyof typeof lags = 'alone';
    const kindOf = (s: ProbeSpec) => (s.kind === 'deaf' ? deafKind : KINDS[s.kind]);
    const scheduler = new Scheduler({
      // Room for every stuck probe (3 per kind and one deaf) and the fast ones: this is about the
      // event loop and the scheduler, not about the concurrency cap, which stuck probes could fill.
      concurrency: 4 * envs.size + 2,
      log,
      random: () => 0,
      hooks: {
        run: async (spec, shutdown) => void (await runProbe(spec, kindOf(spec), { shutdown, log })),
        onSkip: () => {},
        onStart: (spec, lag) => {
          if (spec.name.startsWith('fast-')) lags[phase].push(lag * 1000);
        },
        onInFlight: () => {},
      },
    });
    try {
      // A healthy probe of every kind, every 200 ms.
      const fast: ProbeSpec[] = [];
      const stuck: ProbeSpec[] = [fakeSpec('stuck-deaf', 900, 1000)];
      for (const [kind, env] of envs) {
        const [target, port] = Object.entries(env.targets)[0];
        fast.push({ ...env.spec({ target, port, timeoutMs: 150, name: `fast-${kind}` }), intervalMs: 200 });
        const hole = await startFaultProxy({ port }, { type: 'blackhole' });
        blackholes.push(hole);
        // Stuck probes of every kind: each run hangs until its timeout, back to back.
        for (let i = 0; i < 3; i++) stuck.push({ ...env.spec({ target, port: hole.port, timeoutMs: 900, name: `stuck-${kind}-${i}` }), intervalMs: 1000 });
      }
      scheduler.update(fast);
      await new Promise((r) => setTimeout(r, 2000));
      phase = 'beside';
      scheduler.update([...fast, ...stuck]);
      await new Promise((r) => setTimeout(r, 3000));

      const max = (xs: number[]) => Math.max(...xs);
      expect(lags.alone.length).toBeGreaterThan(5);
      expect(lags.beside.length).toBeGreaterThan(10);
      // Timer granularity and a busy CI core allow some lag; a stuck probe holding a slot or the
      // event loop would add its whole timeout (900 ms).
      expect(max(lags.beside), `lags alone ${lags.alone.map(Math.round)} beside ${lags.beside.map(Math.round)}`).toBeLessThan(
        Math.max(max(lags.alone) + 30, 50),
      );
    } finally {
      await scheduler.stop(2000);
      for (const b of blackholes) await b.close();
    }
  }, 20_000);
});
