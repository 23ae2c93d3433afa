/**
 * What the runs over many targets share (fleet targets' devices, `sessions: N`, device-status's
 * fleet sample): running them a few at a time, counting their outcomes, and naming some of them in
 * a message that stays bounded.
 */

/**
 * Calls `each(i)` for every index below `count`, at most `concurrency` at once, in index order;
 * starts no more once `signal` is aborted (those running finish).
 */
export async function inParallel(count: number, concurrency: number, signal: AbortSignal, each: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count && !signal.aborted) await each(next++);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
}

/** The most common value, ties to the one seen first. */
export function mostCommon<T>(values: readonly T[]): T {
  const counts = new Map<T, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  return [...counts].reduce((best, cur) => (cur[1] > best[1] ? cur : best))[0];
}

/** The q-quantile (0..1) of values, nearest rank; 0 for none. */
export function quantile(values: number[], q: number): number {
  if (!values.length) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

/** The first `max` items joined by ", ", then `, and N more` for the rest. */
export function nameSome(items: readonly string[], max: number): string {
  return items.slice(0, max).join(', ') + (items.length > max ? `, and ${items.length - max} more` : '');
}
