import v8 from 'node:v8';
import vm from 'node:vm';

/**
 * One full garbage collection, right after a configuration (re)load. Parsing YAML allocates about
 * 80 bytes per byte of the file (a 4 MB file of 23,000 probes: some 300 MB, nearly all garbage once
 * the probes are built), and V8 sizes the heap it lets grow before its next full collection by what
 * it last saw: that garbage stayed while the runs' own allocations piled on top (a shard that loads
 * the 23,000 and runs 11,500 peaked at 554 MB RSS, against 345 MB once settled). Node has no API for
 * a collection without --expose-gc; the flag, set at run time, exposes `gc` to a new context only,
 * and is unset again at once.
 */
let gc: (() => void) | null | undefined;

export function collectGarbage(): void {
  if (gc === undefined) {
    try {
      v8.setFlagsFromString('--expose-gc');
      gc = vm.runInNewContext('gc') as () => void;
      v8.setFlagsFromString('--no-expose-gc');
    } catch {
      gc = null; // a runtime without it: V8 collects in its own time
    }
  }
  gc?.();
}
