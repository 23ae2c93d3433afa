import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';
import { describeError, errorCode } from './classify.js';
import { redact } from './redact.js';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

function redactDeep(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return redact(value);
  if (depth > 6 || value === null || typeof value !== 'object') return value;
  if (value instanceof Error) return value;
  if (Array.isArray(value)) return value.map((v) => redactDeep(v, depth + 1));
  // Objects with their own JSON form (Secret, Date) decide for themselves.
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redactDeep(v, depth + 1)]));
}

/**
 * JSON lines for machines, pretty lines on a terminal. Every string that leaves passes through
 * redact(), so a secret echoed inside an error message never reaches the log.
 */
export function createLogger(opts: { level?: LogLevel; pretty?: boolean; fd?: 1 | 2 } = {}): Logger {
  const fd = opts.fd ?? 1;
  const usePretty = opts.pretty ?? Boolean((fd === 1 ? process.stdout : process.stderr).isTTY);
  const options: pino.LoggerOptions = {
    level: opts.level ?? 'info',
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    serializers: {
      err: (err: unknown) => ({
        type: (err as Error)?.name,
        code: errorCode(err),
        message: redact(describeError(err)),
      }),
    },
    hooks: {
      logMethod(args, method) {
        method.apply(this, args.map((a) => redactDeep(a)) as Parameters<typeof method>);
      },
    },
  };
  if (usePretty) return pino(options, pretty({ sync: true, destination: fd, colorize: true, ignore: 'pid,hostname', translateTime: 'SYS:HH:MM:ss.l' }));
  return pino(options, pino.destination({ dest: fd, sync: true }));
}
