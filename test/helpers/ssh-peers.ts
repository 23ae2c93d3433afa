import type { ServerChannel } from 'ssh2';
import type { LabServer } from '../../src/lab/listen.js';
import { authenticateByKey, generateLabKey, listenSsh, publicBlob, sshServer, type LabKeyPair } from '../../src/lab/ssh-server.js';
import { fingerprintSha256 } from '../../src/net/known-hosts.js';

/**
 * A tiny SSH server whose exec answers are scripted by the test: for proxies that misbehave in
 * ways the lab's never does (unknown stderr, echoed input, stale markers, exit status 0 on failure).
 */
export interface SshPeer extends LabServer {
  fingerprint: string;
  hostKey: LabKeyPair;
}

/** `rejectSessions`: refuse every session channel (a CHANNEL_OPEN_FAILURE with an empty description, as ssh2 sends). */
export async function sshPeer(
  userKey: LabKeyPair,
  onExec: (command: string, stream: ServerChannel) => void,
  opts: { rejectSessions?: boolean } = {},
): Promise<SshPeer> {
  const hostKey = generateLabKey('peer-host');
  const server = sshServer(hostKey, (client) => {
    client.on('authentication', (ctx) => authenticateByKey(ctx, [publicBlob(userKey)]));
    client.on('ready', () =>
      client.on('session', (accept, reject) => {
        if (opts.rejectSessions) return reject();
        const session = accept();
        session.on('exec', (ok, _reject, info) => onExec(info.command, ok()));
      }),
    );
  });
  const l = await listenSsh('ssh-peer', () => server);
  return { ...l, hostKey, fingerprint: fingerprintSha256(publicBlob(hostKey)) };
}

/** Reads all of a channel's stdin (the marker script the probe sends). */
export function readStdin(stream: ServerChannel): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    stream.on('data', (d: Buffer) => (text += d));
    stream.on('end', () => resolve(text));
  });
}
