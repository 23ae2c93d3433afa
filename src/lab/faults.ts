import { LabError } from '../core/errors.js';

/**
 * Every fault the lab can inject, in one place. Adding a fault here makes it switchable from the
 * CLI (--fault), the control server and tests; the server that honours it checks `isOn(name)`.
 */
export const LAB_FAULTS = {
  'device-offline':
    'the public URL front answers every device with the platform\'s 502 "error when reaching this device" page; the SSH proxy says "host error: Could not connect to device ...: HTTP/1.0 503" (exit 0) and the bastion refuses forwarding',
  'slow-url': 'device HTTP servers wait 30 s before answering',
  'expired-cert': 'the public URL front presents an expired certificate (same CA)',
  'proxy-agent-empty':
    'the SSH proxy\'s keystore holds no identity: every `host`/`enter` ends with "error: host error: ..." on stderr and exit status 0 (the 2026-02-26 incident)',
  'proxy-host-error':
    'the SSH proxy ends every `host`/`enter` with a bare "error: host error" on stderr (exit 0), whatever the device\'s state: all users saw on 2026-02-26',
  'proxy-device-refused':
    'the SSH proxy says "error: host error: ssh: connect to host <uuid>.vpn port 22222: Connection refused" (exit 0): its connection to the device was refused',
  'proxy-device-auth-failed':
    'the SSH proxy says "error: host error: ssh: handshake failed: ssh: unable to authenticate, attempted methods [none publickey], no supported methods remain" (exit 0)',
  'proxy-reject-key': 'the SSH proxy refuses every user key',
  'proxy-hostkey-changed': 'the SSH proxy presents a different host key',
  'device-slow': 'lab devices wait 30 s before starting an SSH session (exec or shell)',
  'session-drop': 'lab devices cut the SSH channel after the first line of output, with no exit status',
  'tunnel-token-revoked': 'the tunnel proxy refuses every token with 407 (as after a broken authorization change)',
  'tunnel-device-offline': 'the tunnel proxy answers 503: the device is not connected to the VPN',
  'tunnel-port-closed': 'the tunnel proxy answers 500: the device port refused the connection',
  'tunnel-nonstandard': 'the tunnel proxy answers like a generic proxy: HTTP/1.1, odd reason phrases, extra headers, 401 instead of 407',
  'tunnel-drop': 'the tunnel proxy cuts every open tunnel 0.3-1.5 s after it opened (tunnels dropped during a deploy)',
  'tunnel-slow-connect': 'the tunnel proxy waits 30 s before answering CONNECT',
  'tunnel-queue':
    'the tunnel proxy answers CONNECT one at a time, 250 ms each, queueing the rest instead of refusing them (8 tunnels at once: the last waits 2 s)',
  'build-fails': 'the builder ends every build with isError log lines (the build failed)',
  'build-stall': 'the builder goes silent after the first build log lines, holding the connection open',
  'build-cut': 'the builder closes the connection mid-stream, in the middle of a log item',
  'build-slow-upload': 'the builder reads the uploaded build context at 32 bytes per second',
  'builder-unauthorized': 'the builder answers every build with 401 Unauthorized',
  'status-stale': 'the API misses disconnects: a device that goes offline stays `is_online: true` until the fault is off (the 2025-09-10 incident)',
  'api-errors': 'the API answers device requests in turn with a 503, malformed JSON, and a 30 s wait (the cycle restarts when the fault is switched on)',
  'device-3-offline': 'device 3 drops off the VPN: the tunnel proxy answers 503 for it and the API marks it offline (unless `status-stale`)',
  'fleet-some-down':
    "10% of the lab fleet's devices go down, spread over the fleet: one in three offline according to the API, the others unreachable (SSH proxy, tunnel proxy and URL front) while the API says online",
  'fleet-most-down': "60% of the lab fleet's devices go down, as `fleet-some-down` does (any other share: PUT /fleet/down/<percent> on the control server)",
} as const;
export type LabFault = keyof typeof LAB_FAULTS;

export interface LabFaultInfo {
  name: LabFault;
  description: string;
  on: boolean;
}

export type FaultListener = (name: LabFault, on: boolean) => void;

const KNOWN = Object.keys(LAB_FAULTS).sort() as LabFault[];

export function isLabFault(name: string): name is LabFault {
  return Object.prototype.hasOwnProperty.call(LAB_FAULTS, name);
}

/** Throws LabError naming the known faults, so a typo on the command line is self-explaining. */
export function assertLabFault(name: string): LabFault {
  if (!isLabFault(name)) throw new LabError(`unknown lab fault "${name}"; known faults: ${KNOWN.join(', ')}`);
  return name;
}

/** The live on/off state of every fault; servers read it per request/handshake, so changes apply at once. */
export class FaultSwitchboard {
  private readonly on = new Set<LabFault>();
  private readonly listeners = new Set<FaultListener>();

  constructor(initial: string[] = []) {
    // Validate everything before switching anything on: a bad list leaves no half-built state.
    const names = initial.map(assertLabFault);
    for (const n of names) this.on.add(n);
  }

  isOn(name: LabFault): boolean {
    return this.on.has(name);
  }

  set(name: string, on: boolean): void {
    const fault = assertLabFault(name);
    if (this.on.has(fault) === on) return;
    if (on) this.on.add(fault);
    else this.on.delete(fault);
    for (const l of this.listeners) l(fault, on);
  }

  active(): LabFault[] {
    return KNOWN.filter((n) => this.on.has(n));
  }

  list(): LabFaultInfo[] {
    return KNOWN.map((name) => ({ name, description: LAB_FAULTS[name], on: this.on.has(name) }));
  }

  /** Subscribe to changes (only real transitions are reported); returns an unsubscribe function. */
  onChange(listener: FaultListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
