import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { parseDurationMs } from '../core/duration.js';
import { Secret } from '../core/redact.js';
import { checkInputFileSync, errnoOf, InputFileError, MAX_BUNDLE_FILE_BYTES, MAX_SECRET_FILE_BYTES, readInputFileSync } from './files.js';

/**
 * Reusable schema pieces for probe kinds. Secret references and file paths resolve relative to the
 * config file being loaded; the loader sets that directory here while it parses (parsing is
 * synchronous, so one module-level value is safe).
 */
let baseDir = process.cwd();
export function withBaseDir<T>(dir: string, fn: () => T): T {
  const prev = baseDir;
  baseDir = dir;
  try {
    return fn();
  } finally {
    baseDir = prev;
  }
}
export function resolveConfigPath(p: string): string {
  return path.resolve(baseDir, p);
}

export const duration = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const ms = parseDurationMs(v);
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: `"${v}" is not a duration (use e.g. 500ms, 30s, 5m, 1h)` });
    return z.NEVER;
  }
  return ms;
});

/** Marks a problem as a reference that did not resolve (see ConfigIssue.unresolved). */
export const UNRESOLVED = { unresolved: true } as const;

const secretRefShape = z.union([z.strictObject({ env: z.string().min(1) }), z.strictObject({ file: z.string().min(1) })]);

/** A secret: `{env: NAME}` or `{file: PATH}`, never inline. Resolved at load; missing is an error. */
export const secretRef = z.unknown().transform((v, ctx) => {
  if (typeof v === 'string' || typeof v === 'number') {
    ctx.addIssue({ code: 'custom', message: 'secrets must be given by reference ({env: NAME} or {file: PATH}), never inline' });
    return z.NEVER;
  }
  const parsed = secretRefShape.safeParse(v);
  if (!parsed.success) {
    ctx.addIssue({ code: 'custom', message: 'a secret reference is {env: NAME} or {file: PATH}' });
    return z.NEVER;
  }
  const ref = parsed.data;
  if ('env' in ref) {
    const value = process.env[ref.env];
    if (value === undefined || value === '') {
      ctx.addIssue({ code: 'custom', message: `environment variable ${ref.env} is not set (secret reference)`, params: UNRESOLVED });
      return z.NEVER;
    }
    return new Secret(value, `env:${ref.env}`);
  }
  const file = resolveConfigPath(ref.file);
  let value: string;
  try {
    // Trailing newlines come from editors and `kubectl create secret --from-file`; they are never part of a token.
    value = readInputFileSync(file, MAX_SECRET_FILE_BYTES)
      .toString('utf8')
      .replace(/\r?\n$/, '');
  } catch (err) {
    // A file that is not there (yet) is an unresolved reference; one of the wrong type or size is a mistake.
    const unreadable = !(err instanceof InputFileError) || (err as { cause?: unknown }).cause !== undefined;
    ctx.addIssue({ code: 'custom', message: fileProblem('secret file', file, err), ...(unreadable ? { params: UNRESOLVED } : {}) });
    return z.NEVER;
  }
  // As an empty variable is: an empty secret is a mistake (a file written before its value was).
  if (value === '') {
    ctx.addIssue({ code: 'custom', message: `secret file ${file} is empty (secret reference)` });
    return z.NEVER;
  }
  return new Secret(value, `file:${file}`);
});

/** What is wrong with a config input file: "cannot read file /x: ENOENT", "file /x is a FIFO, not a regular file". */
function fileProblem(what: string, file: string, err: unknown): string {
  const cause = (err as { cause?: unknown }).cause;
  if (err instanceof InputFileError && !cause) return `${what} ${err.message}`;
  return `cannot read ${what} ${file}: ${errnoOf(cause ?? err)}`;
}

/**
 * A path to a readable regular file of at most 10 MiB (CA bundle, known_hosts), resolved relative
 * to the config file. It is read at run (so a rotated file is picked up), without blocking.
 */
export const readableFile = z
  .string()
  .min(1)
  .transform((p, ctx) => {
    const file = resolveConfigPath(p);
    try {
      checkInputFileSync(file, MAX_BUNDLE_FILE_BYTES);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: fileProblem('file', file, err) });
      return z.NEVER;
    }
    return file;
  });

/** A path to a readable directory (a build context), resolved relative to the config file. */
export const readableDir = z
  .string()
  .min(1)
  .transform((p, ctx) => {
    const dir = resolveConfigPath(p);
    try {
      if (!fs.statSync(dir).isDirectory()) {
        ctx.addIssue({ code: 'custom', message: `${dir} is not a directory` });
        return z.NEVER;
      }
      fs.accessSync(dir, fs.constants.R_OK | fs.constants.X_OK);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: `cannot read directory ${dir}: ${(err as NodeJS.ErrnoException).code ?? 'error'}` });
      return z.NEVER;
    }
    return dir;
  });

export const regex = z.string().transform((s, ctx) => {
  try {
    return new RegExp(s);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: `invalid regular expression: ${(err as Error).message}` });
    return z.NEVER;
  }
});

/** Header names that carry credentials: their values must be secret references, never inline. */
const CREDENTIAL_HEADER = /^(proxy-)?authorization$|^cookie$|api[-_]?key|token|secret|password/i;

/** Request headers: plain strings, or secret references; credential headers must be references. */
export const headerMap = z.record(z.string(), z.union([z.string(), secretRef])).superRefine((headers, ctx) => {
  for (const [name, value] of Object.entries(headers)) {
    if (typeof value === 'string' && CREDENTIAL_HEADER.test(name)) {
      ctx.addIssue({ code: 'custom', path: [name], message: 'secrets must be given by reference ({env: NAME} or {file: PATH}), never inline' });
    }
  }
});
