import type { Document, LineCounter } from 'yaml';
import type { z } from 'zod';
import type { ConfigIssue } from '../core/errors.js';
import { formatPath, locateLine } from './locate.js';

/**
 * Unwraps issues that only say "Invalid input" / "Invalid key in record" around the real cause: a
 * union where one branch got the right type (e.g. a secret reference whose variable is unset), and
 * a record key that failed its own rule (e.g. a reserved label name).
 */
function unwrap(issue: z.core.$ZodIssue, at: PropertyKey[]): { path: PropertyKey[]; issue: z.core.$ZodIssue }[] {
  const p = [...at, ...issue.path];
  if (issue.code === 'invalid_union' && issue.errors.length) {
    const typed = issue.errors.filter((branch) => !branch.every((i) => i.code === 'invalid_type' && i.path.length === 0));
    if (typed.length === 1) return typed[0].flatMap((i) => unwrap(i, p));
  }
  if ((issue.code === 'invalid_key' || issue.code === 'invalid_element') && issue.issues.length) {
    return issue.issues.flatMap((i) => unwrap(i, p));
  }
  return [{ path: p, issue }];
}

/** Schema problems as config issues, each located by its path under `prefix` in the document. */
export function zodIssues(issues: readonly z.core.$ZodIssue[], file: string, doc: Document, lc: LineCounter, prefix: PropertyKey[]): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  for (const { path: p, issue } of issues.flatMap((i) => unwrap(i, prefix))) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        out.push({ file, line: locateLine(doc, lc, p, key), path: formatPath([...p, key]), message: 'unknown field' });
      }
      continue;
    }
    const unresolved = issue.code === 'custom' && issue.params?.unresolved === true;
    out.push({ file, line: locateLine(doc, lc, p), path: formatPath(p), message: humanise(issue), ...(unresolved ? { unresolved } : {}) });
  }
  return out;
}

function humanise(issue: z.core.$ZodIssue): string {
  if (issue.code === 'invalid_type' && issue.message.includes('received undefined')) return 'is required';
  return issue.message.replace(/^Invalid input: /, '');
}

/**
 * The last step: each problem once (a bad platform field is met once per probe that uses it), in
 * file order and then line order, so the list reads like the files do.
 */
export function orderIssues(issues: ConfigIssue[], fileOrder: string[]): ConfigIssue[] {
  const unique = [...new Map(issues.map((i) => [`${i.file}:${i.line}:${i.path}:${i.message}`, i])).values()];
  const order = new Map<string, number>();
  for (const f of [...fileOrder, ...unique.map((i) => i.file)]) if (!order.has(f)) order.set(f, order.size);
  return unique.sort((a, b) => order.get(a.file)! - order.get(b.file)! || (a.line ?? 0) - (b.line ?? 0));
}
