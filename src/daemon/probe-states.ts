import type { ProbeSpec, ProbeState } from '../core/kind.js';

/**
 * Each probe's state between runs (ProbeContext.state), kept by the daemon, not by the kinds: a
 * reload that changes a probe (its digest) or removes it drops what it remembered, so a renamed
 * or reconfigured probe never inherits another's memory.
 */
export class ProbeStates {
  private states = new Map<string, { digest: string; state: ProbeState }>();

  /** The state of this probe as configured now. */
  for(spec: ProbeSpec): ProbeState {
    const kept = this.states.get(spec.name);
    if (kept?.digest === spec.digest) return kept.state;
    const state: ProbeState = {};
    this.states.set(spec.name, { digest: spec.digest, state });
    return state;
  }

  /** Keeps only the state of probes still configured unchanged. */
  retain(specs: readonly ProbeSpec[]): void {
    const digests = new Map(specs.map((s) => [s.name, s.digest]));
    for (const [name, kept] of this.states) if (digests.get(name) !== kept.digest) this.states.delete(name);
  }

  get size(): number {
    return this.states.size;
  }
}
