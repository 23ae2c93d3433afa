import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProbeSpec } from '../../src/core/kind.js';
import { runProbe } from '../../src/core/run.js';
import { httpKind } from '../../src/kinds/http.js';
import { createLabCa } from '../../src/lab/ca.js';
import { listenPeer, type Peer } from '../helpers/http-peers.js';

// The TLS dialer's fast paths (the leaf handed to Node's hostname check, the chain expiry cached by
// leaf) must give the same answers as the slow ones: names checked, IP targets verified against
// the certificate's IP names, the earliest expiry of the whole chain.
const log = pino({ level: 'silent' });
const DAY = 86_400_000;
let dir: string;
let caFile: string;
let peer: Peer;
let leafNotAfter: Date;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fleetprobe-dial-tls-'));
  const ca = createLabCa('dial-tls test CA');
  caFile = path.join(dir, 'ca.pem');
  fs.writeFileSync(caFile, ca.certPem);
  leafNotAfter = new Date(Math.floor((Date.now() + 3 * DAY) / 1000) * 1000);
  const leaf = ca.issue({ dnsNames: ['named.test'], ips: ['127.0.0.1'], notAfter: leafNotAfter });
  peer = await listenPeer(
    https.createServer({ cert: leaf.certPem, key: leaf.keyPem }, (_req, res) => res.end('ok')),
    'https',
  );
});
afterAll(async () => {
  await peer?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function spec(url: string, extra: Record<string, unknown> = {}): ProbeSpec {
  const config = httpKind.schema.parse({ url, tls: { caFile }, ...extra });
  return { name: 'tls-probe', kind: 'http', intervalMs: 60_000, timeoutMs: 5000, labels: {}, source: { file: 't.yaml' }, config, digest: 'd' };
}

describe('upgradeTls', () => {
  it('verifies an IP target against the certificate IP names (no SNI is sent for an IP)', async () => {
    const r = await runProbe(spec(`https://127.0.0.1:${peer.port}/`), httpKind as never, { log });
    expect(r).toMatchObject({ success: true });
  });

  it('checks the name: a certificate for other names fails in tls', async () => {
    const r = await runProbe(spec(`https://other.test:${peer.port}/`, { resolve: '127.0.0.1' }), httpKind as never, { log });
    expect(r).toMatchObject({ success: false, reason: 'tls', phase: 'tls' });
    expect(r.message).toMatch(/other\.test/);
  });

  it('reports the earliest expiry of the chain, the same on a cached run', async () => {
    const first = await runProbe(spec(`https://named.test:${peer.port}/`, { resolve: '127.0.0.1' }), httpKind as never, { log });
    const second = await runProbe(spec(`https://named.test:${peer.port}/`, { resolve: '127.0.0.1' }), httpKind as never, { log });
    expect(first.success).toBe(true);
    expect(first.observations.ssl_earliest_cert_expiry).toBe(leafNotAfter.getTime() / 1000);
    expect(second.observations.ssl_earliest_cert_expiry).toBe(leafNotAfter.getTime() / 1000);
  });

  it('with insecureSkipVerify, an untrusted chain still connects and reports its expiry', async () => {
    const r = await runProbe(spec(`https://127.0.0.1:${peer.port}/`, { tls: { insecureSkipVerify: true } }), httpKind as never, { log });
    expect(r).toMatchObject({ success: true });
    expect(r.observations.ssl_earliest_cert_expiry).toBe(leafNotAfter.getTime() / 1000);
  });
});
