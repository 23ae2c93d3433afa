// The run history's memory (src/daemon/history.ts) at the scale benchmark's probe mix, in a
// process of its own (node --expose-gc): a RunHistory at the daemon's defaults, filled with 100
// runs per probe of each kind's real phases, measured as heap plus ArrayBuffers after full GCs
// against the same process before it. Issue 17's budget: at most 50 MB more at 11,500 probes.
import { dist, serveWorker } from './lib.mjs';

const { RunHistory, DEFAULT_HISTORY_LIMITS } = await dist('daemon/history.js');
const { KINDS } = await dist('kinds/index.js');

function used() {
  globalThis.gc();
  globalThis.gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

/** A run as runProbe reports it: every phase of the kind reached; a failure with a real-sized message and output. */
function result(name, kind, i, fail) {
  const phases = Object.fromEntries(KINDS[kind].phases.map((p, k) => [p, 0.001 * (k + 1) + i * 1e-5]));
  return {
    name,
    kind,
    success: !fail,
    aborted: false,
    reason: fail ? 'device_offline' : null,
    phase: fail ? KINDS[kind].phases.at(-1) : null,
    message: fail ? `the platform served its "cannot reach this device" page (HTTP 502) for ${name} at run ${i}` : null,
    durationSeconds: 0.02 + i * 1e-4,
    phases,
    startedAt: 1_800_000_000_000 + i * 60_000,
    observations: {},
    labels: {},
    output: fail ? [`<html><body>We encountered an error when reaching this device (${name})</body></html>`, 'retry later'] : undefined,
  };
}

serveWorker({
  /**
   * MB the history holds for `counts` probes × 100 runs; `fill`: `typical` has 2 failures of 100
   * per probe, `passes` none. One fill per process, so one cannot blur the other.
   */
  async measure({ counts, fill }) {
    const probes = Object.entries(counts).flatMap(([kind, n]) => Array.from({ length: n }, (_, i) => ({ name: `${kind}-${i}`, kind })));
    const failing = fill === 'typical' ? (/** @type {number} */ i) => i === 30 || i === 70 : () => false;
    const before = used();
    const h = new RunHistory(DEFAULT_HISTORY_LIMITS, (/** @type {string} */ kind) => KINDS[kind].phases);
    h.configure(probes);
    for (let i = 0; i < DEFAULT_HISTORY_LIMITS.runs; i++) for (const p of probes) h.record(result(p.name, p.kind, i, failing(i)));
    const mb = (used() - before) / 1e6;
    if (h.runs(probes.at(-1).name).length !== DEFAULT_HISTORY_LIMITS.runs) throw new Error('history not filled');
    return { mb, probes: probes.length, runs: DEFAULT_HISTORY_LIMITS.runs, failures: DEFAULT_HISTORY_LIMITS.failures };
  },
});
