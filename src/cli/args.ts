import path from 'node:path';
import { parseArgs } from 'node:util';
import { parseDurationMs } from '../core/duration.js';
import { UsageError } from '../core/errors.js';
import type { Logger } from 'pino';
import { LOG_LEVELS, type LogLevel } from '../core/log.js';
import { startLab, type Lab } from '../lab/index.js';
import { PACKAGE_ROOT } from '../core/version.js';
import { LISTEN_FORMAT, listenAddress } from '../daemon/server.js';

/** 130 and 143 are what a shell reports for a command ended by SIGINT (128 + 2) and SIGTERM (128 + 15). */
export const EXIT = { ok: 0, fail: 1, usage: 2, interrupted: 130, terminated: 143 } as const;

const OPTIONS = {
  config: { type: 'string', multiple: true },
  lab: { type: 'boolean' },
  'lab-fault': { type: 'string', multiple: true },
  listen: { type: 'string' },
  'log-level': { type: 'string' },
  concurrency: { type: 'string' },
  grace: { type: 'string' },
  json: { type: 'boolean' },
  shard: { type: 'string' },
  // The status page's memory (daemon) and the daemon asked (status).
  history: { type: 'string' },
  'max-connections': { type: 'string' },
  daemon: { type: 'string' },
  // Selecting and repeating many probes (run, gate).
  all: { type: 'boolean' },
  selector: { type: 'string', short: 'l', multiple: true },
  kind: { type: 'string', multiple: true },
  repeat: { type: 'string' },
  'min-success': { type: 'string' },
  junit: { type: 'string' },
  for: { type: 'string' },
  every: { type: 'string' },
  'fail-after': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'V' },
} as const;

/** Options that only some commands take; any other command refuses them rather than ignoring them. */
const ONLY_FOR: Partial<Record<keyof typeof OPTIONS, readonly string[]>> = {
  all: ['run', 'gate'],
  selector: ['run', 'gate'],
  kind: ['run', 'gate'],
  junit: ['run', 'gate'],
  repeat: ['run'],
  'min-success': ['run'],
  for: ['gate'],
  every: ['gate'],
  'fail-after': ['gate'],
  history: ['daemon'],
  'max-connections': ['daemon'],
  daemon: ['status'],
};

export type Args = ReturnType<typeof parse>;
export function parse(argv: string[]) {
  let args;
  try {
    args = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const command = args.positionals[0];
  for (const [option, commands] of Object.entries(ONLY_FOR)) {
    if (command && args.values[option as keyof typeof OPTIONS] !== undefined && !commands.includes(command)) {
      const flag = option === 'selector' ? '-l' : `--${option}`;
      throw new UsageError(`${flag} is an option of ${commands.map((c) => `"${c}"`).join(' and ')}, not of "${command}"`);
    }
  }
  return args;
}

export function logLevel(args: Args, fallback: LogLevel): LogLevel {
  const level = args.values['log-level'] ?? (process.env.FLEETPROBE_LOG_LEVEL || fallback);
  if (!(LOG_LEVELS as readonly string[]).includes(level)) throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}, got "${level}"`);
  return level as LogLevel;
}

function configPaths(args: Args): string[] {
  return args.values.config?.length ? args.values.config : [path.join(process.env.FLEETPROBE_CONFIG || 'probes')];
}

/** With --lab and no --config, the lab's own probe file (so `fleetprobe run x --lab` works from anywhere). */
export function configPathsFor(args: Args): string[] {
  if (!args.values.config?.length && args.values.lab && !process.env.FLEETPROBE_CONFIG) return [path.join(PACKAGE_ROOT, 'probes')];
  return configPaths(args);
}

export function labFaults(args: Args): string[] {
  return (args.values['lab-fault'] ?? [])
    .flatMap((f) => f.split(','))
    .map((f) => f.trim())
    .filter(Boolean);
}

export function positiveInt(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${name} must be a whole number above 0, got "${value}"`);
  return n;
}

export function durationArg(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const ms = parseDurationMs(value);
  if (ms === undefined) throw new UsageError(`--${name} must be a duration such as 10s, got "${value}"`);
  return ms;
}

/** `--listen`, checked before anything starts (the lab, a probe). */
export function listenArg(value: string): string {
  if (!listenAddress(value)) throw new UsageError(`--listen must be ${LISTEN_FORMAT}, got "${value}"`);
  return value;
}

/** A share of runs: 0.8, or 80%. */
export function ratioArg(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const m = /^(\d+(?:\.\d+)?)(%?)$/.exec(value.trim());
  const ratio = m ? Number(m[1]) / (m[2] ? 100 : 1) : NaN;
  if (!(ratio > 0 && ratio <= 1)) throw new UsageError(`--${name} must be a ratio above 0 and at most 1 (0.8 or 80%), got "${value}"`);
  return ratio;
}

export async function maybeLab(args: Args, log: Logger): Promise<Lab | undefined> {
  const faults = labFaults(args);
  if (faults.length && !args.values.lab) throw new UsageError('--lab-fault needs --lab');
  return args.values.lab ? startLab({ faults, log }) : undefined;
}
