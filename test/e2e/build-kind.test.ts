import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import zlib from 'node:zlib';
import { pino } from 'pino';
import tar from 'tar-stream';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ProbeSpec, ProgressEvent } from '../../src/core/kind.js';
import type { RunResult } from '../../src/core/result.js';
import { runProbe } from '../../src/core/run.js';
import { buildKind } from '../../src/kinds/build.js';
import { startLab, type Lab } from '../../src/lab/index.js';
import { loadConfig } from '../../src/config/load.js';
import type { ConfigError } from '../../src/core/errors.js';
import { ROOT, runCli } from '../helpers/cli.js';
import { httpPeer, rawPeer, type Peer } from '../helpers/http-peers.js';

/**
 * The real build kind through runProbe (what the daemon does) against the lab's builder and API,
 * and raw peers for answers the lab never gives. Every lab fault with its exact reason and phase,
 * and the cancellation of a build the probe gave up on, as the lab's API saw it.
 */

const log = pino({ level: 'silent' });
type Fields = Record<string, unknown>;
const CONTEXT = path.join(ROOT, 'probes', 'build-context');

function makeSpec(fields: Fields, timeoutMs: number): ProbeSpec {
  return {
    name: 'build-e2e',
    kind: 'build',
    intervalMs: 30 * 60_000,
    timeoutMs,
    labels: {},
    source: { file: 'test/e2e/build-kind.test.ts' },
    config: buildKind.schema.parse(fields),
    digest: 'test',
  };
}

function runBuild(fields: Fields, timeoutMs = 10_000, onProgress?: (e: ProgressEvent) => void): Promise<RunResult> {
  return runProbe(makeSpec(fields, timeoutMs), buildKind, { log, onProgress });
}

function expectOutcome(r: RunResult, want: { success: boolean; reason: string | null; phase: string | null }, ...message: (string | RegExp)[]): void {
  expect({ success: r.success, reason: r.reason, phase: r.phase }, JSON.stringify(r)).toEqual(want);
  for (const m of message) {
    if (typeof m === 'string') expect(r.message).toContain(m);
    else expect(r.message).toMatch(m);
  }
}
const fail = (reason: string, phase: string) => ({ success: false, reason, phase });

