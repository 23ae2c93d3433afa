import type { FaultSwitchboard, LabFault } from './faults.js';

/**
 * Whether each lab device is really connected (what the tunnel proxy routes) and what the lab API
 * says about it. They agree unless `status-stale` is on: then the API misses disconnects and keeps
 * saying "online" (the 2025-09-10 incident) until the fault is switched off.
 *
 * The lab fleet `lab/sample-fleet` holds the three named devices and 47 more (`c0ffee…0004` to
 * `c0ffee…0050`, one shared HTTP endpoint and one shared SSH server behind them); the last three
 * start offline. Every fifth device is an `intel-nuc`, the rest `raspberrypi4-64`; the named three
 * carry the tag `role=canary`, the others `role=fleet`. `setDownFraction` (the `fleet-some-down` and
 * `fleet-most-down` faults, or the control server) takes a share of the fleet down: one in three of
 * those devices offline according to the API, the others unreachable while the API says online.
 */

export const LAB_FLEET_SLUG = 'lab/sample-fleet';
export const LAB_FLEET_SIZE = 50;
/** Devices 48, 49 and 50 (of 50) are offline from the start (and the API says so). */
export const LAB_FLEET_OFFLINE_AT_START = 3;

/** The server the fleet's devices without one of their own share (an HTTP app, an SSH server). */
export const LAB_FLEET_SHARED = { uuid: 'lab-fleet', name: 'lab-fleet-device' } as const;

export function labDeviceUuid(n: number): string {
  return 'c0ffee' + String(n).padStart(26, '0');
}

export interface LabDeviceRecord {
  id: number;
  uuid: string;
  device_name: string;
  fleet: string;
  deviceType: string;
  tags: Record<string, string>;
  /** Really connected to the VPN (the tunnel proxy routes it). */
  online: boolean;
  /** The API's view. */
  api: { online: boolean; lastVpnEvent: string; lastConnectivityEvent: string };
  /** The API keeps saying "online" whatever happens (a down fraction's unreachable devices). */
  apiPinnedOnline?: boolean;
}

/** How the fleet's down fraction took a device down. */
type DownKind = 'api-offline' | 'unreachable';

/** The fraction each fleet fault takes down. */
export const FLEET_DOWN_FAULTS = { 'fleet-some-down': 0.1, 'fleet-most-down': 0.6 } as const;

export class LabDeviceStates {
  private readonly devices = new Map<string, LabDeviceRecord>();
  /** Devices the down fraction took down, and how. */
  private readonly downed = new Map<string, DownKind>();
  private fraction = 0;

  constructor(
    private readonly faults: FaultSwitchboard,
    names: ReadonlyMap<number, string> = new Map(),
    readonly size: number = LAB_FLEET_SIZE,
  ) {
    const startedAt = new Date().toISOString();
    for (let n = 1; n <= size; n++) {
      const online = n <= size - LAB_FLEET_OFFLINE_AT_START;
      const uuid = labDeviceUuid(n);
      this.devices.set(uuid, {
        id: n,
        uuid,
        device_name: names.get(n) ?? `lab-fleet-device-${n}`,
        fleet: LAB_FLEET_SLUG,
        deviceType: n % 5 === 0 ? 'intel-nuc' : 'raspberrypi4-64',
        tags: { role: n <= 3 ? 'canary' : 'fleet' },
        online,
        api: { online, lastVpnEvent: startedAt, lastConnectivityEvent: startedAt },
      });
    }
    faults.onChange((name, on) => {
      if (name === 'device-3-offline') this.setOnline(labDeviceUuid(3), !on);
      // The API catches up with every disconnect it missed.
      if (name === 'status-stale' && !on) for (const d of this.devices.values()) this.syncApi(d, new Date().toISOString());
      if (name in FLEET_DOWN_FAULTS) this.setDownFraction(this.faultFraction());
    });
    if (faults.isOn('device-3-offline')) this.setOnline(labDeviceUuid(3), false);
    if (this.faultFraction()) this.setDownFraction(this.faultFraction());
  }

  private faultFraction(): number {
    return Math.max(0, ...Object.entries(FLEET_DOWN_FAULTS).map(([f, v]) => (this.faults.isOn(f as LabFault) ? v : 0)));
  }

  /** The share of the fleet the down fraction holds down now (0 to 1). */
  downFraction(): number {
    return this.fraction;
  }

  /**
   * Takes `fraction` of the fleet down (0 brings back every device it took down), spread evenly
   * over the devices in id order: one in three offline according to the API, the others
   * unreachable while the API says online. Devices already offline are left as they are.
   */
  setDownFraction(fraction: number): void {
    for (const [uuid] of this.downed) {
      const d = this.devices.get(uuid)!;
      d.apiPinnedOnline = false;
      this.setOnline(uuid, true);
    }
    this.downed.clear();
    this.fraction = Math.min(1, Math.max(0, fraction));
    const all = [...this.devices.values()];
    let k = 0;
    all.forEach((d, i) => {
      // Evenly spread: device i is down when the running count of f per device steps up there.
      if (Math.floor((i + 1) * this.fraction + 0.5) <= Math.floor(i * this.fraction + 0.5) || !d.online) return;
      const kind: DownKind = k++ % 3 === 1 ? 'api-offline' : 'unreachable';
      this.downed.set(d.uuid, kind);
      if (kind === 'unreachable') d.apiPinnedOnline = true;
      this.setOnline(d.uuid, false);
    });
  }

  get(uuid: string): LabDeviceRecord | undefined {
    return this.devices.get(uuid.toLowerCase());
  }

  /** Every device (one lab fleet). */
  all(): LabDeviceRecord[] {
    return [...this.devices.values()];
  }

  /** Devices of a fleet in id order. */
  list(fleet: string): LabDeviceRecord[] {
    return [...this.devices.values()].filter((d) => d.fleet === fleet);
  }

  /**
   * Where a device's requests go: its own server (`own`, by uuid: the named devices) or, for any
   * other device of the fleet, the one they share; undefined for a uuid the lab does not know.
   */
  serverOf<T>(uuid: string, own: ReadonlyMap<string, T>, shared: T): T | undefined {
    return own.get(uuid) ?? (this.get(uuid) ? shared : undefined);
  }

  /** Undefined for a device the lab does not know (the tunnel proxy then decides by its routes). */
  isOnline(uuid: string): boolean | undefined {
    return this.get(uuid)?.online;
  }

  /** Connects or disconnects a device; false if the lab has no such device. */
  setOnline(uuid: string, online: boolean): boolean {
    const d = this.get(uuid);
    if (!d) return false;
    if (d.online === online) return true;
    d.online = online;
    this.syncApi(d, new Date().toISOString());
    return true;
  }

  private syncApi(d: LabDeviceRecord, at: string): void {
    if (d.api.online === d.online || (d.apiPinnedOnline && !d.online)) return;
    // A stale API misses disconnects only: a device that connects is always seen connecting.
    if (!d.online && this.faults.isOn('status-stale')) return;
    d.api = { online: d.online, lastVpnEvent: at, lastConnectivityEvent: at };
  }

  /** The device resource as the API serves it (all fields; the API trims to $select). */
  resource(d: LabDeviceRecord): Record<string, unknown> {
    return {
      id: d.id,
      uuid: d.uuid,
      device_name: d.device_name,
      is_online: d.api.online,
      is_connected_to_vpn: d.api.online,
      last_connectivity_event: d.api.lastConnectivityEvent,
      last_vpn_event: d.api.lastVpnEvent,
      api_heartbeat_state: d.api.online ? 'online' : 'offline',
      device_type: d.deviceType,
      tags: d.tags,
    };
  }
}
