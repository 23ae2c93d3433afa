import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import forge from 'node-forge';
import { generateRsaKeyPair } from '../../src/lab/ca.js';

/**
 * Tiny real peers for the http kind's e2e tests: servers on 127.0.0.1:0 that answer in odd or
 * broken ways. Every peer tracks its accepted sockets so a test can assert the probe left none open.
 */

export interface Peer {
  port: number;
  /** `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`. */
  url: string;
  /** Sockets currently open on the server side. */
  open(): number;
  /** Sockets accepted since start. */
  accepted(): number;
  /** Resolves once every accepted socket has closed; rejects with the count still open after `ms`. */
  idle(ms?: number): Promise<void>;
  close(): Promise<void>;
}

export async function listenPeer(server: net.Server, scheme: 'http' | 'https'): Promise<Peer> {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  // TLS servers emit 'connection' with the raw socket before the handshake: count those too.
  server.on('connection', (s: net.Socket) => {
    accepted++;
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    // A probe that resets us mid-exchange must not crash the test process.
    s.on('error', () => {});
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as net.AddressInfo).port;
  const count = () => new Promise<number>((resolve, reject) => server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
  return {
    port,
    url: `${scheme}://127.0.0.1:${port}`,
    open: () => sockets.size,
    accepted: () => accepted,
    async idle(ms = 2000) {
      const until = Date.now() + ms;
      for (;;) {
        const n = await count();
        if (n === 0 && sockets.size === 0) return;
        if (Date.now() > until) throw new Error(`${n} connection(s) still open on the peer after ${ms}ms`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A raw TCP peer: `onSocket` decides what (if anything) the "server" says. */
export function rawPeer(onSocket: (s: net.Socket) => void): Promise<Peer> {
  return listenPeer(net.createServer(onSocket), 'http');
}

/** A raw CONNECT "proxy": reads the request head (up to the blank line), then does what `answer` says. */
export function connectPeer(answer: (s: net.Socket, head: string) => void): Promise<Peer> {
  return rawPeer((s) => {
    let head = '';
    const onData = (d: Buffer) => {
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      s.off('data', onData);
      answer(s, head);
    };
    s.on('data', onData);
  });
}

export function httpPeer(handler: http.RequestListener): Promise<Peer> {
  return listenPeer(http.createServer(handler), 'http');
}

export function httpsPeer(cert: { certPem: string; keyPem: string }, handler: http.RequestListener): Promise<Peer> {
  return listenPeer(https.createServer({ cert: cert.certPem, key: cert.keyPem }, handler), 'https');
}

/** A TLS peer that completes handshakes and then runs `onSocket` on the decrypted stream. */
export function tlsPeer(cert: { certPem: string; keyPem: string }, onSocket: (s: tls.TLSSocket) => void): Promise<Peer> {
  return listenPeer(tls.createServer({ cert: cert.certPem, key: cert.keyPem }, onSocket), 'https');
}

/**
 * A port nothing listens on. First a low one, below the range the kernel picks ports 0 from: a
 * port bound and released could be taken meanwhile by a server of a test file running beside
 * (seen: "nothing listens" met a TLS server's reset). Checked refused; if none is, the old way.
 */
export async function closedPort(): Promise<number> {
  for (const port of [1, 9, 47]) if (await refused(port)) return port;
  return freePort();
}

/** A port free for a server to listen on: bound, then released (for a peer that cannot take port 0). */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** A self-signed certificate for 127.0.0.1 / localhost (its own issuer, trusted by no one). */
export function selfSignedCert(): { certPem: string; keyPem: string } {
  const key = generateRsaKeyPair();
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(key.publicKeyPem);
  cert.serialNumber = '01';
  cert.validity.notBefore = new Date(Date.now() - 3600 * 1000);
  cert.validity.notAfter = new Date(Date.now() + 24 * 3600 * 1000);
  const subject = [{ name: 'commonName', value: 'localhost' }];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false },
    {
      name: 'subjectAltName',
      altNames: [
        { type: 2, value: 'localhost' },
        { type: 7, ip: '127.0.0.1' },
      ],
    },
  ]);
  cert.sign(forge.pki.privateKeyFromPem(key.privateKeyPem), forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: key.privateKeyPem };
}

/** Reads a request body to a string. */
export function readRequestBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => resolve(body));
    req.on('error', reject);
  });
}

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    c.once('connect', () => (c.destroy(), resolve(false)));
    c.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
    c.setTimeout(1000, () => (c.destroy(), resolve(false)));
  });
}
