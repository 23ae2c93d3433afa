// The timing benchmark's target, in a process of its own: an HTTPS server behind a TCP relay, each
// able to hold back one step by DELAY_MS. Prints {ports} as one JSON line when listening.
//   /          answers at once
//   /slow-head waits DELAY_MS before the status line and headers       (adds to `request`)
//   /slow-body sends the headers, waits DELAY_MS, then sends the body   (adds to `transfer`)
// relays: `plain` forwards bytes as they come; `tls` holds the server's first bytes (its TLS
// handshake flight) for DELAY_MS (adds to `tls`); `connect` is plain, and the parent drops the
// first SYN to it with iptables (adds the kernel's SYN retransmission timeout to `connect`).
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';

const [certFile, keyFile, delayArg] = process.argv.slice(2);
const DELAY_MS = Number(delayArg);

const server = https.createServer({ cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile) }, (req, res) => {
  const body = 'ok\n';
  const headers = { 'content-type': 'text/plain', 'content-length': String(body.length), connection: 'close' };
  if (req.url === '/slow-head') {
    setTimeout(() => res.writeHead(200, headers).end(body), DELAY_MS);
  } else if (req.url === '/slow-body') {
    res.writeHead(200, headers);
    res.flushHeaders();
    setTimeout(() => res.end(body), DELAY_MS);
  } else {
    res.writeHead(200, headers).end(body);
  }
});
server.keepAliveTimeout = 0;
await new Promise((r) => server.listen(0, '127.0.0.1', () => r(undefined)));
const upstream = /** @type {import('node:net').AddressInfo} */ (server.address()).port;

function relay(holdFirstServerBytes) {
  const s = net.createServer((client) => {
    client.setNoDelay(true);
    const up = net.connect({ host: '127.0.0.1', port: upstream, noDelay: true });
    client.on('error', () => up.destroy());
    up.on('error', () => client.destroy());
    client.on('close', () => up.destroy());
    up.on('close', () => client.destroy());
    client.pipe(up);
    if (!holdFirstServerBytes) {
      up.pipe(client);
      return;
    }
    up.once('data', (first) => {
      up.pause();
      setTimeout(() => {
        client.write(first);
        up.pipe(client);
        up.resume();
      }, DELAY_MS);
    });
  });
  return new Promise((r) => s.listen(0, '127.0.0.1', () => r(/** @type {import('node:net').AddressInfo} */ (s.address()).port)));
}

const ports = { plain: await relay(false), tls: await relay(true), connect: await relay(false) };
process.stdout.write(JSON.stringify({ ports }) + '\n');
process.on('SIGTERM', () => process.exit(0));