describe('build kind against the lab builder', () => {
  let lab: Lab;
  beforeAll(async () => {
    lab = await startLab();
  });
  afterAll(async () => {
    await lab?.close();
  });
  beforeEach(() => {
    for (const f of lab.faults.active()) lab.faults.set(f, false);
  });

  const labBuild = (extra: Fields = {}): Fields => ({
    fleet: 'lab/probe-fleet',
    builder: lab.vars.LAB_BUILDER_URL,
    api: lab.vars.LAB_API_URL,
    token: { file: lab.vars.LAB_BUILDER_TOKEN_FILE },
    context: CONTEXT,
    tls: { caFile: lab.caFile },
    ...extra,
  });

  it('passes, records the release id, times every phase and streams the log', async () => {
    const events: ProgressEvent[] = [];
    const r = await runBuild(labBuild(), 10_000, (e) => events.push(e));
    expectOutcome(r, { success: true, reason: null, phase: null });
    expect(r.message).toBeNull();
    expect(Object.keys(r.phases)).toEqual(['pack', 'resolve', 'connect', 'tls', 'upload', 'queue', 'build']);
    const release = lab.releases.get(r.observations.release_id as number)!;
    expect(release).toMatchObject({ slug: 'lab/probe-fleet', status: 'success', isDraft: true, cancelledAt: null });
    // The log came live, cleaned of the builder's colours, each line in the phase it arrived in.
    const lines = events.filter((e) => e.line !== undefined);
    expect(lines.find((e) => e.line!.includes('Step 3/3 : COPY fleetprobe-nonce'))?.phase).toBe('build');
    expect(lines[0]).toMatchObject({ phase: 'queue', line: '[Info]    Starting build for lab/probe-fleet, user lab' });
    expect(lines.some((e) => e.transient && e.line!.includes('Pulling previous images'))).toBe(true);
    expect(lines.every((e) => !e.line!.includes('\u001b'))).toBe(true);
    expect(events.filter((e) => e.line === undefined).map((e) => e.phase)).toEqual(['pack', 'resolve', 'connect', 'tls', 'upload', 'queue', 'build']);
  });

  it('sends a fresh nonce every run, so no two builds are the same', async () => {
    const a = await runBuild(labBuild({ context: undefined, dockerfile: 'FROM scratch\nCOPY fleetprobe-nonce /n\n' }));
    const b = await runBuild(labBuild({ context: undefined, dockerfile: 'FROM scratch\nCOPY fleetprobe-nonce /n\n' }));
    const [ra, rb] = [lab.releases.get(a.observations.release_id as number)!, lab.releases.get(b.observations.release_id as number)!];
    expect(ra.nonce).toMatch(/^\d{4}-\d\d-\d\dT.* [0-9a-f-]{36}$/);
    expect(rb.nonce).not.toBe(ra.nonce);
  });

  interface FaultCase {
    fault: string;
    want: { success: boolean; reason: string; phase: string };
    message: (string | RegExp)[];
    /** What the release ends as on the platform. */
    release?: string;
  }
  const faults: FaultCase[] = [
    {
      fault: 'build-fails',
      want: fail('build_failed', 'build'),
      message: [
        /the builder reported that the build failed \(release \d+\): \[Error\] +Build failed: The command '\/bin\/sh -c exit 1' returned a non-zero code: 1 \| \[Error\] +Not deploying release\./,
      ],
      release: 'failed',
    },
    {
      fault: 'build-stall',
      want: fail('timeout', 'build'),
      message: ['the builder sent nothing for 600ms (stall timeout) after 5 log item(s)'],
      release: 'cancelled',
    },
    {
      fault: 'build-cut',
      want: fail('protocol', 'build'),
      message: [/the build stream from https:\/\/127\.0\.0\.1:\d+ was cut after 5 item\(s\)/],
      release: 'cancelled',
    },
    {
      fault: 'build-slow-upload',
      want: fail('timeout', 'upload'),
      message: [/the builder did not take the \d+-byte build context and answer within the upload timeout of 600ms/],
    },
    {
      fault: 'builder-unauthorized',
      want: fail('auth', 'upload'),
      message: [/the builder \(https:\/\/127\.0\.0\.1:\d+\) refused our credentials: HTTP 401: Unauthorized/],
    },
  ];
  for (const c of faults) {
    it(`fault ${c.fault}: ${c.want.reason} in ${c.want.phase}`, async () => {
      lab.faults.set(c.fault, true);
      const before = lab.releases.list().length;
      const r = await runBuild(labBuild({ uploadTimeout: '600ms', stallTimeout: '600ms' }));
      expectOutcome(r, c.want, ...c.message);
      const made = lab.releases.list().slice(before);
      if (!c.release) return expect(made).toEqual([]);
      expect(made).toHaveLength(1);
      expect(r.observations.release_id).toBe(made[0].id);
      // A build we stopped following is cancelled by the time the run is reported; a failed one is left as it is.
      expect(made[0].status).toBe(c.release);
      if (c.release === 'cancelled') expect(made[0].endTimestamp).toMatch(/^\d{4}-/);
    });
  }

  it('the run deadline in the middle of a build cancels the release before the result is reported', async () => {
    lab.faults.set('build-stall', true);
    const t0 = performance.now();
    const r = await runBuild(labBuild(), 800);
    expectOutcome(r, fail('timeout', 'build'), 'build did not finish within the run timeout of 800ms');
    expect(performance.now() - t0).toBeLessThan(5000);
    const release = lab.releases.get(r.observations.release_id as number)!;
    expect(release.status).toBe('cancelled');
    expect(release.cancelledAt).not.toBeNull();
  });

  it('a shutdown in the middle of a build cancels the release and is not a failure', async () => {
    lab.faults.set('build-stall', true);
    const shutdown = new AbortController();
    const events: ProgressEvent[] = [];
    const running = runProbe(makeSpec(labBuild(), 10_000), buildKind, {
      log,
      shutdown: shutdown.signal,
      onProgress: (e) => {
        events.push(e);
        if (e.line?.includes('Starting build')) shutdown.abort();
      },
    });
    const r = await running;
    expect({ aborted: r.aborted, success: r.success, phase: r.phase }).toEqual({ aborted: true, success: false, phase: 'queue' });
    expect(lab.releases.get(r.observations.release_id as number)!.status).toBe('cancelled');
  });

  it('a wrong token is auth in upload and never appears in the result', async () => {
    const file = path.join(fs.mkdtempSync(path.join(lab.vars.LAB_CA_FILE, '..', 'tok-')), 'token');
    fs.writeFileSync(file, 'canary-token-5f2b9e\n');
    const r = await runBuild(labBuild({ token: { file } }));
    expectOutcome(r, fail('auth', 'upload'), 'HTTP 401');
    expect(JSON.stringify(r)).not.toContain('canary-token-5f2b9e');
  });

  it('an untrusted builder certificate is tls in tls', async () => {
    const r = await runBuild(labBuild({ tls: {} }));
    expectOutcome(r, fail('tls', 'tls'));
  });
});

