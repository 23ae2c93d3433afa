import fs from 'node:fs';
import type net from 'node:net';
import path from 'node:path';
import fc from 'fast-check';
import { pino } from 'pino';
import { utils } from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { loadConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/core/errors.js';
import type { ProbeSpec } from '../../src/core/kind.js';
import { runProbe } from '../../src/core/run.js';
import { KINDS } from '../../src/kinds/index.js';
import { ROOT, tempDir } from '../helpers/cli.js';
import { rawPeer, selfSignedCert, tlsPeer, type Peer } from '../helpers/http-peers.js';
import { makeSpec } from './matrix-cases.js';

/**
 * Bad input, property-based and seeded (a failure prints its seed and counterexample):
 * - mutated and random configs: loadConfig only ever throws ConfigError, and every problem names
 *   its file and a field path, or is a file-level problem with a line (a YAML syntax error);
 * - random bytes from peers: a probe never passes on them, never ends as `internal`, and nothing
 *   throws past runProbe.
 *
 * A kind joins the peer half by adding rows to PEER_FUZZ (its proxy answers, builder streams, API
 * JSON, SSH banners).
 */

const SEED = 20260808;
const log = pino({ level: 'silent' });

// ---------------------------------------------------------------------------------------------
// Configs
// ---------------------------------------------------------------------------------------------

function seedConfigs(): string[] {
  const files = [path.join(ROOT, 'probes', 'lab.yaml')];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.ya?ml$/.test(e.name)) files.push(p);
    }
  };
  walk(path.join(ROOT, 'test', 'fixtures', 'config'));
  for (const f of fs.readdirSync(path.join(ROOT, 'probes'))) if (/\.ya?ml$/.test(f) && f !== 'lab.yaml') files.push(path.join(ROOT, 'probes', f));
  return files.map((f) => fs.readFileSync(f, 'utf8'));
}

/** Values of every YAML type, to put where another type was. */
const anyValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.constantFrom('30s', '-1s', '0', '1ms', 'https://x.test/', '${UNSET_FUZZ_VAR}', '{env: X}', '[', '*/5 * * * *', 'http', ''),
  fc.array(fc.string({ maxLength: 5 }), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 6 }), fc.string({ maxLength: 6 }), { maxKeys: 3 }),
);

type Path = (string | number)[];
function paths(v: unknown, at: Path = [], out: Path[] = []): Path[] {
  out.push(at);
  if (Array.isArray(v)) v.forEach((x, i) => paths(x, [...at, i], out));
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) paths(x, [...at, k], out);
  return out;
}

/** One structural edit of a parsed config at the path picked by `pick`. */
const structuralEdit = fc.record({
  pick: fc.nat(),
  op: fc.constantFrom('delete', 'retype', 'rename', 'wrap'),
  value: anyValue,
  key: fc.oneof(
    fc.string({ maxLength: 10 }),
    fc.constantFrom('kind', 'name', 'url', 'timeout', 'interval', 'cron', 'labels', 'platform', 'expect', 'probes', 'defaults', 'lab'),
  ),
});

function applyEdit(doc: unknown, e: { pick: number; op: string; value: unknown; key: string }): unknown {
  const all = paths(doc);
  const p = all[e.pick % all.length];
  if (p.length === 0) return e.op === 'delete' ? null : e.op === 'wrap' ? [doc] : e.value;
  const parent = p.slice(0, -1).reduce<any>((o, k) => o[k], doc);
  const last = p[p.length - 1];
  if (e.op === 'delete') {
    if (Array.isArray(parent)) parent.splice(Number(last), 1);
    else delete parent[last];
  } else if (e.op === 'retype') parent[last] = e.value;
  else if (e.op === 'wrap') parent[last] = [parent[last]];
  else if (!Array.isArray(parent)) {
    parent[e.key] = parent[last];
    delete parent[last];
  }
  return doc;
}

/** One textual edit: YAML's own failure modes (indentation, stray characters, cut lines). */
const textEdit = fc.record({
  line: fc.nat(),
  op: fc.constantFrom('indent', 'dedent', 'delete-line', 'insert', 'truncate', 'duplicate-line', 'tab'),
  text: fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom(':', '- ', '"', "'", '{', '[', '&a', '*a', '!!binary', '#', '  ', '\t', '${', '%YAML 1.2')),
});

