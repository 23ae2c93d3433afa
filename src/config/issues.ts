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

/** Edit distance (insertions, deletions, substitutions), for "did you mean". Names are short. */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = row;
  }
  return prev[b.length];
}

/** The known field closest to a misspelt one (case aside, at most a third of its letters off), if any. */
export function closestField(key: string, known: readonly string[]): string | undefined {
  let best: { name: string; d: number } | undefined;
  for (const name of known) {
    const d = distance(key.toLowerCase(), name.toLowerCase());
    if (d <= Math.max(1, Math.floor(name.length / 3)) && (!best || d < best.d)) best = { name, d };
  }
  return best?.name;
}

/**
 * Schema problems as config issues, each located by its path under `prefix` in the document.
 * `knownKeys`: the fields of the object at `prefix`, so an unknown one there suggests the closest.
 */
export function zodIssues(
  issues: readonly z.core.$ZodIssue[],
  file: string,
  doc: Document,
  lc: LineCounter,
  prefix: PropertyKey[],
  knownKeys: readonly string[] = [],
): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  for (const { path: p, issue } of issues.flatMap((i) => unwrap(i, prefix))) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        const near = p.length === prefix.length ? closestField(key, knownKeys) : undefined;
        const message = near ? `unknown field; did you mean \`${near}\`?` : 'unknown field';
        out.push({ file, line: locateLine(doc, lc, p, key), path: formatPath([...p, key]), message });
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