/** A builder that checks nothing and answers what the test says, recording the request. */
function fakeBuilder(
  answer: (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => void,
): Promise<Peer & { requests: { url: string; headers: http.IncomingHttpHeaders; body: Buffer }[] }> {
  const requests: { url: string; headers: http.IncomingHttpHeaders; body: Buffer }[] = [];
  return httpPeer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      requests.push({ url: req.url ?? '', headers: req.headers, body });
      answer(req, res, body);
    });
  }).then((peer) => Object.assign(peer, { requests }));
}

async function untar(buf: Buffer): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  const ex = tar.extract();
  ex.on('entry', (h, s, next) => {
    let t = '';
    s.on('data', (c) => (t += c));
    s.on('end', () => {
      files.set(h.name, t);
      next();
    });
  });
  await new Promise<void>((resolve, reject) => {
    ex.on('finish', resolve);
    ex.on('error', reject);
    ex.end(buf);
  });
  return files;
}

describe('build kind against raw builders', () => {
  const peers: Peer[] = [];
  afterAll(async () => {
    for (const p of peers) await p.close();
  });
  const TOKEN_ENV = 'FLEETPROBE_TEST_BUILD_TOKEN';
  process.env[TOKEN_ENV] = 'canary-secret-91c3a7d0';
  const fields = (url: string, extra: Fields = {}): Fields => ({
    fleet: 'org/fleet',
    builder: url,
    api: url,
    token: { env: TOKEN_ENV },
    dockerfile: 'FROM scratch\nCOPY fleetprobe-nonce /\n',
    ...extra,
  });

  it('submits a draft build with the Bearer token and a gzipped tar of the context and nonce', async () => {
    const b = await fakeBuilder((_req, res) => res.end('[{"type":"metadata","resource":"buildLogId","value":7},{"message":"ok"}]'));
    peers.push(b);
    const r = await runBuild(fields(b.url, { dockerfilePath: 'sub/Dockerfile.probe', nocache: true, emulated: true }));
    expectOutcome(r, { success: true, reason: null, phase: null });
    expect(r.observations.release_id).toBe(7);
    const req = b.requests[0];
    const q = new URL(req.url, 'http://x').searchParams;
    expect(Object.fromEntries(q)).toEqual({
      slug: 'org/fleet',
      dockerfilePath: 'sub/Dockerfile.probe',
      emulated: 'true',
      nocache: 'true',
      headless: 'false',
      isdraft: 'true',
    });
    expect(req.headers.authorization).toBe('Bearer canary-secret-91c3a7d0');
    expect(req.headers['content-encoding']).toBe('gzip');
    const files = await untar(zlib.gunzipSync(req.body));
    expect([...files.keys()].sort()).toEqual(['fleetprobe-nonce', 'sub/Dockerfile.probe']);
    expect(files.get('sub/Dockerfile.probe')).toBe('FROM scratch\nCOPY fleetprobe-nonce /\n');
  });

  const answers: { name: string; answer: (res: http.ServerResponse) => void; want: ReturnType<typeof fail>; message: (string | RegExp)[] }[] = [
    {
      name: 'a 403 is auth, with the reason from the body',
      answer: (res) => res.writeHead(403, { 'content-type': 'application/json' }).end('{"message":"You do not have access to org/fleet"}'),
      want: fail('auth', 'upload'),
      message: ['refused our credentials: HTTP 403: You do not have access to org/fleet'],
    },
    {
      name: 'a 502 HTML page is proxy, with its text',
      answer: (res) => res.writeHead(502, { 'content-type': 'text/html' }).end('<html><body><h1>502 Bad Gateway</h1></body></html>'),
      want: fail('proxy', 'upload'),
      message: [/answered HTTP 502: 502 Bad Gateway/],
    },
    {
      name: 'a 400 is proxy on the platform builder (not our build failing)',
      answer: (res) => res.writeHead(400).end('{"error":"Invalid slug"}'),
      want: fail('proxy', 'upload'),
      message: ['HTTP 400: Invalid slug'],
    },
    {
      name: 'a 200 that is not a JSON array is protocol',
      answer: (res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<html>maintenance</html>'),
      want: fail('protocol', 'queue'),
      message: ['expected the start of a JSON array "[" in the stream but got "<"'],
    },
    {
      name: 'an array that closes with no log is protocol',
      answer: (res) => res.end('[{"type":"metadata","resource":"buildLogId","value":9}]'),
      want: fail('protocol', 'queue'),
      message: ["the builder's answer held no build log (release 9)"],
    },
    {
      name: 'a stream that ends without the closing bracket is protocol',
      answer: (res) => res.end('[{"type":"metadata","resource":"buildLogId","value":9},{"message":"Step 1/2"}'),
      want: fail('protocol', 'build'),
      message: ['the stream ended after 2 item(s) without the closing "]"'],
    },
    {
      name: 'an isError line fails the build even when the stream then ends badly',
      answer: (res) => res.end('[{"message":"Step 1/2"},{"message":"no space left on device","isError":true},{"mess'),
      want: fail('build_failed', 'build'),
      message: ['the builder reported that the build failed: no space left on device'],
    },
    {
      name: 'an isError as the very first line is build_failed',
      answer: (res) => res.end('[{"message":"\\u001b[31m[Error]\\u001b[39m Could not parse Dockerfile","isError":true}]'),
      want: fail('build_failed', 'build'),
      message: ['the builder reported that the build failed: [Error] Could not parse Dockerfile'],
    },
  ];
  for (const c of answers) {
    it(c.name, async () => {
      const b = await fakeBuilder((_req, res) => c.answer(res));
      peers.push(b);
      const r = await runBuild(fields(b.url));
      expectOutcome(r, c.want, ...c.message);
      expect(JSON.stringify(r)).not.toContain('canary-secret-91c3a7d0');
      await b.idle();
    });
  }

  it('a builder that echoes our token in its error never gets it into the message', async () => {
    const b = await fakeBuilder((req, res) => res.writeHead(401).end(`{"message":"bad token ${req.headers.authorization}"}`));
    peers.push(b);
    const r = await runBuild(fields(b.url));
    expectOutcome(r, fail('auth', 'upload'), 'bad token Bearer [redacted]');
    expect(JSON.stringify(r)).not.toContain('canary-secret-91c3a7d0');
  });

  it('a connection reset while uploading is connect in upload', async () => {
    const p = await rawPeer((s) => s.once('data', () => s.resetAndDestroy()));
    peers.push(p);
    const r = await runBuild(fields(p.url));
    expectOutcome(r, fail('connect', 'upload'), /uploading the build context to http:\/\/127\.0\.0\.1:\d+ failed/);
  });

  it('a builder that never answers is timeout in upload, within the upload timeout', async () => {
    const p = await rawPeer((s) => s.resume());
    peers.push(p);
    const t0 = performance.now();
    const r = await runBuild(fields(p.url, { uploadTimeout: '300ms' }));
    expectOutcome(r, fail('timeout', 'upload'), 'within the upload timeout of 300ms');
    expect(performance.now() - t0).toBeLessThan(2000);
    await p.idle();
  });

  it('a stall after the answer started cancels the release through the API', async () => {
    const patches: { url: string; auth: string | undefined; body: Record<string, unknown> }[] = [];
    const b = await fakeBuilder((req, res) => {
      if (req.method === 'PATCH') {
        return void res.end('OK');
      }
      res.write('[{"type":"metadata","resource":"buildLogId","value":4242},{"message":"Step 1/2"}');
    });
    // The same peer serves the API: record its PATCH bodies.
    b.requests.length = 0;
    peers.push(b);
    const r = await runBuild(fields(b.url, { stallTimeout: '300ms' }));
    expectOutcome(r, fail('timeout', 'build'), 'the builder sent nothing for 300ms (stall timeout) after 2 log item(s)');
    for (const req of b.requests.filter((q) => q.url.startsWith('/v7/')))
      patches.push({ url: req.url, auth: req.headers.authorization, body: JSON.parse(req.body.toString()) });
    expect(patches).toHaveLength(1);
    expect(patches[0].url).toBe('/v7/release(4242)');
    expect(patches[0].auth).toBe('Bearer canary-secret-91c3a7d0');
    expect(patches[0].body.status).toBe('cancelled');
    expect(Date.parse(patches[0].body.end_timestamp as string)).toBeGreaterThan(Date.now() - 60_000);
  });
});

describe('build kind, docker target against raw engines on a unix socket', () => {
  const peers: Peer[] = [];
  const dirs: string[] = [];
  afterAll(async () => {
    for (const p of peers) await p.close();
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  async function unixEngine(handler: http.RequestListener): Promise<{ socketPath: string; peer: Peer; deleted: string[] }> {
    const dir = fs.mkdtempSync(path.join(process.env.TMPDIR ?? '/tmp', 'fp-docker-'));
    dirs.push(dir);
    const socketPath = path.join(dir, 'docker.sock');
    const deleted: string[] = [];
    const server = http.createServer((req, res) => {
      if (req.method === 'DELETE') {
        deleted.push(req.url ?? '');
        return void res.writeHead(200).end('[]');
      }
      handler(req, res);
    });
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    const peer: Peer = {
      port: 0,
      url: `unix://${socketPath}`,
      open: () => 0,
      accepted: () => 0,
      idle: async () => {},
      close: () =>
        new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    };
    peers.push(peer);
    return { socketPath, peer, deleted };
  }
  const lines = (...items: object[]) => items.map((i) => JSON.stringify(i) + '\n').join('');

  it('passes on an image ID, records it, and removes the image afterwards', async () => {
    let query = '';
    const e = await unixEngine((req, res) => {
      query = req.url ?? '';
      req.resume();
      req.on('end', () =>
        res.end(lines({ stream: 'Step 1/1 : FROM scratch' }, { stream: '\n' }, { aux: { ID: 'sha256:abc' } }, { stream: 'Successfully built abc\n' })),
      );
    });
    const r = await runBuild({ target: 'docker', docker: `unix://${e.socketPath}`, context: CONTEXT });
    expectOutcome(r, { success: true, reason: null, phase: null });
    expect(r.observations.image_id).toBe('sha256:abc');
    expect(Object.keys(r.phases)).toEqual(['pack', 'connect', 'upload', 'queue', 'build']);
    expect(query).toMatch(/^\/build\?rm=1&forcerm=1&nocache=0$/);
    expect(e.deleted).toEqual(['/images/sha256%3Aabc?force=1']);
  });

  // A classic-builder log up to a step in progress: FROM's id is the base image, the cached step's
  // id was there before, the COPY's id is the one image this build committed.
  const partialBuild = lines(
    { stream: 'Step 1/4 : FROM debian:bookworm\n' },
    { stream: ' ---> 0123456789ab\n' },
    { stream: 'Step 2/4 : RUN true\n' },
    { stream: ' ---> Using cache\n' },
    { stream: ' ---> 1111111111aa\n' },
    { stream: 'Step 3/4 : COPY fleetprobe-nonce /n\n' },
    { stream: ' ---> 5a1b2c3d4e5f\n' },
    { stream: 'Step 4/4 : RUN sleep 3600\n' },
    { stream: ' ---> Running in 99887766aabb\n' },
  );
  it('a build that times out removes the image it committed so far (not the base, not a cached one)', async () => {
    const e = await unixEngine((req, res) => {
      req.resume();
      req.on('end', () => res.write(partialBuild));
    });
    const r = await runBuild({ target: 'docker', docker: `unix://${e.socketPath}`, context: CONTEXT }, 1500);
    expectOutcome(r, fail('timeout', 'build'));
    expect(e.deleted).toEqual(['/images/5a1b2c3d4e5f?force=1']);
  });

  it('a build stopped by a shutdown (SIGTERM) removes the image it committed so far', async () => {
    const e = await unixEngine((req, res) => {
      req.resume();
      req.on('end', () => res.write(partialBuild));
    });
    const shutdown = new AbortController();
    const r = await runProbe(makeSpec({ target: 'docker', docker: `unix://${e.socketPath}`, context: CONTEXT }, 10_000), buildKind, {
      log,
      shutdown: shutdown.signal,
      onProgress: (p) => {
        if (p.line?.includes('Running in')) shutdown.abort();
      },
    });
    expect(r.aborted).toBe(true);
    expect(e.deleted).toEqual(['/images/5a1b2c3d4e5f?force=1']);
  });

  it("an error item is build_failed with the engine's text", async () => {
    const e = await unixEngine((req, res) => {
      req.resume();
      req.on('end', () =>
        res.end(lines({ stream: 'Step 1/2 : FROM scratch\n' }, { errorDetail: { message: 'COPY failed: no such file' }, error: 'COPY failed: no such file' })),
      );
    });
    const r = await runBuild({ target: 'docker', docker: `unix://${e.socketPath}` });
    expectOutcome(r, fail('build_failed', 'build'), 'the Docker engine reported that the build failed: COPY failed: no such file');
  });

  it('an error item that is not text is build_failed with its JSON, however deep it nests', async () => {
    // Written by hand: JSON.stringify and String() both overflow the stack on it.
    const deep = '['.repeat(20_000) + '"no space left"' + ']'.repeat(20_000);
    const e = await unixEngine((req, res) => {
      req.resume();
      req.on('end', () => res.end(lines({ stream: 'Step 1/2 : FROM scratch\n' }) + `{"errorDetail":{"code":1},"error":${deep}}\n`));
    });
    const r = await runBuild({ target: 'docker', docker: `unix://${e.socketPath}` });
    expectOutcome(r, fail('build_failed', 'build'), `the Docker engine reported that the build failed: ${'['.repeat(199)}…`);
  });

  it('a stream with neither an image ID nor an error is protocol', async () => {
    const e = await unixEngine((req, res) => {
      req.resume();
      req.on('end', () => res.end(lines({ stream: 'Step 1/1 : FROM scratch\n' })));
    });
    const r = await runBuild({ target: 'docker', docker: `unix://${e.socketPath}` });
    expectOutcome(r, fail('protocol', 'build'), 'ended with neither an image ID nor an error after 1 log line(s)');
  });

  it('a missing socket is connect in connect', async () => {
    const r = await runBuild({ target: 'docker', docker: 'unix:///nonexistent/docker.sock' });
    expectOutcome(r, fail('connect', 'connect'), 'ENOENT /nonexistent/docker.sock');
  });
});

describe('build probes in configuration and on the command line', () => {
  const dir = fs.mkdtempSync(path.join(process.env.TMPDIR ?? '/tmp', 'fp-build-cfg-'));
  process.env.FLEETPROBE_TEST_BUILD_TOKEN ??= 'canary-secret-91c3a7d0';
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const load = (yaml: string) => {
    const file = path.join(dir, `c${Math.random().toString(36).slice(2)}.yaml`);
    fs.writeFileSync(file, yaml);
    return loadConfig({ paths: [file] });
  };
  const problems = (yaml: string): string[] => {
    try {
      load(yaml);
    } catch (err) {
      return (err as ConfigError).issues.map((i) => `${i.path}: ${i.message}`);
    }
    return [];
  };

  it('defaults to an interval of 30 minutes and a timeout of 15 minutes', () => {
    const [spec] = load('probes:\n  - { name: b, kind: build, target: docker }\n').probes;
    expect({ intervalMs: spec.intervalMs, timeoutMs: spec.timeoutMs }).toEqual({ intervalMs: 30 * 60_000, timeoutMs: 15 * 60_000 });
  });

  it('rejects a schedule whose runs would overlap, for intervals and cron', () => {
    expect(problems('probes:\n  - { name: b, kind: build, target: docker, interval: 10m, timeout: 15m }\n')).toEqual([
      'probes[0].timeout: timeout 15m must be below the interval (10m), so runs never overlap',
    ]);
    expect(problems('probes:\n  - { name: b, kind: build, target: docker, cron: "*/10 * * * *", timeout: 10m }\n')).toEqual([
      'probes[0].timeout: timeout 10m must be below the gap between cron runs (10m), so runs never overlap',
    ]);
    // An interval alone shorter than the kind's 15-minute timeout takes 80% of it instead.
    const [spec] = load('probes:\n  - { name: b, kind: build, target: docker, interval: 5m }\n').probes;
    expect(spec.timeoutMs).toBe(4 * 60_000);
  });

  it('checks the fields across each other, and the platform block supplies builder, api and token', () => {
    expect(problems('probes:\n  - { name: b, kind: build }\n')).toEqual([
      'probes[0].fleet: is required for target balena (<org>/<fleet>)',
      'probes[0].token: is required for target balena ({env: NAME} or {file: PATH}, here or in the platform block)',
    ]);
    expect(problems(`probes:\n  - { name: b, kind: build, target: docker, context: ${CONTEXT}, dockerfile: "FROM scratch" }\n`)).toEqual([
      'probes[0].dockerfile: set either context (a directory) or dockerfile (inline), not both',
    ]);
    expect(problems('probes:\n  - { name: b, kind: build, target: docker, docker: "ftp://x", context: /nonexistent-dir }\n')).toEqual([
      'probes[0].docker: a Docker endpoint is unix:///path/to/docker.sock, tcp://HOST:PORT or http://HOST:PORT',
      'probes[0].context: cannot read directory /nonexistent-dir: ENOENT',
    ]);
    expect(problems('probes:\n  - { name: b, kind: build, fleet: o/f, token: inline-token }\n')).toEqual([
      'probes[0].token: secrets must be given by reference ({env: NAME} or {file: PATH}), never inline',
    ]);
    const [spec] = load(
      'platform:\n  builder: https://builder.example.test\n  api: https://api.example.test\n  token: { env: FLEETPROBE_TEST_BUILD_TOKEN }\nprobes:\n  - { name: b, kind: build, fleet: o/f }\n',
    ).probes;
    expect(spec.config).toMatchObject({ builder: 'https://builder.example.test', api: 'https://api.example.test', target: 'balena' });
  });

  it('fleetprobe run lab-build --lab --json passes and reports its release id', async () => {
    const r = await runCli(['run', 'lab-build', '--lab', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ name: 'lab-build', kind: 'build', success: true, reason: null, phase: null });
    expect(out.observations.release_id).toBeGreaterThanOrEqual(1001);
    expect(Object.keys(out.phases)).toEqual(['pack', 'resolve', 'connect', 'tls', 'upload', 'queue', 'build']);
  });

  it('without a terminal, fleetprobe run prints the build log as plain lines, then the timeline', async () => {
    const r = await runCli(['run', 'lab-build', '--lab', '--lab-fault', 'build-fails']);
    expect(r.code).toBe(1);
    const lines = r.stdout.split('\n');
    const step = lines.indexOf('[main]     Step 3/3 : COPY fleetprobe-nonce /fleetprobe-nonce');
    const head = lines.findIndex((l) => l.startsWith('FAIL lab-build (build)  reason=build_failed  phase=build'));
    expect(step).toBeGreaterThanOrEqual(0);
    expect(head).toBeGreaterThan(step);
    // Plain: no colours, no cursor movement, no transient progress bars.
    expect(r.stdout).not.toMatch(/\u001b|\r/);
    expect(r.stdout).not.toContain('Pulling previous images');
  });
});
