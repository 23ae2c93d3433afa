#!/usr/bin/env node
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { Logger } from 'pino';
import { loadConfig, nominalIntervalMs } from '../config/load.js';
import { parseDurationMs } from '../core/duration.js';
import { ConfigError, FleetprobeError, UnknownProbeError, UsageError } from '../core/errors.js';
import type { CompanionStatus, ProbeSpec } from '../core/kind.js';
import { resultToJson } from '../core/result.js';
import { runProbe } from '../core/run.js';
import { startDaemon } from '../daemon/daemon.js';
import { DEFAULT_MAX_CONNECTIONS } from '../daemon/connection-cap.js';
import { KINDS } from '../kinds/index.js';
import { LAB_FAULTS, startLab, type Lab } from '../lab/index.js';
import { LiveProgress } from './live-progress.js';
import { createLogger, LOG_LEVELS, type LogLevel } from '../core/log.js';
import { renderList, renderTimeline } from './render.js';
import { ownedBy, shardFrom } from '../daemon/shard.js';
import { PACKAGE_ROOT, VERSION } from '../core/version.js';

export const EXIT = { ok: 0, fail: 1, usage: 2 } as const;

const USAGE = `fleetprobe ${VERSION}: synthetic end-to-end probes for device fleet platforms

Usage:
  fleetprobe daemon [--config PATH]... [--listen HOST:PORT] [--lab] [--lab-fault F,...] [--log-level L]
                    [--concurrency N] [--max-connections N] [--grace DURATION] [--shard I/N]
  fleetprobe run NAME [--config PATH]... [--lab] [--lab-fault F,...] [--json]
  fleetprobe check [--config PATH]... [--lab]
  fleetprobe list [--config PATH]... [--lab] [--json] [--shard I/N]
  fleetprobe lab [--lab-fault F,...]

Options:
  --config PATH      probe definitions: a YAML file or a directory of them (repeatable; default: probes/)
  --lab              start the embedded lab in-process and load lab files (probes/lab.yaml) against it
  --lab-fault F,...  lab faults to switch on at start: ${Object.keys(LAB_FAULTS).join(', ')}
  --listen HOST:PORT where /metrics, /probes, /healthz and /readyz are served
                     (default 0.0.0.0:9437, or 127.0.0.1:9437 with --lab; env FLEETPROBE_LISTEN)
  --log-level L      ${LOG_LEVELS.join(', ')} (default info for daemon, warn otherwise; env FLEETPROBE_LOG_LEVEL)
  --concurrency N    at most N runs at once (default 64)
  --max-connections N
                     at most N open connections to the HTTP server (default ${DEFAULT_MAX_CONNECTIONS})
  --grace DURATION   how long SIGTERM waits for runs to end (default 10s)
  --json             machine-readable output (run, list)
  --shard I/N        run (daemon) or show (list) only shard I of N (0-based; auto/N takes I from the
                     host name's -<ordinal>, as in a StatefulSet; env FLEETPROBE_SHARD)

Exit status: 0 pass / ok, 1 probe failed, 2 configuration or usage error.`;

const OPTIONS = {
  config: { type: 'string', multiple: true },
  lab: { type: 'boolean' },
  'lab-fault': { type: 'string', multiple: true },
  listen: { type: 'string' },
  'log-level': { type: 'string' },
  concurrency: { type: 'string' },
  'max-connections': { type: 'string' },
  grace: { type: 'string' },
  json: { type: 'boolean' },
  shard: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'V' },
} as const;

type Args = ReturnType<typeof parse>;
function parse(argv: string[]) {
  try {
    return parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

function logLevel(args: Args, fallback: LogLevel): LogLevel {
  const level = args.values['log-level'] ?? (process.env.FLEETPROBE_LOG_LEVEL || fallback);
  if (!(LOG_LEVELS as readonly string[]).includes(level)) throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}, got "${level}"`);
  return level as LogLevel;
}

function configPaths(args: Args): string[] {
  return args.values.config?.length ? args.values.config : [path.join(process.env.FLEETPROBE_CONFIG || 'probes')];
}

function labFaults(args: Args): string[] {
  return (args.values['lab-fault'] ?? [])
    .flatMap((f) => f.split(','))
    .map((f) => f.trim())
    .filter(Boolean);
}

function positiveInt(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${name} must be a whole number above 0, got "${value}"`);
  return n;
}

async function maybeLab(args: Args, log: ReturnType<typeof createLogger>): Promise<Lab | undefined> {
  const faults = labFaults(args);
  if (faults.length && !args.values.lab) throw new UsageError('--lab-fault needs --lab');
  return args.values.lab ? startLab({ faults, log }) : undefined;
}

