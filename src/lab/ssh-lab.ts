import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { createHmac, randomBytes } from 'node:crypto';
import { fingerprintSha256 } from '../net/known-hosts.js';
import { LAB_FLEET_SHARED, type LabDeviceStates } from './device-state.js';
import type { FaultSwitchboard } from './faults.js';
import { LAB_HOST, type LabServer } from './listen.js';
import { startSshDevice, type SshDeviceServer } from './ssh-device.js';
import { startSshProxy } from './ssh-proxy.js';
import { generateLabKey, publicBlob, type LabKeyPair } from './ssh-server.js';

/**
 * The lab's SSH side: a proxy (also the jump-mode bastion) and one SSH server per device, with
 * keys generated at start and written to the lab dir: the user's private key, and a known_hosts
 * holding the proxy (hashed `|1|` entry) and the devices (`[127.0.0.1]:port` entries).
 */

export const LAB_SSH_USER = 'lab-user';

export interface SshLab {
  vars: Record<string, string>;
  /** Each device's own SSH server (port 22222 on balenaOS), for the tunnel proxy's routes. */
  devices: { uuid: string; port: number }[];
  /** The SSH server every other device of the lab fleet shares. */
  fleetPort: number;
}

/** A hashed known_hosts name, as `ssh-keygen -H` writes it. */
function hashedName(name: string): string {
  const salt = randomBytes(20);
  return `|1|${salt.toString('base64')}|${createHmac('sha1', salt).update(name).digest('base64')}`;
}

function knownHostsLine(hosts: string, key: LabKeyPair): string {
  return `${hosts} ${key.parsed.type} ${publicBlob(key).toString('base64')}`;
}

export async function startSshLab(opts: {
  dir: string;
  faults: FaultSwitchboard;
  devices: readonly { uuid: string; name: string }[];
  /** Every started server is pushed here at once, so a failure later still closes it. */
  servers: LabServer[];
  writePrivate(file: string, content: string): void;
  /** The lab fleet: where each device's SSH goes and whether it is connected. */
  fleet: Pick<LabDeviceStates, 'serverOf' | 'isOnline'>;
  log?: Logger;
}): Promise<SshLab> {
  const userKey = generateLabKey('lab-user@fleetprobe-lab');
  const identity = generateLabKey('ssh-proxy-identity@fleetprobe-lab');
  const hostKey = generateLabKey('ssh-proxy-host');
  const otherHostKey = generateLabKey('ssh-proxy-host-changed');
  const authorized = [publicBlob(identity), publicBlob(userKey)];

  const devices: SshDeviceServer[] = [];
  for (const device of opts.devices) {
    const s = await startSshDevice({ device, faults: opts.faults, authorized: () => authorized, log: opts.log });
    opts.servers.push(s);
    devices.push(s);
  }
  const fleetDevice = await startSshDevice({ device: LAB_FLEET_SHARED, faults: opts.faults, authorized: () => authorized, log: opts.log });
  opts.servers.push(fleetDevice);
  const own = new Map(devices.map((d) => [d.device.uuid.toLowerCase(), { uuid: d.device.uuid, port: d.port, hostKey: publicBlob(d.hostKey) }]));
  const shared = { uuid: LAB_FLEET_SHARED.uuid, port: fleetDevice.port, hostKey: publicBlob(fleetDevice.hostKey) };
  const proxy = await startSshProxy({
    faults: opts.faults,
    user: LAB_SSH_USER,
    userKey,
    hostKey,
    otherHostKey,
    identity,
    devices: [...own.values()],
    lookup: (uuid) => opts.fleet.serverOf(uuid, own, shared),
    online: (uuid) => opts.fleet.isOnline(uuid),
    log: opts.log,
  });
  opts.servers.push(proxy);

  const keyFile = path.join(opts.dir, 'ssh_user_ed25519');
  opts.writePrivate(keyFile, userKey.private.trimEnd() + '\n');
  fs.writeFileSync(keyFile + '.pub', userKey.public.trimEnd() + '\n');
  const knownHosts = path.join(opts.dir, 'ssh_known_hosts');
  fs.writeFileSync(
    knownHosts,
    [
      '# fleetprobe lab: the SSH proxy (hashed, as ssh-keygen -H writes it) and the devices',
      knownHostsLine(hashedName(`[${LAB_HOST}]:${proxy.port}`), hostKey),
      ...[...devices, fleetDevice].map((d) => knownHostsLine(`[${LAB_HOST}]:${d.port}`, d.hostKey)),
      '',
    ].join('\n'),
  );

  const vars: Record<string, string> = {
    LAB_SSH_PROXY_PORT: String(proxy.port),
    LAB_SSH_PROXY_FINGERPRINT: fingerprintSha256(publicBlob(hostKey)),
    LAB_SSH_USER,
    LAB_SSH_KEY_FILE: keyFile,
    LAB_SSH_KNOWN_HOSTS: knownHosts,
  };
  devices.forEach((d, i) => (vars[i === 0 ? 'LAB_SSH_DEVICE_PORT' : `LAB_SSH_DEVICE${i + 1}_PORT`] = String(d.port)));
  return { vars, devices: devices.map((d) => ({ uuid: d.device.uuid, port: d.port })), fleetPort: fleetDevice.port };
}
