import { requireResolved, warnDeferred } from './deferred.js';
import { loadConfig } from '../config/load.js';
import { UnknownProbeError } from '../core/errors.js';
import { createLogger } from '../core/log.js';
import { resultToJson } from '../core/result.js';
import { KINDS } from '../kinds/index.js';
import { type Args, configPathsFor, EXIT, logLevel, maybeLab, positiveInt, ratioArg } from './args.js';
import { LiveProgress } from './live-progress.js';
import { withManyProbes } from './many-probes.js';
import { runWithCompanions } from './probe-run.js';
import { renderTimeline } from './render.js';
import { runMany } from './run-many.js';
import { minSuccessBar } from './tally.js';

/** Options that make `run` a many-probe run even with one name (a table, JSON Lines, a report). */
const MANY_OPTIONS = ['all', 'selector', 'kind', 'repeat', 'min-success', 'junit', 'concurrency'] as const;

export async function cmdRun(args: Args): Promise<number> {
  const names = args.positionals.slice(1);
  if (names.length === 1 && MANY_OPTIONS.every((o) => args.values[o] === undefined)) return runOne(args, names[0]);
  const repeat = positiveInt('repeat', args.values.repeat, 1);
  const bar = minSuccessBar(ratioArg('min-success', args.values['min-success'], 1), repeat);
  return withManyProbes(args, 'run', bar, (m) => runMany(m, repeat, bar));
}

/**
 * `run NAME`: one probe, its output live and then its phase timeline (or one JSON object). Kept
 * exactly as it was before `run` took many probes: scripts and people read this output.
 */
async function runOne(args: Args, name: string): Promise<number> {
  const log = createLogger({ level: logLevel(args, 'warn'), fd: 2 });
  const lab = await maybeLab(args, log);
  try {
    // Only the probe run (and its companions) must resolve: see deferred.ts.
    const config = loadConfig({ paths: configPathsFor(args), lab: Boolean(lab), vars: lab?.vars, lenient: true });
    requireResolved([name], config.deferred);
    const spec = config.probes.find((p) => p.name === name);
    if (!spec) throw new UnknownProbeError(name, [...config.probes.map((p) => p.name), ...config.deferred.map((d) => d.name)], config.skippedLabFiles);
    requireResolved(
      (KINDS[spec.kind].companions?.(spec.config as never) ?? []).map((c) => c.probe),
      config.deferred,
    );
    warnDeferred(config.deferred);
    const interrupt = new AbortController();
    const onSigint = () => interrupt.abort();
    process.once('SIGINT', onSigint);
    const json = Boolean(args.values.json);
    // The target's output live (a build's log), unless the output is for a machine.
    const live = json ? undefined : new LiveProgress(process.stdout);
    // What the companion lines already quoted: the timeline refers to it rather than quoting it again.
    const shown: string[] = [];
    const result = await runWithCompanions(spec, config.probes, {
      shutdown: interrupt.signal,
      log,
      onProgress: live?.onProgress,
      onCompanion: json
        ? undefined
        : (line, companion) => {
            if (companion.message) shown.push(companion.message);
            process.stdout.write(line + '\n');
          },
    });
    live?.stop();
    process.off('SIGINT', onSigint);
    if (json) process.stdout.write(JSON.stringify(resultToJson(result)) + '\n');
    else process.stdout.write(renderTimeline(result, KINDS[spec.kind].phases, Boolean(process.stdout.isTTY), shown) + '\n');
    return result.success ? EXIT.ok : EXIT.fail;
  } finally {
    await lab?.close();
  }
}
