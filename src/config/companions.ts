import type { ProbeSpec } from '../core/kind.js';
import { getKind } from '../kinds/index.js';

/** A probe that names other probes whose results it reads, and where to report a problem with one. */
export interface CompanionLinks {
  spec: ProbeSpec;
  refs: { field: string; probe: string }[];
  issue: (field: string, message: string) => void;
}

/**
 * Step 7 of loading, once every probe is known: a probe that reads another's latest result needs
 * that probe to exist in the loaded (enabled) configuration, to be another probe, to have results
 * of its own (a held probe records one only when its connection opens or breaks, so its last result
 * says little about now), and not to read companions itself (no chains, so `fleetprobe run` never
 * recurses).
 */
export function linkCompanions(probes: ProbeSpec[], links: CompanionLinks[], deferred: ReadonlySet<string> = new Set()): void {
  const byName = new Map(probes.map((p) => [p.name, p]));
  for (const { spec, refs, issue } of links) {
    for (const { field, probe } of refs) {
      const other = byName.get(probe);
      const otherKind = other && getKind(other.kind);
      if (!other && deferred.has(probe)) continue;
      if (probe === spec.name) issue(field, 'names this probe itself; name another probe (e.g. a tunnel probe of the same device)');
      else if (!other || !otherKind) issue(field, `no enabled probe is named "${probe}"`);
      else if (otherKind.holds?.(other.config as never))
        issue(field, `"${probe}" is a held probe (hold): its last result is not refreshed while it stays up; name a scheduled probe`);
      else if (otherKind.companions?.(other.config as never).length)
        issue(field, `"${probe}" reads a companion probe itself; a companion must check the device directly`);
    }
  }
}
