import type { FaultSwitchboard } from './faults.js';

/**
 * Whether each lab device is really connected (what the tunnel proxy routes) and what the lab API
 * says about it. They agree unless `status-stale` is on: then the API misses disconnects and keeps
 * saying "online" (the 2025-09-10 incident) until the fault is switched off.
 *
 * The lab fleet `lab/sample-fleet` holds the three named devices and 47 more (`c0ffee…0004` to
 * `c0ffee…0050`, one shared HTTP endpoint behind them); the last three start offline.
 */

export const LAB_FLEET_SLUG = 'lab/sample-fleet';
export const LAB_FLEET_SIZE = 50;
/** Devices 48, 49 and 50 are offline from the start (and the API says so). */
export const LAB_FLEET_OFFLINE_AT_START = 3;

export function labDeviceUuid(n: number): string {
  return 'c0ffee' + String(n).padStart(26, '0');
}

export interface LabDeviceRecord {
  id: number;
  uuid: string;
  device_name: string;
  fleet: string;
  /** Really connected to the VPN (the tunnel proxy routes it). */
  online: boolean;
  /** The API's view. */
  api: { online: boolean; lastVpnEvent: string; lastConnectivityEvent: string };
}

export class LabDeviceStates {
  private readonly devices = new Map<string, LabDeviceRecord>();

  constructor(
    private readonly faults: FaultSwitchboard,
    names: ReadonlyMap<number, string> = new Map(),
  ) {
    const startedAt = new Date().toISOString();
    for (let n = 1; n <= LAB_FLEET_SIZE; n++) {
      const online = n <= LAB_FLEET_SIZE - LAB_FLEET_OFFLINE_AT_START;
      const uuid = labDeviceUuid(n);
      this.devices.set(uuid, {
        id: n,
        uuid,
        device_name: names.get(n) ?? `lab-fleet-device-${n}`,
        fleet: LAB_FLEET_SLUG,
        online,
        api: { online, lastVpnEvent: startedAt, lastConnectivityEvent: startedAt },
      });
    }
    faults.onChange((name, on) => {
      if (name === 'device-3-offline') this.setOnline(labDeviceUuid(3), !on);
      // The API catches up with every disconnect it missed.
      if (name === 'status-stale' && !on) for (const d of this.devices.values()) this.syncApi(d, new Date().toISOString());
    });
    if (faults.isOn('device-3-offline')) this.setOnline(labDeviceUuid(3), false);
  }

  get(uuid: string): LabDeviceRecord | undefined {
    return this.devices.get(uuid.toLowerCase());
  }

  /** Devices of a fleet in id order. */
  list(fleet: string): LabDeviceRecord[] {
    return [...this.devices.values()].filter((d) => d.fleet === fleet);
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
    if (d.api.online === d.online) return;
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
    };
  }
}
