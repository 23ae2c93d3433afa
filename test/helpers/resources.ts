import v8 from 'node:v8';
import vm from 'node:vm';

/**
 * What a process holds, for leak tests: active handles by type (sockets, servers, timers) and the
 * heap after a full garbage collection.
 */

/** Handle types whose count must return to its baseline after a burst of runs. */
export const LEAK_TYPES = ['TCPSocketWrap', 'TCPServerWrap', 'TLSWrap', 'Timeout', 'PipeWrap', 'ProcessWrap'] as const;

export function activeResources(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const t of process.getActiveResourcesInfo()) counts[t] = (counts[t] ?? 0) + 1;
  return counts;
}

/** The counts of `types` that are above `baseline`, or null when none is. */
export function excess(baseline: Record<string, number>, now = activeResources(), types: readonly string[] = LEAK_TYPES): Record<string, string> | null {
  const over: Record<string, string> = {};
  for (const t of types) if ((now[t] ?? 0) > (baseline[t] ?? 0)) over[t] = `${baseline[t] ?? 0} -> ${now[t]}`;
  return Object.keys(over).length ? over : null;
}

/** Polls until no type is above its baseline; returns what is still above after `ms`, or null. */
export async function settle(baseline: Record<string, number>, ms = 5000): Promise<Record<string, string> | null> {
  const until = Date.now() + ms;
  for (;;) {
    const over = excess(baseline);
    if (!over || Date.now() > until) return over;
    await new Promise((r) => setTimeout(r, 25));
  }
}

// --expose-gc is not on in test workers: switch it on at runtime and take the function from a
// fresh context (the flag only affects contexts created after it is set).
let gcFn: (() => void) | undefined = (globalThis as { gc?: () => void }).gc;
function gc(): void {
  if (!gcFn) {
    v8.setFlagsFromString('--expose-gc');
    gcFn = vm.runInNewContext('gc') as () => void;
  }
  gcFn();
}

/** heapUsed after full collections (several: weak callbacks and finalizers free more on the next pass). */
export async function heapAfterGc(): Promise<number> {
  for (let i = 0; i < 4; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
  return process.memoryUsage().heapUsed;
}
