import fs from 'node:fs';
import { DEFAULT_MAX_CONNECTIONS } from '../daemon/connection-cap.js';
import { historyFrom } from '../daemon/history.js';
import { startDaemon } from '../daemon/daemon.js';
import { noProbesError } from '../daemon/no-probes.js';
import { shardFrom } from '../daemon/shard.js';
import { createLogger } from '../core/log.js';
import { type Args, configPathsFor, durationArg, EXIT, listenArg, logLevel, maybeLab, positiveInt } from './args.js';

export async function cmdDaemon(args: Args): Promise<number> {
  const log = createLogger({ level: logLevel(args, 'info') });
  // Every option is checked before the lab or any probe starts: a typo is a usage error, not a
  // half-started daemon.
  const listen = listenArg(args.values.listen ?? (process.env.FLEETPROBE_LISTEN || (args.values.lab ? '127.0.0.1:9437' : '0.0.0.0:9437')));
  const options = {
    configPaths: configPathsFor(args),
    listen,
    concurrency: positiveInt('concurrency', args.values.concurrency, 64),
    graceMs: durationArg('grace', args.values.grace, 10_000),
    log,
    shard: shardFrom(args.values.shard),
    history: historyFrom(args.values.history),
    maxConnections: positiveInt('max-connections', args.values['max-connections'], DEFAULT_MAX_CONNECTIONS),
  };
  // A missing probes/ (the default) or --config path: refused here, before the lab starts.
  const missing = options.configPaths.find((p) => !fs.existsSync(p));
  if (missing !== undefined) throw noProbesError(options.configPaths, { missing });
  // SIGHUP's default action ends the process. A reload asked for while the lab and the daemon start
  // (after the "running" line, say) is kept and done once the daemon is up, never fatal.
  let daemon: Awaited<ReturnType<typeof startDaemon>> | undefined;
  let reloadAsked = false;
  const onHup = () => (daemon ? void daemon.reload() : (reloadAsked = true));
  process.on('SIGHUP', onHup);
  const lab = await maybeLab(args, log).catch((err: unknown) => {
    process.off('SIGHUP', onHup);
    throw err;
  });
  try {
    daemon = await startDaemon({ ...options, lab });
  } catch (err) {
    process.off('SIGHUP', onHup);
    await lab?.close();
    throw err;
  }
  if (lab) {
    log.info(
      { endpoints: lab.endpoints, credentials: lab.credentialsFile },
      `embedded lab running; switch faults with: curl -X PUT ${lab.controlUrl}/faults/<name> (DELETE to clear; GET ${lab.controlUrl}/faults lists them)`,
    );
  }
  if (reloadAsked) void daemon.reload();
  const running = daemon;
  return new Promise((resolve) => {
    const stop = (signal: string) => {
      // A second signal while draining means "now".
      process.once(signal, () => process.exit(EXIT.fail));
      void running.shutdown(signal).then(() => resolve(EXIT.ok));
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
