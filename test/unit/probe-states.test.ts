import { describe, expect, it } from 'vitest';
import type { ProbeSpec } from '../../src/core/kind.js';
import { ProbeStates } from '../../src/daemon/probe-states.js';

const spec = (name: string, digest: string): ProbeSpec => ({ name, kind: 'http', timeoutMs: 1000, labels: {}, source: { file: 'x' }, config: {}, digest });

describe('ProbeStates: per-probe memory kept by the daemon', () => {
  it('keeps a probe state across runs, drops it when a reload changes or removes the probe', () => {
    const states = new ProbeStates();
    const a = states.for(spec('a', 'd1'));
    a.value = { since: 1 };
    expect(states.for(spec('a', 'd1'))).toBe(a);
    states.for(spec('b', 'd1')).value = { since: 2 };
    // Reload: a changed, b removed.
    states.retain([spec('a', 'd2')]);
    expect(states.size).toBe(0);
    expect(states.for(spec('a', 'd2')).value).toBeUndefined();
    // Unchanged probes keep theirs.
    states.for(spec('a', 'd2')).value = { since: 3 };
    states.retain([spec('a', 'd2'), spec('c', 'd1')]);
    expect(states.for(spec('a', 'd2')).value).toEqual({ since: 3 });
  });
});
