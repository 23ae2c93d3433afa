import type { Logger } from 'pino';
import type { ServerChannel } from 'ssh2';
import { DeviceShell, LAB_CONTAINERS, type ShellDevice } from './device-shell.js';
import type { FaultSwitchboard } from './faults.js';
import { PendingDelays, type LabServer } from './listen.js';
import { authenticateByKey, generateLabKey, listenSsh, publicBlob, sshServer, type LabKeyPair } from './ssh-server.js';

/**
 * A lab device's own SSH server (balenaOS listens on 22222): reachable directly for jump mode and
 * by the SSH proxy with the proxy's identity. Commands run in DeviceShell; no process is spawned.
 */

/** How long `device-slow` holds a session before starting it: beyond any sane probe timeout. */
export const DEVICE_SLOW_MS = 30_000;

export interface SshDeviceServer extends LabServer {
  device: ShellDevice;
  hostKey: LabKeyPair;
}

export interface SshDeviceOptions {
  device: ShellDevice;
  faults: FaultSwitchboard;
  /** Public-key blobs allowed to log in (the proxy's identity, the lab user's key). */
  authorized: () => readonly Buffer[];
  log?: Logger;
}

/** The shell a proxy asks for: `sh` on the host OS, or `balena-engine exec -i <container> sh`. */
function interactiveTarget(command: string): { container?: string } | undefined {
  if (command.trim() === 'sh' || command.trim() === '/bin/sh') return {};
  const m = /^balena-engine exec -i (\S+) sh$/.exec(command.trim());
  return m ? { container: m[1] } : undefined;
}

// long: one lab server: its handlers share the server's state and faults in one closure, the way a test peer reads best.
export async function startSshDevice(opts: SshDeviceOptions): Promise<SshDeviceServer> {
  const { device, faults, log } = opts;
  const hostKey = generateLabKey(`${device.name}-host`);

  const serve = (stream: ServerChannel, command: string | undefined) => {
    let ended = false;
    stream.on('close', () => {
      ended = true;
      shell.stop();
    });
    // `session-drop`: the first line of output gets through, then the channel is cut with no exit status.
    const drop = faults.isOn('session-drop');
    const cut = () => {
      if (ended) return;
      ended = true;
      shell.stop();
      log?.debug({ device: device.uuid }, 'lab device: session-drop cut the channel');
      stream.close();
    };
    const shell = new DeviceShell(device, {
      stdout: (text) => {
        if (ended) return;
        const nl = text.indexOf('\n');
        if (drop && nl >= 0) {
          stream.write(text.slice(0, nl + 1));
          return cut();
        }
        stream.write(text);
      },
      stderr: (text) => {
        if (!ended) stream.stderr.write(text);
      },
      exit: (code) => finish(code),
    });
    function finish(code: number) {
      if (ended) return;
      ended = true;
      stream.exit(code);
      stream.end();
    }
    const start = () => {
      if (ended) return;
      const interactive = command === undefined ? {} : interactiveTarget(command);
      if (interactive?.container !== undefined && !LAB_CONTAINERS.includes(interactive.container)) {
        stream.stderr.write(`Error response from daemon: No such container: ${interactive.container}\n`);
        return finish(1);
      }
      if (interactive) {
        stream.on('data', (d: Buffer) => shell.input(d.toString('utf8')));
        stream.on('end', () => void shell.eof().then((code) => finish(code)));
        return;
      }
      void shell.runLine(command!).then(() => finish(shell.exited ?? shell.status));
    };
    start();
  };

  // `device-slow`: the exec/shell request is answered only after DEVICE_SLOW_MS (never if the
  // client leaves or the lab closes first).
  const delays = new PendingDelays();
  const server = sshServer(hostKey, (client) => {
    client.on('authentication', (ctx) => authenticateByKey(ctx, opts.authorized()));
    const maybeSlowly = (fn: () => void) => {
      if (!faults.isOn('device-slow')) return fn();
      delays.after(DEVICE_SLOW_MS, client, fn);
    };
    client.on('ready', () => {
      client.on('session', (accept) => {
        const session = accept();
        session.on('pty', (ok) => ok?.());
        session.on('env', (ok) => ok?.());
        session.on('exec', (ok, _reject, info) => maybeSlowly(() => serve(ok(), info.command)));
        session.on('shell', (ok) => maybeSlowly(() => serve(ok(), undefined)));
      });
    });
  });
  const l = await listenSsh(`ssh-${device.name}`, () => server);
  return {
    ...l,
    device,
    hostKey,
    close: async () => {
      delays.cancelAll();
      await l.close();
    },
  };
}

export { publicBlob };
