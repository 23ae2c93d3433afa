import { setMaxListeners } from 'node:events';
import type { Logger } from 'pino';
import { loadConfig } from '../config/load.js';
import type { ProbeSpec } from '../core/kind.js';
import { createLogger } from '../core/log.js';
import { type Args, configPathsFor, EXIT, logLevel, maybeLab, positiveInt } from './args.js';
import { JunitFile } from './junit.js';
import { Report, type Outcome } from './report.js';
import { selectionFrom, selectProbes } from './select.js';
import type { Bar } from './tally.js';

/** What `run` (many probes) and `gate` share once the probes are chosen. */
export interface ManyProbes {
  /** The selected probes. */
  specs: ProbeSpec[];
  /** Every configured probe (companions are looked up here). */
  all: ProbeSpec[];
  log: Logger;
  /** Aborted by Ctrl-C: runs in flight end as aborted, no new run starts. */
  interrupted: AbortSignal;
  report: Report;
  concurrency: number;
  /** The embedded lab's control URL, with --lab. */
  labControl?: string;
}

/** Default --concurrency of run and gate: a burst of CI checks, not the daemon's steady 64. */
const DEFAULT_CONCURRENCY = 8;

/**
 * Sets up a many-probe command in the order that keeps bad input cheap: usage errors, then the
 * configuration and the selection (exit 2 with what there is), then the report file (exit 2 if
 * it cannot be written), and only then any run. Ctrl-C (or SIGTERM) stops the runs and the report
 * is still written, with what ran; a second signal exits at once.
 */
export async function withManyProbes(args: Args, mode: 'run' | 'gate', bar: Bar, body: (m: ManyProbes) => Promise<Outcome>): Promise<number> {
  const selection = selectionFrom(args, mode);
  const concurrency = positiveInt('concurrency', args.values.concurrency, DEFAULT_CONCURRENCY);
  const log = createLogger({ level: logLevel(args, 'warn'), fd: 2 });
  const lab = await maybeLab(args, log);
  const interrupt = new AbortController();
  // Every run in flight (and every gate's wait) listens on it: not a leak.
  setMaxListeners(0, interrupt.signal);
  // Ctrl-C, or SIGTERM from a CI runner or Kubernetes cancelling the job: stop, report, exit.
  let stoppedBy: NodeJS.Signals | undefined;
  const exitCode = () => (stoppedBy === 'SIGTERM' ? EXIT.terminated : EXIT.interrupted);
  const exitNow = () => process.exit(exitCode());
  const onSignal = (signal: NodeJS.Signals) => {
    if (stoppedBy) return exitNow();
    stoppedBy = signal;
    process.stderr.write(`fleetprobe: ${signal}: stopping the runs and writing the partial report (again to exit now)\n`);
    interrupt.abort();
  };
  try {
    const config = loadConfig({ paths: configPathsFor(args), lab: Boolean(lab), vars: lab?.vars });
    const specs = selectProbes(config.probes, selection, config.skippedLabFiles);
    const junit = args.values.junit ? new JunitFile(args.values.junit) : undefined;
    const report = new Report(specs, { mode, json: Boolean(args.values.json), junit, bar, out: process.stdout });
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    const outcome = await body({ specs, all: config.probes, log, interrupted: interrupt.signal, report, concurrency, labControl: lab?.controlUrl });
    report.finish(outcome);
    return outcome.interrupted ? exitCode() : outcome.success ? EXIT.ok : EXIT.fail;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await lab?.close();
  }
}
