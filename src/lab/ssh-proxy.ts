import net from 'node:net';
import type { Logger } from 'pino';
import ssh2, { type Connection, type ParsedKey, type ServerChannel } from 'ssh2';
import type { FaultSwitchboard } from './faults.js';
import { LAB_HOST, type LabServer } from './listen.js';
import { authenticateByKey, listenSsh, publicBlob, sshServer, type LabKeyPair } from './ssh-server.js';

/**
 * The platform's SSH proxy (docs/protocols.md "SSH proxy"): the platform user logs in with
 * a registered key and execs `host <uuid>` or `enter <uuid> <container>`; the proxy connects onward
 * to the device with its own identity, held in an agent-like keystore, and pipes the session. Like
 * the real one it always exits 0, whatever happened, and reports trouble only on stderr.
 * It is also the lab's bastion for jump mode (direct-tcpip to a device's SSH port).
 */

/** An ssh-agent in memory: the proxy's identities. `proxy-agent-empty` makes it list none (the 2026-02-26 incident). */
class Keystore extends ssh2.BaseAgent {
  constructor(
    private readonly keys: readonly LabKeyPair[],
    private readonly empty: () => boolean,
  ) {
    super();
  }
  override getIdentities(cb: (err: Error | undefined, keys?: ParsedKey[]) => void): void {
    cb(undefined, this.empty() ? [] : this.keys.map((k) => k.parsed));
  }
  override sign(
    pubKey: ParsedKey,
    data: Buffer,
    options: { hash?: string } | ((err?: Error, sig?: Buffer) => void),
    cb?: (err?: Error, sig?: Buffer) => void,
  ): void {
    const done = (typeof options === 'function' ? options : cb)!;
    const hash = typeof options === 'function' ? undefined : options?.hash;
    const key = this.keys.find((k) => publicBlob(k).equals(pubKey.getPublicSSH()));
    if (!key || this.empty()) return done(new Error('agent refused operation'));
    done(undefined, key.parsed.sign(data, hash as never));
  }
}

export interface LabSshDevice {
  uuid: string;
  port: number;
  hostKey: Buffer;
}

export interface SshProxyOptions {
  faults: FaultSwitchboard;
  user: string;
  userKey: LabKeyPair;
  hostKey: LabKeyPair;
  /** Presented instead under `proxy-hostkey-changed`. */
  otherHostKey: LabKeyPair;
  /** The proxy's own identity for devices. */
  identity: LabKeyPair;
  /** The devices' own SSH servers: the jump-mode bastion forwards to these ports only. */
  devices: readonly LabSshDevice[];
  /** The SSH server behind a uuid (a device's own, or one the lab fleet's others share); undefined: no such device. */
  lookup(uuid: string): LabSshDevice | undefined;
  /** Whether a device is connected right now (undefined: no state kept); when false the proxy cannot reach it. */
  online?(uuid: string): boolean | undefined;
  log?: Logger;
}

const ONWARD_TIMEOUT_MS = 10_000;

/** The detail after "host error" that a wording fault makes the proxy print ("" for the bare one), if one is on. */
function hostErrorFault(faults: FaultSwitchboard, uuid: string): string | undefined {
  if (faults.isOn('proxy-host-error')) return '';
  if (faults.isOn('proxy-device-refused')) return `: ssh: connect to host ${uuid}.vpn port 22222: Connection refused`;
  if (faults.isOn('proxy-device-auth-failed')) {
    return ': ssh: handshake failed: ssh: unable to authenticate, attempted methods [none publickey], no supported methods remain';
  }
  return undefined;
}