function applyTextEdit(src: string, e: { line: number; op: string; text: string }): string {
  const lines = src.split('\n');
  const i = e.line % Math.max(1, lines.length);
  switch (e.op) {
    case 'indent':
      lines[i] = '  ' + lines[i];
      break;
    case 'dedent':
      lines[i] = lines[i].replace(/^ {1,2}/, '');
      break;
    case 'tab':
      lines[i] = '\t' + lines[i];
      break;
    case 'delete-line':
      lines.splice(i, 1);
      break;
    case 'duplicate-line':
      lines.splice(i, 0, lines[i]);
      break;
    case 'insert': {
      const at = lines[i].length ? e.text.length % (lines[i].length + 1) : 0;
      lines[i] = lines[i].slice(0, at) + e.text + lines[i].slice(at);
      break;
    }
    case 'truncate':
      return lines.slice(0, i).join('\n') + '\n' + (lines[i] ?? '').slice(0, Math.floor((lines[i] ?? '').length / 2));
  }
  return lines.join('\n');
}

describe('bad configs: always a ConfigError naming file and field', () => {
  let dir: string;
  let labVars: Record<string, string>;
  let n = 0;
  beforeAll(() => {
    dir = tempDir('fleetprobe-fuzz-');
    fs.writeFileSync(path.join(dir, 'ca.pem'), 'not really a CA\n');
    labVars = {
      LAB_URL_FRONT_PORT: '8443',
      LAB_URL_DOMAIN: 'devices.fuzz.test',
      LAB_DEVICE_UUID: 'a1',
      LAB_DEVICE2_UUID: 'a2',
      LAB_DEVICE3_UUID: 'a3',
      LAB_CA_FILE: path.join(dir, 'ca.pem'),
      LAB_CONTROL_URL: 'http://127.0.0.1:1',
    };
  });

  function check(text: string): void {
    const file = path.join(dir, `fuzz-${n++}.yaml`);
    fs.writeFileSync(file, text);
    try {
      loadConfig({ paths: [file], lab: true, vars: labVars });
    } catch (err) {
      if (!(err instanceof ConfigError))
        throw new Error(`loadConfig threw ${(err as Error)?.name}: ${(err as Error)?.message}\n--- config ---\n${text}`, { cause: err });
      for (const issue of err.issues) {
        const where = `${JSON.stringify(issue)}\n--- config ---\n${text}`;
        expect(issue.file, where).toBe(file);
        expect(issue.message, where).toBeTruthy();
        // A field path, or a problem of the file as a whole, located by its line.
        if (!issue.path) expect(issue.line, where).toBeGreaterThan(0);
      }
    } finally {
      fs.rmSync(file, { force: true });
    }
  }

  const seeds = seedConfigs();
  const parses = (src: string) => {
    try {
      YAML.parse(src);
      return true;
    } catch {
      return false;
    }
  };

  it('structurally mutated configs (fields deleted, renamed, retyped, wrapped)', () => {
    fc.assert(
      fc.property(fc.constantFrom(...seeds.filter(parses)), fc.array(structuralEdit, { minLength: 1, maxLength: 4 }), (src, edits) => {
        let doc = YAML.parse(src);
        for (const e of edits) doc = applyEdit(doc, e);
        check(YAML.stringify(doc));
      }),
      { seed: SEED, numRuns: 300 },
    );
  });

  it('textually mutated configs (indentation, stray characters, cut and doubled lines)', () => {
    fc.assert(
      fc.property(fc.constantFrom(...seeds), fc.array(textEdit, { minLength: 1, maxLength: 4 }), (src, edits) => {
        check(edits.reduce(applyTextEdit, src));
      }),
      { seed: SEED, numRuns: 300 },
    );
  });

  it('random text and random YAML values', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 200 }),
          fc.jsonValue({ maxDepth: 4 }).map((v) => YAML.stringify(v)),
        ),
        (text) => check(text),
      ),
      { seed: SEED, numRuns: 200 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Peers
// ---------------------------------------------------------------------------------------------

/** What the peer does with a connection: send `bytes`, then close or keep silent. */
interface Answer {
  bytes: Uint8Array;
  close: boolean;
}

interface PeerFuzz {
  kind: string;
  name: string;
  transport: 'tcp' | 'tls';
  answers: fc.Arbitrary<Answer>;
  spec(port: number, timeoutMs: number): ProbeSpec;
}

// Closing is the common case; a peer that keeps silent costs the run's whole timeout.
const closeMostly = fc.oneof({ weight: 5, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) });
const randomBytes = fc.record({ bytes: fc.uint8Array({ maxLength: 4096 }), close: closeMostly });
const enc = (s: string) => new TextEncoder().encode(s);
/** HTTP-shaped answers: a plausible or broken status line, random headers, random body bytes. */
const httpish = fc
  .record({
    status: fc.oneof(fc.integer({ min: 100, max: 599 }).map(String), fc.string({ maxLength: 4 })),
    version: fc.constantFrom('HTTP/1.1', 'HTTP/1.0', 'HTTP/2', 'HTTP/1.1 ', 'ICY', ''),
    headers: fc.array(
      fc.tuple(
        fc.oneof(fc.constantFrom('content-length', 'transfer-encoding', 'location', 'content-type'), fc.string({ maxLength: 12 })),
        fc.string({ maxLength: 30 }),
      ),
      { maxLength: 5 },
    ),
    body: fc.uint8Array({ maxLength: 512 }),
    eol: fc.constantFrom('\r\n', '\n', '\r'),
    close: closeMostly,
  })
  .map(({ status, version, headers, body, eol, close }) => ({
    bytes: new Uint8Array([...enc(`${version} ${status} X${eol}${headers.map(([k, v]) => `${k}: ${v}`).join(eol)}${eol}${eol}`), ...body]),
    close,
  }));

