import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';
import { LabError } from '../core/errors.js';
import { rememberSecret } from '../core/redact.js';
import { startApi } from './api.js';
import { LabReleases, startBuilder } from './builder.js';
import { createLabCa } from './ca.js';
import { startControl } from './control.js';
import { startDeviceHttp, type DeviceHttpServer, type LabDevice } from './device-http.js';
import { LAB_FLEET_SHARED, LAB_FLEET_SIZE, LAB_FLEET_SLUG, LabDeviceStates } from './device-state.js';
import { FaultSwitchboard } from './faults.js';
import { startSshLab } from './ssh-lab.js';
import { LAB_HOST, type LabServer } from './listen.js';
import { startTunnelProxy, TunnelRoutes, LAB_TUNNEL_HOST } from './tunnel-proxy.js';
import { LAB_URL_DOMAIN, startUrlFront } from './url-front.js';

/**
 * The embedded lab: an in-process fleet of real protocol servers on 127.0.0.1, for `fleetprobe
 * lab`, `daemon --lab`, `run --lab` and the tests. Servers are started in one place (startLab,
 * below) and faults are declared in one place (faults.ts).
 */

export { FaultSwitchboard, LAB_FAULTS, type LabFault } from './faults.js';
export { LAB_URL_DOMAIN, DEVICE_UNREACHABLE_PHRASE } from './url-front.js';
export { LAB_TUNNEL_HOST, TunnelRoutes } from './tunnel-proxy.js';
export { LabReleases, type LabRelease } from './builder.js';
export { LAB_FLEET_SIZE, LAB_FLEET_SLUG, LAB_FLEET_OFFLINE_AT_START, LabDeviceStates, labDeviceUuid } from './device-state.js';

/** Stable uuids, so probe configs and dashboards can name lab devices literally. */
export const LAB_DEVICES: readonly LabDevice[] = [
  { uuid: 'c0ffee00000000000000000000000001', name: 'lab-device-1' },
  { uuid: 'c0ffee00000000000000000000000002', name: 'lab-device-2' },
  { uuid: 'c0ffee00000000000000000000000003', name: 'lab-device-3' },
];

export interface Lab {
  /** Variables probes/lab.yaml interpolates as ${NAME}. */
  vars: Record<string, string>;
  /** Human-readable name -> URL. */
  endpoints: Record<string, string>;
  devices: { uuid: string; name: string; httpPort: number }[];
  faults: FaultSwitchboard;
  /** JSON file in `dir` with endpoints, devices, CA path (later: tokens, keys). */
  credentialsFile: string;
  /** PEM of the lab CA, in `dir`. */
  caFile: string;
  controlUrl: string;
  /** Where the tunnel proxy sends `<uuid>.balena:<port>`; add a device port with tunnelRoutes.add(). */
  tunnelRoutes: TunnelRoutes;
  /** Releases the lab builder created, with their status (a cancelled one records when). */
  releases: LabReleases;
  /** Which devices are connected (the tunnel proxy's view) and what the API says about them. */
  deviceStates: LabDeviceStates;
  /** The tunnel proxy's connection counts, for tests of bounded concurrency. */
  tunnelProxy: { openTunnels(): number; peakConnections(): number; resetPeak(): void; accepted(): number };
  /** Closes every server and every open connection; idempotent. */
  close(): Promise<void>;
}

export interface StartLabOptions {
  faults?: string[];
  /** Devices of the lab fleet (default LAB_FLEET_SIZE): scale tests start one of hundreds. */
  fleetSize?: number;
  dir?: string;
  log?: Logger;
}