// long: one lab server: its handlers share the server's state and faults in one closure, the way a test peer reads best.
export async function startSshProxy(opts: SshProxyOptions): Promise<LabServer> {
  const { faults, log } = opts;
  const keystore = new Keystore([opts.identity], () => faults.isOn('proxy-agent-empty'));
  const userBlob = publicBlob(opts.userKey);

  /** Ends the user's session the proxy's way: message on stderr, exit status 0 regardless. */
  const finish = (stream: ServerChannel, stderr?: string) => {
    if (stderr) stream.stderr.write(stderr);
    stream.exit(0);
    stream.end();
  };

  const enter = (stream: ServerChannel, command: string) => {
    const m = /^(host|enter)\s+([0-9a-fA-F]+)(?:\s+(\S+))?\s*$/.exec(command);
    if (!m || (m[1] === 'enter') !== (m[3] !== undefined)) {
      return finish(stream, 'error: usage: host <uuid> | enter <uuid> <container>\n');
    }
    const uuid = m[2].toLowerCase();
    const container = m[3];
    const device = opts.lookup(uuid);
    if (!device) return finish(stream, `error: device ${uuid} not found\n`);
    if (faults.isOn('device-offline') || opts.online?.(uuid) === false) {
      return finish(stream, `error: host error: Could not connect to device ${uuid}: HTTP/1.0 503 Service Unavailable\n`);
    }
    const wording = hostErrorFault(faults, uuid);
    if (wording !== undefined) return finish(stream, `error: host error${wording}\n`);
    const onward = new ssh2.Client();
    let up = false;
    const hostError = (why: string) => {
      log?.debug({ device: uuid, why }, 'lab ssh proxy: host error');
      finish(stream, `error: host error: ${why}\n`);
      onward.end();
    };
    stream.on('close', () => onward.end());
    onward.on('error', (err) => {
      if (!up) hostError(err.message);
    });
    onward.on('close', () => {
      if (!up && stream.writable) hostError('connection to the device closed');
    });
    onward.on('ready', () => {
      up = true;
      onward.exec(container ? `balena-engine exec -i ${container} sh` : 'sh', (err, ch) => {
        if (err) return hostError(err.message);
        stream.pipe(ch);
        ch.pipe(stream, { end: false });
        ch.stderr.pipe(stream.stderr, { end: false });
        // Whatever the device's exit status, the proxy reports 0 (balena-cli #1535).
        ch.on('close', () => {
          finish(stream);
          onward.end();
        });
      });
    });
    onward.connect({
      host: LAB_HOST,
      port: device.port,
      username: 'root',
      agent: keystore,
      hostVerifier: (key: Buffer) => key.equals(device.hostKey),
      readyTimeout: ONWARD_TIMEOUT_MS,
    });
  };

  // A bastion for jump mode: only to the lab devices' SSH ports, never anywhere else.
  const forward = (client: Connection) =>
    client.on('tcpip', (accept, reject, info) => {
      const device = opts.devices.find((d) => d.port === info.destPort);
      if (!device || !['127.0.0.1', 'localhost'].includes(info.destIP)) return reject();
      if (faults.isOn('device-offline')) return reject();
      const upstream = net.connect({ host: LAB_HOST, port: info.destPort });
      upstream.once('error', () => reject());
      upstream.once('connect', () => {
        const ch = accept();
        upstream.removeAllListeners('error');
        upstream.on('error', () => ch.destroy());
        ch.on('error', () => upstream.destroy());
        ch.pipe(upstream).pipe(ch);
        ch.on('close', () => upstream.destroy());
        upstream.on('close', () => ch.destroy());
      });
    });

  const onClient = (client: Connection) => {
    client.on('authentication', (ctx) => {
      if (faults.isOn('proxy-reject-key') || ctx.username !== opts.user) return ctx.reject(['publickey']);
      authenticateByKey(ctx, [userBlob]);
    });
    client.on('ready', () => {
      forward(client);
      client.on('session', (accept) => {
        const session = accept();
        session.on('env', (ok) => ok?.());
        session.on('pty', (ok) => ok?.());
        session.on('exec', (ok, _reject, info) => enter(ok(), info.command));
        session.on('shell', (ok) => finish(ok(), 'error: usage: host <uuid> | enter <uuid> <container>\n'));
      });
    });
  };
  const main = sshServer(opts.hostKey, onClient);
  const changed = sshServer(opts.otherHostKey, onClient);
  return listenSsh('ssh-proxy', () => (faults.isOn('proxy-hostkey-changed') ? changed : main));
}
