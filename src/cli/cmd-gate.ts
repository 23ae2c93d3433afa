import { UsageError } from '../core/errors.js';
import { type Args, durationArg, positiveInt } from './args.js';
import { runGate } from './gate.js';
import { withManyProbes } from './many-probes.js';
import { failAfterBar } from './tally.js';

/** `fleetprobe gate`: the selected probes (default: all) repeated for a period after a deploy. */
export async function cmdGate(args: Args): Promise<number> {
  const forMs = durationArg('for', args.values.for, 5 * 60_000);
  const everyMs = durationArg('every', args.values.every, 30_000);
  // Shorter beats would measure the machine, not the platform (probe intervals are at least 1s too).
  if (everyMs < 1000) throw new UsageError(`--every must be at least 1s, got "${args.values.every}"`);
  const failAfter = positiveInt('fail-after', args.values['fail-after'], 2);
  const bar = failAfterBar(failAfter, { for: `${forMs / 1000}s`, every: `${everyMs / 1000}s` });
  return withManyProbes(args, 'gate', bar, (m) => runGate(m, { forMs, everyMs, failAfter }));
}