/** API answers: a 200 with JSON in the shape of a device resource, its fields of any type or missing. */
const anyOf = <T>(...xs: fc.Arbitrary<T>[]) => fc.oneof(...xs);
const deviceAnswers = fc
  .record({
    body: fc.oneof(
      fc.jsonValue({ maxDepth: 3 }),
      fc.record({
        d: fc.array(
          fc.record(
            {
              is_online: anyOf<unknown>(fc.boolean(), fc.constant(null), fc.string({ maxLength: 5 }), fc.integer()),
              is_connected_to_vpn: anyOf<unknown>(fc.boolean(), fc.constant(null), fc.string({ maxLength: 5 })),
              last_connectivity_event: anyOf<unknown>(
                fc.constant(null),
                fc.integer({ min: 0, max: 4e12 }).map((t) => new Date(t).toISOString()),
                fc.string({ maxLength: 20 }),
              ),
              last_vpn_event: anyOf<unknown>(
                fc.constant(null),
                fc.integer({ min: 0, max: 4e12 }).map((t) => new Date(t).toISOString()),
                fc.integer(),
              ),
              api_heartbeat_state: anyOf<unknown>(fc.constant(null), fc.constantFrom('online', 'offline', 'timeout', 'unknown'), fc.integer()),
              extra: fc.jsonValue({ maxDepth: 2 }),
            },
            { requiredKeys: [] },
          ),
          { maxLength: 2 },
        ),
      }),
    ),
    status: fc.constantFrom(200, 200, 200, 401, 404, 500, 503),
    close: closeMostly,
  })
  .map(({ body, status, close }) => {
    const json = enc(JSON.stringify(body) ?? 'null');
    return {
      bytes: new Uint8Array([...enc(`HTTP/1.1 ${status} X\r\ncontent-type: application/json\r\ncontent-length: ${json.length}\r\n\r\n`), ...json]),
      close,
    };
  });

const FUZZ_MARKER = 'fuzz-marker-9f3b1c';
const httpSpec = (scheme: 'http' | 'https') => (port: number, timeoutMs: number) =>
  makeSpec(
    'http',
    'fuzz-http',
    { url: `${scheme}://127.0.0.1:${port}/`, tls: { insecureSkipVerify: true }, expect: { status: ['100-599'], body: FUZZ_MARKER } },
    timeoutMs,
  );

/** SSH banners: a plausible or broken identification line, then random bytes. */
const banners = fc
  .record({
    ident: fc.oneof(
      fc.constantFrom('SSH-2.0-OpenSSH_9.2p1', 'SSH-1.99-x', 'SSH-1.5-old', 'SSH-2.0-', 'HTTP/1.1 400 Bad Request'),
      fc.string({ maxLength: 40 }),
    ),
    eol: fc.constantFrom('\r\n', '\n', ''),
    rest: fc.uint8Array({ maxLength: 1024 }),
    close: closeMostly,
  })
  .map(({ ident, eol, rest, close }) => ({ bytes: new Uint8Array([...enc(ident + eol), ...rest]), close }));

/** Builder answers: a 200 whose stream is not a build log (random bytes, JSON of other shapes, cut items). */
const builderStreams = fc
  .record({
    body: fc.oneof(
      fc.uint8Array({ maxLength: 1024 }),
      fc.jsonValue({ maxDepth: 3 }).map((v) => enc(JSON.stringify(v))),
      fc.jsonValue({ maxDepth: 2 }).map((v) => enc(`[{"message":"Step 1/3","isError":fals${JSON.stringify(v)}`)),
      fc.string({ maxLength: 200 }).map((t) => enc(`[{"type":"metadata","resource":"buildLogId","value":1},{"message":${JSON.stringify(t)}`)),
    ),
    chunked: fc.boolean(),
    close: closeMostly,
  })
  .map(({ body, chunked, close }) => ({
    bytes: new Uint8Array([
      ...enc(
        `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n${chunked ? 'transfer-encoding: chunked\r\n\r\n' + body.length.toString(16) + '\r\n' : '\r\n'}`,
      ),
      ...body,
    ]),
    close,
  }));

