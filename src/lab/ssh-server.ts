import net from 'node:net';
import ssh2, { type AuthContext, type Connection, type ParsedKey, type Server } from 'ssh2';

const sshUtils = ssh2.utils;
import { listenLoopback, LAB_HOST, type LabServer } from './listen.js';

/**
 * What the lab's SSH servers share: ssh2's Server behind our own loopback listener (so lab.close()
 * destroys every socket, as for the other lab servers), lab-generated keys, and public-key auth.
 */

export interface LabKeyPair {
  /** OpenSSH private key text. */
  private: string;
  /** `ssh-ed25519 AAAA... comment` line. */
  public: string;
  parsed: ParsedKey;
}

export function generateLabKey(comment: string): LabKeyPair {
  // ssh2's generator drops a leading zero byte of the ed25519 public key (about 1 key in 280),
  // which makes a key nothing can parse: check each key with a signature and make another if needed.
  for (let attempt = 0; ; attempt++) {
    const pair = sshUtils.generateKeyPairSync('ed25519', { comment });
    const parsed = sshUtils.parseKey(pair.private);
    const key = parsed instanceof Error ? undefined : Array.isArray(parsed) ? parsed[0] : parsed;
    const probe = Buffer.from('fleetprobe-lab-key-check');
    if (key && key.verify(probe, key.sign(probe)) === true) return { private: pair.private, public: pair.public, parsed: key };
    if (attempt >= 20) throw new Error(`could not generate a usable ed25519 key: ${parsed instanceof Error ? parsed.message : 'signature check failed'}`);
  }
}

/** The raw public-key blob (what hosts and known_hosts compare). */
export function publicBlob(key: LabKeyPair): Buffer {
  return key.parsed.getPublicSSH();
}

/**
 * Public-key authentication against `allowed`: a query is answered "ok", a signature is verified.
 * Everything else is refused with only publickey offered.
 */
export function authenticateByKey(ctx: AuthContext, allowed: readonly Buffer[]): void {
  if (ctx.method !== 'publickey') return ctx.reject(['publickey']);
  const offered = ctx.key.data;
  const match = allowed.find((k) => k.equals(offered));
  if (!match) return ctx.reject(['publickey']);
  if (!ctx.signature) return ctx.accept(); // the client asks whether this key would do
  const pub = sshUtils.parseKey(offered);
  if (pub instanceof Error || Array.isArray(pub)) return ctx.reject(['publickey']);
  if (pub.verify(ctx.blob!, ctx.signature, ctx.hashAlgo) === true) return ctx.accept();
  ctx.reject(['publickey']);
}

/**
 * Listens on 127.0.0.1:0 and hands each connection to the ssh2 Server of the moment: `serverFor`
 * is asked per connection, so a host-key fault applies to the next connection without a restart.
 */
export async function listenSsh(name: string, serverFor: () => Server): Promise<LabServer> {
  // noDelay: SSH sends many small packets; Nagle plus delayed ACKs would add ~40 ms per exchange.
  const tcp = net.createServer({ noDelay: true }, (socket) => serverFor().injectSocket(socket));
  const h = await listenLoopback(tcp);
  return { name, url: `ssh://${LAB_HOST}:${h.port}`, port: h.port, close: h.close };
}

/** An ssh2 Server (not listening itself) with these host keys and connection handler. */
export function sshServer(hostKey: LabKeyPair, onClient: (client: Connection) => void): Server {
  const server = new ssh2.Server({ hostKeys: [hostKey.private], ident: 'fleetprobe-lab' }, (client) => {
    // A client that vanishes mid-handshake is normal in a lab under test: never crash on it.
    client.on('error', () => undefined);
    onClient(client);
  });
  return server;
}