// long: starts every lab server in order and wires their endpoints and variables: one list, read top to bottom.
export async function startLab(opts: StartLabOptions = {}): Promise<Lab> {
  // Validate faults before anything listens: a typo must not leave servers behind.
  const faults = new FaultSwitchboard(opts.faults ?? []);
  const log = opts.log?.child({ component: 'lab' });
  faults.onChange((name, on) => log?.info({ fault: name, on }, `lab fault ${name} ${on ? 'on' : 'off'}`));

  const createdDir = opts.dir === undefined;
  const dir = opts.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'fleetprobe-lab-'));
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });

  // Every started server, in start order; close() stops them in reverse.
  const servers: LabServer[] = [];
  const closeAll = async () => {
    for (const s of [...servers].reverse()) await s.close().catch(() => undefined);
  };

  try {
    const ca = createLabCa();
    const caFile = path.join(dir, 'ca.pem');
    writePrivate(caFile, ca.certPem);

    const deviceServers: DeviceHttpServer[] = [];
    for (const d of LAB_DEVICES) {
      const s = await startDeviceHttp(d, faults, log);
      deviceServers.push(s);
      servers.push(s);
    }
    const byUuid = new Map(deviceServers.map((s) => [s.device.uuid, s]));
    // The fleet for sample mode: the named devices and more behind one shared HTTP endpoint.
    const deviceStates = new LabDeviceStates(faults, new Map(LAB_DEVICES.map((d, i) => [i + 1, d.name])), opts.fleetSize ?? LAB_FLEET_SIZE);
    const online = (uuid: string) => deviceStates.isOnline(uuid);
    const fleetDevice = await startDeviceHttp(LAB_FLEET_SHARED, faults, log);
    servers.push(fleetDevice);

    // Every device of the lab fleet has a public URL; the named ones their own server, the rest a shared one.
    const front = await startUrlFront({
      ca,
      faults,
      lookup: (uuid) => deviceStates.serverOf(uuid, byUuid, fleetDevice),
      online,
      domain: LAB_URL_DOMAIN,
      log,
    });
    servers.push(front);

    const ssh = await startSshLab({ dir, faults, devices: LAB_DEVICES, servers, writePrivate, fleet: deviceStates, log });

    // One routing table for the tunnel proxy: each lab part registers the device ports it serves.
    const tunnelRoutes = new TunnelRoutes();
    for (const s of deviceServers) tunnelRoutes.add(s.device.uuid, 80, { port: s.port });
    for (const { uuid } of deviceStates.all().filter((d) => !byUuid.has(d.uuid))) {
      tunnelRoutes.add(uuid, 80, { port: fleetDevice.port });
      tunnelRoutes.add(uuid, 22222, { port: ssh.fleetPort });
    }
    // The builder and the API share one token, as the platform's do (an API key works on both).
    // Random per lab; it is a secret like any token, so it is redacted from every output.
    const builderToken = randomBytes(24).toString('base64url');
    rememberSecret(builderToken);
    const tunnelToken = randomBytes(24).toString('base64url');
    rememberSecret(tunnelToken);
    const tunnelTokenFile = path.join(dir, 'tunnel-token');
    writePrivate(tunnelTokenFile, tunnelToken + '\n');
    // The API token opens tunnels too, as a platform API key does (a device-status probe uses one token).
    const proxyOptions = { ca, faults, routes: tunnelRoutes, tokens: [tunnelToken, builderToken], online, log };
    const tunnel = await startTunnelProxy(proxyOptions);
    servers.push(tunnel);
    // The same proxy without TLS, as older platforms' `vpn.<domain>:3128` (`tunnelTls: false`).
    const plainTunnel = await startTunnelProxy({ ...proxyOptions, plain: true });
    servers.push(plainTunnel);
    // Each device's own SSH is also reachable through the tunnel proxy, as `<uuid>.balena:22222`.
    for (const d of ssh.devices) tunnelRoutes.add(d.uuid, 22222, { port: d.port });

    const builderTokenFile = path.join(dir, 'builder-token');
    writePrivate(builderTokenFile, builderToken + '\n');
    const releases = new LabReleases();
    const platformCert = ca.issue({ ips: [LAB_HOST], dnsNames: ['localhost'] });
    const builder = await startBuilder({ cert: platformCert, faults, releases, token: builderToken, log });
    servers.push(builder);
    const api = await startApi({ cert: platformCert, releases, token: builderToken, devices: { states: deviceStates, faults }, log });
    servers.push(api);

    const endpoints: Record<string, string> = {};
    const control = await startControl({ faults, endpoints: () => endpoints, devices: deviceStates, log });
    servers.push(control);
    for (const s of servers) endpoints[s.name] = s.url;

    const devices = deviceServers.map((s) => ({ uuid: s.device.uuid, name: s.device.name, httpPort: s.port }));
    const vars: Record<string, string> = {
      LAB_URL_FRONT_PORT: String(front.port),
      LAB_URL_DOMAIN,
      LAB_DEVICE_UUID: LAB_DEVICES[0].uuid,
      LAB_DEVICE2_UUID: LAB_DEVICES[1].uuid,
      LAB_DEVICE3_UUID: LAB_DEVICES[2].uuid,
      LAB_CA_FILE: caFile,
      LAB_CONTROL_URL: control.url,
      ...ssh.vars,
      LAB_TUNNEL_HOST,
      LAB_TUNNEL_PORT: String(tunnel.port),
      LAB_TUNNEL_PLAIN_PORT: String(plainTunnel.port),
      LAB_TUNNEL_TOKEN: tunnelToken,
      LAB_TUNNEL_TOKEN_FILE: tunnelTokenFile,
      LAB_BUILDER_URL: builder.url,
      LAB_API_URL: api.url,
      LAB_BUILDER_TOKEN_FILE: builderTokenFile,
      LAB_BUILDER_TOKEN: builderToken,
      LAB_FLEET_SLUG,
    };

    const credentialsFile = path.join(dir, 'credentials.json');
    writePrivate(credentialsFile, JSON.stringify({ endpoints, devices, caFile, urlDomain: LAB_URL_DOMAIN, vars }, null, 2) + '\n');

    let closing: Promise<void> | undefined;
    const close = () =>
      (closing ??= (async () => {
        await closeAll();
        // A temp dir we made holds nothing useful once the servers are gone; a caller's dir is theirs.
        if (createdDir) fs.rmSync(dir, { recursive: true, force: true });
        log?.info('lab closed');
      })());

    log?.info({ endpoints, faults: faults.active() }, 'lab started');
    return {
      vars,
      endpoints,
      devices,
      faults,
      credentialsFile,
      caFile,
      controlUrl: control.url,
      tunnelRoutes,
      releases,
      deviceStates,
      tunnelProxy: tunnel,
      close,
    };
  } catch (err) {
    await closeAll();
    if (createdDir) fs.rmSync(dir, { recursive: true, force: true });
    throw err instanceof LabError ? err : new LabError(`the lab could not start: ${(err as Error).message}`, { cause: err });
  }
}

/** Files here may later hold tokens and keys: owner-only from the first byte. */
function writePrivate(file: string, content: string): void {
  fs.writeFileSync(file, content, { mode: 0o600 });
  fs.chmodSync(file, 0o600); // writeFileSync's mode is ignored when the file already exists
}
