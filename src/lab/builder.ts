import { createHash } from 'node:crypto';
import type http from 'node:http';
import https from 'node:https';
import { Readable } from 'node:stream';
import zlib from 'node:zlib';
import type { Logger } from 'pino';
import tar from 'tar-stream';
import type { IssuedCert } from './ca.js';
import type { FaultSwitchboard } from './faults.js';
import { listenLoopback, LAB_HOST, type LabServer } from './listen.js';

/**
 * The platform's remote builder (`POST /v3/build`, see docs/protocols.md "Builder"): takes a
 * gzipped tar, creates a draft release and streams the build log as one JSON array, piece by piece.
 * Its releases live in a LabReleases store that the lab's API (api.ts) cancels, so a test sees a
 * probe that gave up cancel what it started.
 */

export type ReleaseStatus = 'running' | 'success' | 'failed' | 'error' | 'cancelled' | 'interrupted';

export interface LabRelease {
  id: number;
  slug: string;
  status: ReleaseStatus;
  isDraft: boolean;
  /** The nonce file the build context carried (proves every run sends fresh content). */
  nonce: string | null;
  createdAt: string;
  endTimestamp: string | null;
  /** Set when the release was cancelled through the API. */
  cancelledAt: string | null;
}

export class LabReleases {
  private readonly byId = new Map<number, LabRelease>();
  private nextId = 1001;
  private readonly cancelListeners = new Map<number, () => void>();

  create(slug: string, nonce: string | null): LabRelease {
    const r: LabRelease = {
      id: this.nextId++,
      slug,
      status: 'running',
      isDraft: true,
      nonce,
      createdAt: new Date().toISOString(),
      endTimestamp: null,
      cancelledAt: null,
    };
    this.byId.set(r.id, r);
    return r;
  }

  get(id: number): LabRelease | undefined {
    return this.byId.get(id);
  }

  list(): LabRelease[] {
    return [...this.byId.values()];
  }

  finish(id: number, status: ReleaseStatus): void {
    const r = this.byId.get(id);
    if (!r || r.status !== 'running') return;
    r.status = status;
    r.endTimestamp = new Date().toISOString();
    this.cancelListeners.delete(id);
  }

  /** What the API's PATCH does; a running build stream learns of it through onCancel. */
  update(id: number, patch: { status?: ReleaseStatus; end_timestamp?: string }): LabRelease | undefined {
    const r = this.byId.get(id);
    if (!r) return undefined;
    if (patch.status) r.status = patch.status;
    if (patch.end_timestamp) r.endTimestamp = patch.end_timestamp;
    if (patch.status === 'cancelled') {
      r.cancelledAt = new Date().toISOString();
      const l = this.cancelListeners.get(id);
      this.cancelListeners.delete(id);
      l?.();
    }
    return r;
  }

  onCancel(id: number, listener: () => void): void {
    this.cancelListeners.set(id, listener);
  }
}

/** How fast the `build-slow-upload` fault reads the uploaded context: a few hundred bytes take seconds. */
export const SLOW_UPLOAD_BYTES_PER_SECOND = 32;
/** Time between two log lines of a lab build: fast for tests, visible in `fleetprobe run`. */
export const LINE_INTERVAL_MS = 15;
const MAX_CONTEXT_BYTES = 16 * 1024 * 1024;

export interface BuilderOptions {
  cert: IssuedCert;
  faults: FaultSwitchboard;
  releases: LabReleases;
  /** The Bearer token the builder (and the API) accept. */
  token: string;
  log?: Logger;
}

