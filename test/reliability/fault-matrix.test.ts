import fs from 'node:fs';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROBER_REASONS } from '../../src/core/kind.js';
import { KINDS } from '../../src/kinds/index.js';
import { startLab, type Lab } from '../../src/lab/index.js';
import { declaredReasons } from '../../src/metrics/probe-layout.js';
import { ROOT } from '../helpers/cli.js';
import { type CaseRun, caseTitle, type KindEnv, MATRIX, type MatrixCase, runCase, startMatrixEnvs } from './matrix-cases.js';
import { MATRIX_DOC, renderMatrix, withMatrix } from './matrix-docs.js';

/**
 * Every row of the fault matrix, run for real against the lab and the kinds' peers through the
 * fault proxy: the exact reason and phase, no faulted row ever passing, every degraded-but-working
 * row passing, and nothing left open through the proxy afterwards.
 */

const log = pino({ level: 'silent' });
let lab: Lab;
let envs = new Map<string, KindEnv>();
let closeEnvs = async () => {};
const runs = new Map<MatrixCase, CaseRun>();

beforeAll(async () => {
  lab = await startLab();
  ({ envs, close: closeEnvs } = await startMatrixEnvs(lab, log));
  const cases = MATRIX.flatMap((k) => k.cases);
  // Proxy faults are per case (one proxy each): run those together. Lab faults are lab-wide: after
  // them, one at a time, so no other case sees them.
  const own = cases.filter((c) => !c.labFaults?.length);
  await Promise.all(own.map(async (c) => runs.set(c, await runCase(c, envs.get(c.kind)!, lab, { log }))));
  for (const c of cases.filter((c) => c.labFaults?.length)) runs.set(c, await runCase(c, envs.get(c.kind)!, lab, { log }));
}, 60_000);

afterAll(async () => {
  for (const r of runs.values()) await r.proxy?.close();
  await closeEnvs();
  await lab?.close();
});

for (const k of MATRIX) {
  describe(`fault matrix: ${k.kind}`, () => {
    it.each(k.cases.map((c) => [caseTitle(c), c] as const))('%s', async (_title, c) => {
      const { result } = runs.get(c)!;
      const seen = { success: result.success, reason: result.reason, phase: result.phase };
      if (c.expect === 'pass') {
        expect(seen, result.message ?? '').toEqual({ success: true, reason: null, phase: null });
      } else {
        expect(seen, result.message ?? '').toEqual({ success: false, reason: c.expect.reason, phase: c.expect.phase });
        expect(result.aborted).toBe(false);
        // A failure says what happened, in one bounded line.
        expect(result.message).toBeTruthy();
        expect(result.message!.length).toBeLessThanOrEqual(512);
        expect(result.message).not.toMatch(/\n/);
      }
      // Whatever happened, the probe let go of every connection it made (slow-close rows hold the
      // server side open on purpose for a while, hence the wait).
      await runs.get(c)!.proxy?.idle(5000);
    });
  });
}

describe('fault matrix: declared reasons', () => {
  // Only declared reasons have series at 0 before the first failure (docs/metrics.md): a reason a
  // kind produces without declaring it would miss its first failure in rate() and log a warning.
  it('every reason a run of the matrix failed with is one its kind declares (or a prober reason)', () => {
    const undeclared: string[] = [];
    for (const [c, { result }] of runs) {
      if (result.success || result.aborted || !result.reason) continue;
      const ok = declaredReasons(KINDS, c.kind).has(result.reason as never) || (PROBER_REASONS as readonly string[]).includes(result.reason);
      if (!ok) undeclared.push(`${c.kind}: ${result.reason} (${caseTitle(c)})`);
    }
    expect(runs.size).toBe(MATRIX.flatMap((k) => k.cases).length);
    expect(undeclared).toEqual([]);
  });
});

describe('fault matrix: the table itself', () => {
  it('has a healthy pass-through row and faulted rows for every kind, none of which may pass', () => {
    for (const k of MATRIX) {
      expect(
        k.cases.some((c) => c.fault === 'healthy path' && c.expect === 'pass' && !c.proxy),
        k.kind,
      ).toBe(true);
      const faulted = k.cases.filter((c) => c.expect !== 'pass');
      expect(faulted.length, k.kind).toBeGreaterThan(5);
      // Pass rows only for conditions a working path may show (slow, narrow, late to close, an odd
      // but valid dialect): never a reset, a blackhole or a stall.
      for (const c of k.cases.filter((c) => c.expect === 'pass')) {
        expect(['reset', 'blackhole', 'half-open'], c.fault).not.toContain(typeof c.proxy === 'object' ? c.proxy.type : 'computed');
        expect(c.proxyTo, c.fault).toBeUndefined();
      }
    }
  });

  it(`the fault matrix in ${MATRIX_DOC} is generated from this table (npm run docs:matrix)`, () => {
    const page = fs.readFileSync(path.join(ROOT, MATRIX_DOC), 'utf8');
    expect(page, `${MATRIX_DOC} is out of date: run \`npm run docs:matrix\``).toBe(withMatrix(page, renderMatrix()));
  });
});
