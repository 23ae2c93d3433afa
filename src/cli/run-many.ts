import pLimit from 'p-limit';
import type { ManyProbes } from './many-probes.js';
import { runCollected } from './probe-run.js';
import type { Outcome } from './report.js';
import type { Bar } from './tally.js';

/**
 * `fleetprobe run` with many probes: every selected probe `repeat` times, its runs one after the
 * other, at most `concurrency` runs at once across probes. Each run is reported as it ends.
 */
export async function runMany(m: ManyProbes, repeat: number, bar: Bar): Promise<Outcome> {
  const limit = pLimit(m.concurrency);
  const stopped = m.interrupted;
  await Promise.all(
    m.specs.map(async (spec) => {
      for (let attempt = 1; attempt <= repeat && !stopped.aborted; attempt++) {
        // A run still queued for a slot when Ctrl-C comes never starts.
        const rec = await limit(() => (stopped.aborted ? undefined : runCollected(spec, m.all, attempt, { shutdown: stopped, log: m.log })));
        if (!rec) return;
        m.report.record(rec);
        if (!rec.result.aborted) m.report.printRun(rec, { of: repeat });
      }
    }),
  );
  const interrupted = stopped.aborted;
  const success = !interrupted && m.report.tallies.list.every((t) => bar.met(t));
  return { success, interrupted, verdict: interrupted ? 'interrupted: the report holds the runs that ended' : undefined };
}