// long: one lab server: its handlers share the server's state and faults in one closure, the way a test peer reads best.
export async function startBuilder(opts: BuilderOptions): Promise<LabServer> {
  const { faults, releases, token, log } = opts;
  // Timers of builds still streaming (or stalled): close() ends them so nothing outlives the lab.
  const pending = new Set<() => void>();

  const server = https.createServer({ cert: opts.cert.certPem, key: opts.cert.keyPem }, (req, res) => {
    handle(req, res).catch((err) => {
      log?.debug({ err: (err as Error).message }, 'lab builder: request failed');
      if (!res.headersSent) json(res, 500, { message: 'lab builder error' });
      else res.destroy();
    });
  });

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'https://builder.invalid');
    log?.debug({ method: req.method, url: url.pathname }, 'lab builder request');
    if (req.method !== 'POST' || url.pathname !== '/v3/build') {
      req.resume();
      return json(res, 404, { message: `no such builder endpoint: ${req.method} ${url.pathname}` });
    }
    if (faults.isOn('builder-unauthorized') || req.headers.authorization !== `Bearer ${token}`) {
      req.resume();
      return text(res, 401, 'Unauthorized');
    }
    const q = url.searchParams;
    const slug = q.get('slug') ?? '';
    if (!/^[\w.-]+\/[\w.-]+$/.test(slug)) return reject(req, res, `invalid slug "${slug}" (expected <org>/<fleet>)`);
    // A probe's release must never deploy: the lab refuses anything but a draft, so a probe that
    // forgot isdraft=true fails loudly in tests instead of "working".
    if (q.get('isdraft') !== 'true') return reject(req, res, 'the lab builder only accepts draft builds (isdraft=true)');
    if (q.get('headless') === 'true') return reject(req, res, 'the lab builder does not do headless builds');

    const raw = faults.isOn('build-slow-upload') ? await readSlowly(req, res, pending) : await readAll(req);
    if (raw === undefined) return; // client went away
    let files: Map<string, Buffer>;
    try {
      const body = req.headers['content-encoding'] === 'gzip' ? zlib.gunzipSync(raw) : raw;
      files = await untar(body);
    } catch (err) {
      return json(res, 400, { message: `the build context is not a (gzipped) tar: ${(err as Error).message}` });
    }
    const dockerfileName = q.get('dockerfilePath') || 'Dockerfile';
    const dockerfile = files.get(dockerfileName)?.toString('utf8');
    if (dockerfile === undefined) return json(res, 400, { message: `no ${dockerfileName} in the build context` });

    const release = releases.create(slug, files.get('fleetprobe-nonce')?.toString('utf8').trim() ?? null);
    streamBuild(res, release, dockerfile, [...files.keys()]);
  }

  function streamBuild(res: http.ServerResponse, release: LabRelease, dockerfile: string, names: string[]): void {
    const steps = dockerfile
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    const commit = createHash('sha256').update(`${release.id}`).digest('hex').slice(0, 32);
    const info = (m: string) => ({ message: `\u001b[36m[Info]\u001b[39m    ${m}` });
    const items: object[] = [
      { type: 'metadata', resource: 'cursor', value: '0' },
      { type: 'metadata', resource: 'buildLogId', value: release.id },
      info(`Starting build for ${release.slug}, user lab`),
      info('Dashboard link: https://dashboard.lab.invalid/apps/1/releases/' + release.id),
      info(`Uploaded context: ${names.length} file(s)`),
      { message: '\u001b[36m[Info]\u001b[39m    Pulling previous images...', replace: true },
      { message: '\u001b[36m[Info]\u001b[39m    Pulling previous images... done', replace: true },
      ...steps.map((s, i) => ({ message: `[main]     Step ${i + 1}/${steps.length} : ${s}` })),
    ];
    const fails = faults.isOn('build-fails');
    if (fails) {
      items.push(
        { message: "\u001b[31m[Error]\u001b[39m   Build failed: The command '/bin/sh -c exit 1' returned a non-zero code: 1", isError: true },
        { message: '\u001b[31m[Error]\u001b[39m   Not deploying release.', isError: true },
      );
    } else {
      items.push({ message: `[main]     Successfully built ${commit.slice(0, 12)}` }, info(`Release: ${commit.slice(0, 7)} (id: ${release.id})`), {
        message: '\u001b[32m[Success]\u001b[39m Release created (draft)',
        isSuccess: true,
      });
    }
    // Faults that break the stream part-way: after the first log lines, like a builder that hangs
    // or drops while the build runs (the release is then still "running" on the platform).
    const breakAt = faults.isOn('build-stall') || faults.isOn('build-cut') ? 5 : -1;
    const cut = faults.isOn('build-cut');

    res.writeHead(200, { 'content-type': 'application/json' });
    let i = 0;
    let timer: NodeJS.Timeout | undefined;
    const stop = () => {
      clearTimeout(timer);
      pending.delete(stop);
    };
    pending.add(stop);
    // The client went away (or the lab closes) before the end: the platform marks such a build interrupted.
    res.on('close', () => {
      stop();
      if (!res.writableFinished && release.status === 'running') releases.finish(release.id, 'interrupted');
    });
    releases.onCancel(release.id, () => {
      stop();
      res.destroy();
    });
    const next = () => {
      if (i === breakAt) {
        if (cut) {
          // Half an item, then the connection drops: the reader must see a cut, not a short success.
          res.write(',{"message":"[main]     Step 2/2 : COP');
          setTimeout(() => res.socket?.destroy(), 5);
        }
        return; // build-stall: silence, connection held open
      }
      if (i === items.length) {
        stop();
        releases.finish(release.id, fails ? 'failed' : 'success');
        res.end(']');
        return;
      }
      res.write((i === 0 ? '[' : ',') + JSON.stringify(items[i]));
      i++;
      timer = setTimeout(next, LINE_INTERVAL_MS);
    };
    next();
  }

  const h = await listenLoopback(server);
  return {
    name: 'builder',
    url: `https://${LAB_HOST}:${h.port}`,
    port: h.port,
    close: async () => {
      for (const stop of [...pending]) stop();
      await h.close();
    },
  };
}