/** With --lab and no --config, the lab's own probe file (so `fleetprobe run x --lab` works from anywhere). */
function configPathsFor(args: Args): string[] {
  if (!args.values.config?.length && args.values.lab && !process.env.FLEETPROBE_CONFIG) return [path.join(PACKAGE_ROOT, 'probes')];
  return configPaths(args);
}

async function cmdDaemon(args: Args): Promise<number> {
  const log = createLogger({ level: logLevel(args, 'info') });
  const lab = await maybeLab(args, log);
  const listen = args.values.listen ?? (process.env.FLEETPROBE_LISTEN || (lab ? '127.0.0.1:9437' : '0.0.0.0:9437'));
  let daemon;
  try {
    daemon = await startDaemon({
      configPaths: configPathsFor(args),
      listen,
      concurrency: positiveInt('concurrency', args.values.concurrency, 64),
      maxConnections: positiveInt('max-connections', args.values['max-connections'], DEFAULT_MAX_CONNECTIONS),
      graceMs: durationArg('grace', args.values.grace, 10_000),
      log,
      lab,
      shard: shardFrom(args.values.shard),
    });
  } catch (err) {
    await lab?.close();
    throw err;
  }
  if (lab) {
    log.info(
      { endpoints: lab.endpoints, credentials: lab.credentialsFile },
      `embedded lab running; switch faults with: curl -X PUT ${lab.controlUrl}/faults/<name> (DELETE to clear; GET ${lab.controlUrl}/faults lists them)`,
    );
  }
  process.on('SIGHUP', () => daemon.reload());
  return new Promise((resolve) => {
    const stop = (signal: string) => {
      // A second signal while draining means "now".
      process.once(signal, () => process.exit(EXIT.fail));
      void daemon.shutdown(signal).then(() => resolve(EXIT.ok));
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}

function durationArg(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const ms = parseDurationMs(value);
  if (ms === undefined) throw new UsageError(`--${name} must be a duration such as 10s, got "${value}"`);
  return ms;
}

async function cmdRun(args: Args): Promise<number> {
  const name = args.positionals[1];
  if (!name || args.positionals.length > 2) throw new UsageError('run takes exactly one probe name: fleetprobe run NAME');
  const log = createLogger({ level: logLevel(args, 'warn'), fd: 2 });
  const lab = await maybeLab(args, log);
  try {
    const config = loadConfig({ paths: configPathsFor(args), lab: Boolean(lab), vars: lab?.vars });
    const spec = config.probes.find((p) => p.name === name);
    if (!spec)
      throw new UnknownProbeError(
        name,
        config.probes.map((p) => p.name),
      );
    const interrupt = new AbortController();
    const onSigint = () => interrupt.abort();
    process.once('SIGINT', onSigint);
    // The target's output live (a build's log), unless the output is for a machine.
    const live = args.values.json ? undefined : new LiveProgress(process.stdout);
    const companion = await runCompanions(spec, config.probes, interrupt.signal, log, Boolean(args.values.json));
    const result = await runProbe(spec, KINDS[spec.kind], { shutdown: interrupt.signal, log, onProgress: live?.onProgress, companion });
    live?.stop();
    process.off('SIGINT', onSigint);
    if (args.values.json) process.stdout.write(JSON.stringify(resultToJson(result)) + '\n');
    else process.stdout.write(renderTimeline(result, KINDS[spec.kind].phases, Boolean(process.stdout.isTTY)) + '\n');
    return result.success ? EXIT.ok : EXIT.fail;
  } finally {
    await lab?.close();
  }
}

/**
 * The probes a probe reads (ProbeKind.companions) have no daemon behind them under `run`: run each
 * once now, so `fleetprobe run <status probe>` works on its own and sees fresh results.
 */
async function runCompanions(
  spec: ProbeSpec,
  all: ProbeSpec[],
  shutdown: AbortSignal,
  log: Logger,
  quiet: boolean,
): Promise<(name: string) => CompanionStatus | undefined> {
  const seen = new Map<string, CompanionStatus>();
  for (const { probe } of KINDS[spec.kind].companions?.(spec.config as never) ?? []) {
    const other = all.find((p) => p.name === probe);
    if (!other || seen.has(probe)) continue;
    const r = await runProbe(other, KINDS[other.kind], { shutdown, log });
    seen.set(probe, { last: r.aborted ? undefined : r, lastSuccessAt: r.success ? r.startedAt : undefined, intervalMs: nominalIntervalMs(other) });
    if (!quiet) process.stdout.write(`companion ${probe}: ${r.success ? 'passed' : `failed (${r.reason} in ${r.phase}: ${r.message})`}\n`);
  }
  return (name) => seen.get(name);
}

async function cmdCheck(args: Args): Promise<number> {
  const log = createLogger({ level: logLevel(args, 'warn'), fd: 2 });
  const lab = await maybeLab(args, log);
  try {
    const config = loadConfig({ paths: configPathsFor(args), lab: Boolean(lab), vars: lab?.vars });
    for (const f of config.skippedLabFiles) process.stdout.write(`${f}: skipped (lab: true); check it with --lab\n`);
    process.stdout.write(
      `ok: ${config.probes.length} probe${config.probes.length === 1 ? '' : 's'} in ${config.files.length - config.skippedLabFiles.length} file(s)\n`,
    );
    return EXIT.ok;
  } finally {
    await lab?.close();
  }
}

async function cmdList(args: Args): Promise<number> {
  const log = createLogger({ level: logLevel(args, 'warn'), fd: 2 });
  const shard = shardFrom(args.values.shard);
  const lab = await maybeLab(args, log);
  try {
    const config = loadConfig({ paths: configPathsFor(args), lab: Boolean(lab), vars: lab?.vars });
    const probes = ownedBy(config.probes, shard);
    if (args.values.json) {
      const out = probes.map((s) => ({
        name: s.name,
        kind: s.kind,
        interval: s.intervalMs ? s.intervalMs / 1000 : null,
        cron: s.cron ?? null,
        timeoutSeconds: s.timeoutMs / 1000,
        labels: s.labels,
        source: s.source,
        ...(shard.count > 1 ? { shard: `${shard.index}/${shard.count}` } : {}),
      }));
      process.stdout.write(JSON.stringify(out, null, 2) + '\n');
    } else {
      process.stdout.write(renderList(probes) + '\n');
      if (shard.count > 1) process.stdout.write(`shard ${shard.index}/${shard.count}: ${probes.length} of ${config.probes.length} probes\n`);
    }
    return EXIT.ok;
  } finally {
    await lab?.close();
  }
}

async function cmdLab(args: Args): Promise<number> {
  const log = createLogger({ level: logLevel(args, 'info'), fd: 2 });
  const lab = await startLab({ faults: labFaults(args), log });
  const lines = ['fleetprobe lab running (loopback only). Endpoints:'];
  for (const [k, v] of Object.entries(lab.endpoints)) lines.push(`  ${k.padEnd(28)} ${v}`);
  lines.push(`  credentials file             ${lab.credentialsFile}`);
  lines.push(`  CA certificate               ${lab.caFile}`);
  lines.push('Devices:');
  for (const d of lab.devices) lines.push(`  ${d.name}  ${d.uuid}`);
  lines.push('Faults (switch with curl -X PUT|DELETE <control>/faults/<name>):');
  for (const f of lab.faults.list()) lines.push(`  [${f.on ? 'x' : ' '}] ${f.name.padEnd(16)} ${f.description}`);
  lines.push('Ctrl-C to stop.');
  process.stdout.write(lines.join('\n') + '\n');
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await lab.close();
  return EXIT.ok;
}

export async function main(argv: string[]): Promise<number> {
  try {
    const args = parse(argv);
    if (args.values.version) {
      process.stdout.write(`fleetprobe ${VERSION}\n`);
      return EXIT.ok;
    }
    const command = args.positionals[0];
    if (args.values.help || !command) {
      process.stdout.write(USAGE + '\n');
      return args.values.help ? EXIT.ok : EXIT.usage;
    }
    switch (command) {
      case 'daemon':
        return await cmdDaemon(args);
      case 'run':
        return await cmdRun(args);
      case 'check':
        return await cmdCheck(args);
      case 'list':
        return await cmdList(args);
      case 'lab':
        return await cmdLab(args);
      default:
        throw new UsageError(`unknown command "${command}"; commands: daemon, run, check, list, lab`);
    }
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`fleetprobe: ${err.message}\n`);
      return EXIT.usage;
    }
    if (err instanceof UsageError) {
      process.stderr.write(`fleetprobe: ${err.message}\nRun "fleetprobe --help" for usage.\n`);
      return EXIT.usage;
    }
    if (err instanceof UnknownProbeError || (err instanceof FleetprobeError && (err.code === 'FP_ERR_LAB' || err.code === 'FP_ERR_LISTEN'))) {
      process.stderr.write(`fleetprobe: ${err.message}\n`);
      return EXIT.usage;
    }
    process.stderr.write(`fleetprobe: ${(err as Error)?.stack ?? err}\n`);
    return EXIT.fail;
  }
}

void main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
  // Long-lived handles (the lab, undici internals) must not keep a finished command alive.
  if (process.argv[2] !== 'daemon' && process.argv[2] !== 'lab') setImmediate(() => process.exit(code));
  else process.exit(code);
});
