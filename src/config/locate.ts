import { isMap, isSeq, isScalar, type Document, type LineCounter, type Node } from 'yaml';

/**
 * The line of a field in a YAML document, given the path a schema issue reports. Walks as far as
 * the path exists, so a missing field points at its parent object. With `key`, points at the key
 * itself (used for unknown fields).
 */
export function locateLine(doc: Document, lc: LineCounter, path: PropertyKey[], key?: string): number | undefined {
  let node: unknown = doc.contents;
  let best: Node | undefined = (node as Node | null) ?? undefined;
  const steps = key === undefined ? path : [...path, key];
  for (let i = 0; i < steps.length; i++) {
    const step = steps[i];
    if (isMap(node)) {
      const pair = node.items.find((p) => (isScalar(p.key) ? p.key.value : p.key) === step);
      if (!pair) break;
      const lastAndKey = key !== undefined && i === steps.length - 1;
      const target = lastAndKey ? pair.key : (pair.value ?? pair.key);
      if (target && typeof target === 'object' && 'range' in target) best = target as Node;
      node = pair.value;
    } else if (isSeq(node) && typeof step === 'number') {
      const item = node.items[step];
      if (!item) break;
      if (typeof item === 'object' && item && 'range' in item) best = item as Node;
      node = item;
    } else break;
  }
  const offset = best?.range?.[0];
  return offset === undefined ? undefined : lc.linePos(offset).line;
}

export function formatPath(path: PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${String(p)}` : String(p);
  return out;
}