let sshKeyFile = '';
/** An unencrypted key the fuzz peers never accept (written once, ssh2 keys retried as in src/lab). */
function sshKey(): string {
  if (sshKeyFile) return sshKeyFile;
  let key: string;
  do key = utils.generateKeyPairSync('ed25519').private;
  while (utils.parseKey(key) instanceof Error);
  sshKeyFile = path.join(tempDir('fleetprobe-fuzz-key-'), 'key');
  fs.writeFileSync(sshKeyFile, key, { mode: 0o600 });
  return sshKeyFile;
}

const PEER_FUZZ: PeerFuzz[] = [
  { kind: 'http', name: 'random bytes', transport: 'tcp', answers: randomBytes, spec: httpSpec('http') },
  { kind: 'http', name: 'HTTP-shaped garbage', transport: 'tcp', answers: httpish, spec: httpSpec('http') },
  { kind: 'http', name: 'random bytes inside TLS', transport: 'tls', answers: fc.oneof(randomBytes, httpish), spec: httpSpec('https') },
  {
    kind: 'ssh',
    name: 'SSH banners and random bytes',
    transport: 'tcp',
    answers: fc.oneof(banners, randomBytes),
    spec: (port, timeoutMs) =>
      makeSpec(
        'ssh',
        'fuzz-ssh',
        { sshProxy: `127.0.0.1:${port}`, user: 'fuzz', sshKey: { file: sshKey() }, hostKeys: 'SHA256:' + 'A'.repeat(43), device: 'c0ffee01', command: 'uname' },
        timeoutMs,
      ),
  },
  {
    kind: 'tunnel',
    name: 'CONNECT proxy answers',
    transport: 'tcp',
    answers: fc.oneof(httpish, randomBytes),
    spec: (port, timeoutMs) =>
      makeSpec(
        'tunnel',
        'fuzz-tunnel',
        {
          tunnel: `127.0.0.1:${port}`,
          tunnelTls: false,
          user: 'fuzz',
          token: { env: 'FP_FUZZ_TOKEN' },
          device: 'c0ffee01',
          port: 80,
          http: { path: '/', expect: { body: FUZZ_MARKER } },
        },
        timeoutMs,
      ),
  },
  {
    kind: 'build',
    name: 'builder streams and API answers',
    transport: 'tcp',
    answers: fc.oneof(builderStreams, httpish, randomBytes),
    spec: (port, timeoutMs) =>
      makeSpec(
        'build',
        'fuzz-build',
        {
          fleet: 'fuzz/fleet',
          builder: `http://127.0.0.1:${port}`,
          api: `http://127.0.0.1:${port}`,
          token: { env: 'FP_FUZZ_TOKEN' },
          dockerfile: 'FROM scratch\n',
        },
        timeoutMs,
      ),
  },
  {
    kind: 'device-status',
    name: 'API answers (the tunnel check goes to a closed port, so no answer can pass)',
    transport: 'tcp',
    answers: fc.oneof(deviceAnswers, httpish, randomBytes),
    spec: (port, timeoutMs) =>
      makeSpec(
        'device-status',
        'fuzz-device-status',
        { api: `http://127.0.0.1:${port}`, token: { env: 'FP_FUZZ_TOKEN' }, tunnel: '127.0.0.1:1', tunnelTls: false, device: 'c0ffee01' },
        timeoutMs,
      ),
  },
];
process.env.FP_FUZZ_TOKEN ??= 'fuzz-token-not-a-secret';

describe('random bytes from peers: never a pass, never internal, never a crash', () => {
  const peers = new Map<string, Peer>();
  let current: Answer = { bytes: new Uint8Array(), close: true };
  const answer = (s: net.Socket) => {
    const a = current;
    s.on('error', () => {});
    // Answer once the request is in, as a server would (some clients wait to send before reading).
    s.once('data', () => (a.close ? s.end(a.bytes) : s.write(a.bytes)));
  };
  beforeAll(async () => {
    peers.set('tcp', await rawPeer(answer));
    peers.set('tls', await tlsPeer(selfSignedCert(), answer));
  });
  afterAll(async () => {
    for (const p of peers.values()) await p.close();
  });

  it.each(PEER_FUZZ.map((f) => [`${f.kind}: ${f.name}`, f] as const))(
    '%s',
    async (_t, f) => {
      const peer = peers.get(f.transport)!;
      await fc.assert(
        fc.asyncProperty(f.answers, async (a) => {
          current = a;
          const r = await runProbe(f.spec(peer.port, 300), KINDS[f.kind], { log });
          const seen = `${JSON.stringify({ success: r.success, reason: r.reason, phase: r.phase, message: r.message })} for ${JSON.stringify(Buffer.from(a.bytes).toString('latin1').slice(0, 200))}`;
          expect(r.success, seen).toBe(false);
          expect(r.reason, seen).not.toBe('internal');
          expect(r.aborted, seen).toBe(false);
        }),
        { seed: SEED, numRuns: 120 },
      );
      await peer.idle(2000);
    },
    120_000,
  );
});
