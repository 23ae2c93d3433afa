import type { ProbeKind } from '../core/kind.js';
import { buildKind } from './build.js';
import { deviceStatusKind } from './device-status.js';
import { httpKind } from './http.js';
import { sshKind } from './ssh.js';
import { tunnelKind } from './tunnel.js';

/** The one list of probe kinds. The config schema, metrics and docs all take their names from here. */
export const KINDS: Record<string, ProbeKind> = {
  [httpKind.kind]: httpKind as unknown as ProbeKind,
  [buildKind.kind]: buildKind as unknown as ProbeKind,
  [sshKind.kind]: sshKind as unknown as ProbeKind,
  [tunnelKind.kind]: tunnelKind as unknown as ProbeKind,
  [deviceStatusKind.kind]: deviceStatusKind as unknown as ProbeKind,
};
export const KIND_NAMES = Object.keys(KINDS);

export function getKind(name: string): ProbeKind | undefined {
  return Object.hasOwn(KINDS, name) ? KINDS[name] : undefined;
}

/** Every field a `platform` block may hold: the union of the kinds' platform fields. */
export const PLATFORM_FIELDS = [...new Set(Object.values(KINDS).flatMap((k) => k.platformFields ?? []))].sort();
