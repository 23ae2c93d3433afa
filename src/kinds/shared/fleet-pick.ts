/**
 * Which devices of a fleet one run probes: a uniform random sample, or the next ones in turn
 * (round-robin, so a daemon walks the whole list over its runs).
 */

/** `k` distinct items, uniformly at random (a partial Fisher-Yates shuffle). */
export function sampleOf<T>(items: readonly T[], k: number, random: () => number = Math.random): T[] {
  const a = [...items];
  const n = Math.min(k, a.length);
  for (let i = 0; i < n; i++) {
    const j = i + Math.floor(random() * (a.length - i));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a.slice(0, n);
}

/**
 * The next `k` items from `cursor` on, wrapping around (never one twice in a run), and where the
 * next run starts. The list may have changed since the last run: the cursor is taken modulo its length.
 */
export function nextInTurn<T>(items: readonly T[], k: number, cursor: number): { picked: T[]; cursor: number } {
  if (items.length === 0) return { picked: [], cursor: 0 };
  const start = cursor % items.length;
  const n = Math.min(k, items.length);
  const picked = Array.from({ length: n }, (_, i) => items[(start + i) % items.length]);
  return { picked, cursor: (start + n) % items.length };
}