function reject(req: http.IncomingMessage, res: http.ServerResponse, message: string): void {
  req.resume();
  json(res, 400, { message });
}

function readAll(req: http.IncomingMessage): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_CONTEXT_BYTES) req.destroy();
      else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('close', () => resolve(undefined));
  });
}

/**
 * Reads the body a few bytes at a time, leaving the rest in the socket: the client's upload really
 * stalls on back-pressure and its answer waits, as over a congested uplink.
 */
function readSlowly(req: http.IncomingMessage, res: http.ServerResponse, pending: Set<() => void>): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const perTick = Math.max(1, Math.round(SLOW_UPLOAD_BYTES_PER_SECOND / 4));
    const stop = () => {
      clearInterval(timer);
      pending.delete(stop);
    };
    pending.add(stop);
    const timer = setInterval(() => {
      const n = Math.min(perTick, req.readableLength);
      const c = req.read(n > 0 ? n : 0) as Buffer | null;
      if (c) chunks.push(c);
    }, 250);
    req.pause();
    req.once('end', () => {
      stop();
      resolve(Buffer.concat(chunks));
    });
    res.once('close', () => {
      stop();
      resolve(undefined);
    });
  });
}

async function untar(body: Buffer): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  const extract = tar.extract();
  extract.on('entry', (header, stream, next) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c) => chunks.push(c as Buffer));
    stream.on('end', () => {
      if (header.type === 'file') files.set(header.name.replace(/^\.\//, ''), Buffer.concat(chunks));
      next();
    });
    stream.resume();
  });
  await new Promise<void>((resolve, reject) => {
    extract.on('finish', resolve);
    extract.on('error', reject);
    Readable.from([body]).pipe(extract);
  });
  if (files.size === 0) throw new Error('no files in it');
  return files;
}

export function json(res: http.ServerResponse, status: number, body: unknown): void {
  const t = JSON.stringify(body) + '\n';
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(t) });
  res.end(t);
}

function text(res: http.ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}
