import { z } from 'zod';
import { regex } from '../../config/fields.js';
import { excerpt, excerptJson } from '../../core/excerpt.js';
import { ProbeError } from '../../core/errors.js';

/** The HTTP fields of probe definitions and the checks on an answer, for every kind that reads one. */

export const httpUrl = z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' });

const statusMatcher = z.union([
  z.number().int().min(100).max(599),
  z.string().regex(/^[1-5]xx$|^\d{3}-\d{3}$|^\d{3}$/, 'a status is a code (200), a class ("2xx") or a range ("200-299")'),
]);
type StatusMatcher = z.output<typeof statusMatcher>;

/** `expect.status`: codes, classes or ranges; any 2xx by default. */
const statusList = z.array(statusMatcher).min(1).default(['2xx']);

/** Bytes of an answer's body read and checked; the rest is discarded. */
export const maxBodyBytes = z
  .number()
  .int()
  .min(0)
  .max(16 * 1024 * 1024)
  .default(64 * 1024);

/** The body checks of `expect`, with `status`. */
export const bodyExpectFields = {
  status: statusList,
  body: z.string().optional(),
  bodyRegex: regex.optional(),
};

function statusMatches(code: number, m: StatusMatcher): boolean {
  if (typeof m === 'number') return code === m;
  if (/^[1-5]xx$/.test(m)) return Math.floor(code / 100) === Number(m[0]);
  const [lo, hi] = m.split('-').map(Number);
  return hi === undefined ? code === lo : code >= lo && code <= hi;
}

/** A body (or any text a peer sent) for a message: secrets scrubbed, tags dropped, one line, bounded. */
export function bodyExcerpt(body: string, max = 160): string {
  return excerpt(body, { max, redact: true, markup: true, collapse: true });
}

/** A value from a peer's JSON for a message, like bodyExcerpt of its JSON text (bounded work, whatever its depth). */
export function jsonExcerpt(value: unknown, max = 160): string | undefined {
  return excerptJson(value, { max, redact: true, markup: true, collapse: true });
}

/** Throws `assertion` unless `status` matches one of `matchers`; `label` starts the message ("HTTP status"). */
export function expectStatus(status: number, matchers: readonly StatusMatcher[], body: string, label: string): void {
  if (matchers.some((m) => statusMatches(status, m))) return;
  throw new ProbeError('assertion', `${label} ${status} is not one of ${matchers.join(', ')}${body ? `; body: ${bodyExcerpt(body)}` : ''}`);
}

/**
 * Throws `assertion` when the body fails `expect.body`, `bodyRegex` or `bodyNotRegex`. `prefix`
 * starts each message (what was asked), `within` says how much of the body was read when not all.
 */
export function expectBody(body: string, e: { body?: string; bodyRegex?: RegExp; bodyNotRegex?: RegExp }, prefix = '', within = ''): void {
  if (e.body !== undefined && !body.includes(e.body)) {
    throw new ProbeError('assertion', `${prefix}body does not contain "${e.body}"${within}; body: ${bodyExcerpt(body)}`);
  }
  if (e.bodyRegex && !e.bodyRegex.test(body)) {
    throw new ProbeError('assertion', `${prefix}body does not match /${e.bodyRegex.source}/${within}; body: ${bodyExcerpt(body)}`);
  }
  if (e.bodyNotRegex && e.bodyNotRegex.test(body)) {
    throw new ProbeError('assertion', `${prefix}body matches /${e.bodyNotRegex.source}/, which it must not`);
  }
}
