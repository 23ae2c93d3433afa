import { isScalar, visit, type Document, type LineCounter } from 'yaml';
import type { ConfigIssue } from '../core/errors.js';
import { formatPath } from './locate.js';

/**
 * `${NAME}` and `${NAME:-default}` in string values, from the given variables (the lab's) and then
 * the environment. `$${` writes a literal `${`. A missing variable without a default is an error,
 * reported with the field it was in.
 */
const VAR_RE = /\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

export function interpolate(text: string, vars: Record<string, string | undefined>): { value: string; missing: string[] } {
  const missing: string[] = [];
  const value = text.replace(VAR_RE, (match, name: string | undefined, def: string | undefined) => {
    if (match === '$${') return '${';
    const v = vars[name!];
    if (v !== undefined && v !== '') return v;
    if (def !== undefined) return def;
    // Once per name: the same variable twice in one value is one problem.
    if (!missing.includes(name!)) missing.push(name!);
    return match;
  });
  return { value, missing };
}

/**
 * Step 3 of loading: interpolates ${VAR} in every scalar value of a document, in place. Returns
 * the problems (a missing variable, by line and field path).
 */
export function interpolateDocument(doc: Document, lc: LineCounter, file: string, vars: Record<string, string | undefined>): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  visit(doc, {
    Scalar(key, node) {
      if (key === 'key' || typeof node.value !== 'string' || !node.value.includes('${')) return;
      const { value, missing } = interpolate(node.value, vars);
      for (const name of missing) {
        const line = node.range ? lc.linePos(node.range[0]).line : undefined;
        issues.push({ file, line, path: pathOf(doc, node), message: `environment variable ${name} is not set (used as \${${name}})`, unresolved: true });
      }
      node.value = value;
    },
  });
  return issues;
}

function pathOf(doc: Document, target: unknown): string {
  const out: PropertyKey[] = [];
  const walk = (node: unknown, acc: PropertyKey[]): boolean => {
    if (node === target) {
      out.push(...acc);
      return true;
    }
    const items = (node as { items?: unknown[] } | null)?.items;
    if (!Array.isArray(items)) return false;
    return items.some((item, i) => {
      if (item && typeof item === 'object' && 'key' in item && 'value' in item) {
        const k = (item as { key: unknown }).key;
        const kv = isScalar(k) ? (k.value as PropertyKey) : String(k);
        return walk((item as { value: unknown }).value, [...acc, kv]);
      }
      return walk(item, [...acc, i]);
    });
  };
  walk(doc.contents, []);
  return formatPath(out);
}

/**
 * A filter for the problems found after interpolation: a field whose variable is missing still
 * holds "${NAME}", so its schema error would only repeat that; nor would a problem reported on a
 * field that holds one, e.g. `token` for `token: {file: "${X}"}`.
 */
export function withoutUnresolved(unresolved: ConfigIssue[]): (found: ConfigIssue[]) => ConfigIssue[] {
  const paths = unresolved.map((i) => i.path);
  const holds = (p: string) => paths.some((u) => u === p || u.startsWith(p + '.') || u.startsWith(p + '['));
  return (found) => found.filter((i) => !holds(i.path));
}
