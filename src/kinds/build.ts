import type net from 'node:net';
import { Agent, request, type Dispatcher } from 'undici';
import { z } from 'zod';
import { duration, readableDir, readableFile, secretRef } from '../config/fields.js';
import { MAX_BUNDLE_FILE_BYTES, readInputFile } from '../config/files.js';
import { describeError, errorCode } from '../core/classify.js';
import { formatDuration } from '../core/duration.js';
import { ProbeError } from '../core/errors.js';
import { defineKind, type ProbeContext } from '../core/kind.js';
import type { Secret } from '../core/redact.js';
import { cleanProgressLine } from '../core/run.js';
import { connectTcp, connectUnix, resolveHost, upgradeTls } from '../net/dial.js';
import { asProtocolError, clientOverSocket } from '../net/http-client.js';
import { JsonItemStream, type JsonFraming } from '../net/json-stream.js';
import { packContext, type PackedContext } from './build-context.js';

/**
 * `build`: submits a small build to the platform's remote builder (`target: balena`, always as a
 * draft release that never deploys) or to a Docker engine (`target: docker`), reading the build log
 * as it streams and timing each step. Phases: `pack` (the context, in memory), `resolve`/`connect`/
 * `tls` (to the builder), `upload` (the context sent and the builder's answer), `queue` (to the first
 * build log line), `build` (to the final item).
 *
 * A build we stop following (deadline, shutdown, a stall, a cut stream) is cancelled through the API
 * (`PATCH release(<id>)` to `cancelled`), so no build keeps running because of us.
 */

const DEFAULT_UPLOAD_TIMEOUT_MS = 2 * 60_000;
const DEFAULT_STALL_TIMEOUT_MS = 5 * 60_000;
/** Cancelling happens after the run's own deadline: it gets its own short limit. */
const CANCEL_TIMEOUT_MS = 10_000;
/** Bytes of an error answer (status >= 400) read for its reason. */
const MAX_ERROR_BODY_BYTES = 4096;
/** Error lines of a failed build quoted in the message (the message is bounded anyway). */
const ERROR_LINES = 4;
const MAX_ERROR_LINE_CHARS = 200;

const httpUrl = z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' });

/** `unix:///var/run/docker.sock`, `tcp://host:2375` or `http://host:2375` (no TLS: see the README). */
type DockerEndpoint = { socketPath: string; label: string } | { host: string; port: number; label: string };
const dockerEndpoint = z.string().transform((v, ctx): DockerEndpoint => {
  const unix = /^unix:\/\/(\/.+)$/.exec(v);
  if (unix) return { socketPath: unix[1], label: v };
  const tcp = /^(?:tcp|http):\/\/(\[[^\]]+\]|[^:/]+):(\d+)\/?$/.exec(v);
  if (tcp && Number(tcp[2]) > 0 && Number(tcp[2]) < 65536) return { host: tcp[1].replace(/^\[(.*)\]$/, '$1'), port: Number(tcp[2]), label: v };
  ctx.addIssue({ code: 'custom', message: 'a Docker endpoint is unix:///path/to/docker.sock, tcp://HOST:PORT or http://HOST:PORT' });
  return z.NEVER;
});

const schema = z.object({
  target: z.enum(['balena', 'docker']).default('balena'),
  /** The fleet's slug, `<org>/<fleet>` (target balena). */
  fleet: z
    .string()
    .regex(/^[\w.-]+\/[\w.-]+$/, 'a fleet slug is <org>/<fleet>')
    .optional(),
  builder: httpUrl.default('https://builder.balena-cloud.com'),
  api: httpUrl.default('https://api.balena-cloud.com'),
  token: secretRef.optional(),
  emulated: z.boolean().default(false),
  nocache: z.boolean().default(false),
  docker: dockerEndpoint.default({ socketPath: '/var/run/docker.sock', label: 'unix:///var/run/docker.sock' }),
  /** A directory to send as the build context (relative to the config file). */
  context: readableDir.optional(),
  /** An inline Dockerfile, sent alone with the nonce file. */
  dockerfile: z.string().min(1).optional(),
  dockerfilePath: z
    .string()
    .regex(/^[^/].*$|^$/, 'a path inside the build context (no leading /)')
    .default(''),
  tls: z.strictObject({ caFile: readableFile.optional(), insecureSkipVerify: z.boolean().default(false) }).default({ insecureSkipVerify: false }),
  uploadTimeout: duration.default(DEFAULT_UPLOAD_TIMEOUT_MS),
  stallTimeout: duration.default(DEFAULT_STALL_TIMEOUT_MS),
});
type BuildConfig = z.output<typeof schema>;

/** Rules across fields, reported at load like schema problems. */
function checkConfig(c: BuildConfig): { field: string; message: string }[] {
  const problems: { field: string; message: string }[] = [];
  if (c.target === 'balena') {
    if (!c.fleet) problems.push({ field: 'fleet', message: 'is required for target balena (<org>/<fleet>)' });
    if (!c.token) problems.push({ field: 'token', message: 'is required for target balena ({env: NAME} or {file: PATH}, here or in the platform block)' });
  }
  if (c.context !== undefined && c.dockerfile !== undefined) {
    problems.push({ field: 'dockerfile', message: 'set either context (a directory) or dockerfile (inline), not both' });
  }
  return problems;
}

/** What the builder said, item by item, and what it adds up to. */
interface BuildLog {
  /** Log lines seen (not metadata). */
  lines: number;
  /** The last lines, for the message of a failed build. */
  recent: string[];
  errorLines: string[];
  failed: boolean;
  /** Set by the reader when the answer ended as the protocol says a finished build ends. */
  ended: boolean;
}

function newLog(): BuildLog {
  return { lines: 0, recent: [], errorLines: [], failed: false, ended: false };
}

function keepLast(list: string[], line: string, n: number): void {
  list.push(line.length > MAX_ERROR_LINE_CHARS ? line.slice(0, MAX_ERROR_LINE_CHARS - 1) + '…' : line);
  if (list.length > n) list.shift();
}

function buildFailed(what: string, log: BuildLog): ProbeError {
  const lines = log.errorLines.length ? log.errorLines : log.recent;
  return new ProbeError('build_failed', `${what}${lines.length ? ': ' + lines.join(' | ') : ''}`);
}

/** One HTTP exchange with the builder whose answer is read as a stream of JSON items. */
interface StreamedAnswer {
  status: number;
  /** Items as they arrive; throws ProbeError on a malformed, cut or stalled answer. */
  items: AsyncGenerator<Record<string, unknown>, void>;
  /** The start of an error answer's body, for its reason. */
  errorText(): Promise<string>;
}

interface Endpoint {
  /** For messages: what we talk to. */
  label: string;
  origin: string;
  dial(ctx: ProbeContext): Promise<net.Socket>;
}

function balenaEndpoint(url: string, cfg: BuildConfig): Endpoint {
  const u = new URL(url);
  const https = u.protocol === 'https:';
  return {
    label: u.origin,
    origin: u.origin,
    async dial(ctx) {
      const address = await resolveHost(ctx, u.hostname);
      const socket = await connectTcp(ctx, address, Number(u.port) || (https ? 443 : 80));
      if (!https) return socket;
      return upgradeTls(ctx, socket, { servername: u.hostname, caFile: cfg.tls.caFile, insecureSkipVerify: cfg.tls.insecureSkipVerify, alpn: ['http/1.1'] });
    },
  };
}

function dockerEndpointOf(ep: DockerEndpoint): Endpoint {
  if ('socketPath' in ep) return { label: ep.label, origin: 'http://docker', dial: (ctx) => connectUnix(ctx, ep.socketPath) };
  return {
    label: ep.label,
    origin: `http://${ep.host.includes(':') ? `[${ep.host}]` : ep.host}:${ep.port}`,
    dial: async (ctx) => connectTcp(ctx, await resolveHost(ctx, ep.host), ep.port),
  };
}

/**
 * Sends the context over a dialled socket and returns once the builder answered (the `upload`
 * phase is the caller's; dialling has its own phases before it).
 * Two limits of our own inside the run deadline: `uploadTimeout` until the answer starts, and
 * `stallTimeout` for any silence while it streams. Either aborts the request with a `timeout`.
 */
async function submit(
  ctx: ProbeContext,
  endpoint: Endpoint,
  socket: net.Socket,
  req: BuildRequest,
  cfg: BuildConfig,
  onClose: (close: () => void) => void,
): Promise<StreamedAnswer> {
  const client = clientOverSocket(endpoint.origin, socket);
  const guard = new AbortController();
  const signal = AbortSignal.any([ctx.signal, guard.signal]);
  let timer: NodeJS.Timeout | undefined;
  const arm = (ms: number, error: () => ProbeError) => {
    clearTimeout(timer);
    timer = setTimeout(() => guard.abort(error()), ms);
  };
  const close = () => {
    clearTimeout(timer);
    void client.destroy().catch(() => {});
    socket.destroy();
  };
  onClose(close);

  arm(
    cfg.uploadTimeout,
    () =>
      new ProbeError(
        'timeout',
        `the builder did not take the ${req.body.length}-byte build context and answer within the upload timeout of ${formatDuration(cfg.uploadTimeout)}`,
      ),
  );
  let res: Dispatcher.ResponseData;
  try {
    res = await client.request({ method: 'POST', path: req.path, headers: req.headers, body: req.body, signal });
  } catch (err) {
    close();
    // Our own limits and aborts first; then what the connection said (ECONNRESET: connect, ETIMEDOUT: timeout).
    if (guard.signal.aborted) throw guard.signal.reason;
    if (ctx.signal.aborted) throw ctx.signal.reason;
    const e = asProtocolError(err);
    throw e instanceof ProbeError ? e : new Error(`uploading the build context to ${endpoint.label} failed`, { cause: e });
  }

  let items = 0;
  const stalled = () =>
    new ProbeError('timeout', `the builder sent nothing for ${formatDuration(cfg.stallTimeout)} (stall timeout) after ${items} log item(s)`);
  arm(cfg.stallTimeout, stalled);

  async function* read(): AsyncGenerator<Record<string, unknown>, void> {
    const parser = new JsonItemStream(req.framing);
    try {
      for await (const chunk of res.body) {
        arm(cfg.stallTimeout, stalled);
        for (const item of parser.push(chunk as Buffer)) {
          if (!item || typeof item !== 'object' || Array.isArray(item))
            throw new ProbeError('protocol', `item ${items + 1} of the build stream is not a JSON object`);
          items++;
          yield item as Record<string, unknown>;
        }
      }
    } catch (err) {
      if (err instanceof ProbeError) throw err;
      if (guard.signal.aborted) throw guard.signal.reason;
      if (ctx.signal.aborted) throw ctx.signal.reason;
      const what = `the build stream from ${endpoint.label} was cut after ${items} item(s)`;
      // A connection dropped mid-build is a broken answer, whatever the socket error was called;
      // only a kernel-level timeout says "timeout".
      if (errorCode(err) === 'ETIMEDOUT') throw new Error(what, { cause: err });
      throw new ProbeError('protocol', `${what}: ${describeError(err)}`, { cause: err });
    } finally {
      clearTimeout(timer);
    }
    parser.end();
  }

  return {
    status: res.statusCode,
    items: read(),
    async errorText() {
      const chunks: Buffer[] = [];
      let size = 0;
      try {
        for await (const c of res.body) {
          chunks.push(c as Buffer);
          size += (c as Buffer).length;
          if (size >= MAX_ERROR_BODY_BYTES) break;
        }
      } catch {
        /* what arrived is the reason we have */
      }
      return Buffer.concat(chunks).subarray(0, MAX_ERROR_BODY_BYTES).toString('utf8');
    },
  };
}

/** The reason in an error answer: `{"message": ...}` / `{"error": ...}` as builders send, or its text. */
function reasonOf(body: string): string {
  try {
    const j = JSON.parse(body) as Record<string, unknown>;
    for (const k of ['message', 'error', 'detail']) if (typeof j[k] === 'string' && j[k]) return cleanProgressLine(j[k] as string);
  } catch {
    /* not JSON */
  }
  const text = cleanProgressLine(
    body
      .replace(/<[^>]*>/g, ' ')
      .replace(/\s+/g, ' ')
      .trim(),
  );
  return text.length > 300 ? text.slice(0, 299) + '…' : text || '(empty body)';
}

function statusError(status: number, body: string, who: string, buildFailedOn400: boolean): ProbeError {
  const reason = reasonOf(body);
  if (status === 401 || status === 403) return new ProbeError('auth', `${who} refused our credentials: HTTP ${status}: ${reason}`);
  // Docker answers 400 for a build it will not start (a Dockerfile it cannot parse): a failed build.
  if (status === 400 && buildFailedOn400) return new ProbeError('build_failed', `${who} refused the build: HTTP 400: ${reason}`);
  return new ProbeError('proxy', `${who} answered HTTP ${status}: ${reason}`);
}

interface BuildRequest {
  path: string;
  headers: Record<string, string>;
  body: Buffer;
  framing: JsonFraming;
}

/**
 * Dials the builder (its own phases), then in `upload` sends the context and checks the answer's
 * status; `onClose` gets what closes everything opened, on every path.
 */
async function openBuild(
  ctx: ProbeContext,
  cfg: BuildConfig,
  endpoint: Endpoint,
  req: BuildRequest,
  status: { who: string; refusedIsBuildFailure: boolean },
  onClose: (close: () => void) => void,
): Promise<StreamedAnswer> {
  const socket = await endpoint.dial(ctx);
  onClose(() => socket.destroy());
  return ctx.phase('upload', async () => {
    const a = await submit(ctx, endpoint, socket, req, cfg, onClose);
    if (a.status >= 400) throw statusError(a.status, await a.errorText(), status.who, status.refusedIsBuildFailure);
    return a;
  });
}

/** Reads items in `phase` until `until(item)` says stop or the stream ends; true when it ended. */
async function readPhase(
  ctx: ProbeContext,
  phase: string,
  items: AsyncGenerator<Record<string, unknown>, void>,
  handle: (item: Record<string, unknown>) => boolean | void,
): Promise<boolean> {
  return ctx.phase(phase, async () => {
    for (;;) {
      const next = await items.next();
      if (next.done) return true;
      if (handle(next.value) === true) return false;
    }
  });
}

/**
 * Follows the build stream: `queue` up to the first log line (`handle` returns true on it), `build`
 * to the end; then `conclude` judges the outcome in the phase the stream ended in.
 */
async function followBuild(
  ctx: ProbeContext,
  items: AsyncGenerator<Record<string, unknown>, void>,
  handle: (item: Record<string, unknown>) => boolean,
  log: BuildLog,
  conclude: () => void,
): Promise<void> {
  const endedInQueue = await readPhase(ctx, 'queue', items, handle);
  if (!endedInQueue) {
    await readPhase(ctx, 'build', items, (item) => void handle(item)).catch((err) => {
      // The builder already said the build failed: that is the outcome, however the stream ends.
      if (!log.failed) throw err;
    });
  }
  log.ended = true;
  await ctx.phase(endedInQueue ? 'queue' : 'build', conclude);
}

async function packPhase(ctx: ProbeContext, cfg: BuildConfig, gzip: boolean): Promise<PackedContext> {
  return ctx.phase('pack', () =>
    packContext({ dir: cfg.context, dockerfile: cfg.dockerfile, dockerfileName: cfg.dockerfilePath || 'Dockerfile' }, { gzip }).catch((err) => {
      if (err instanceof ProbeError) throw err;
      throw new ProbeError('internal', `cannot pack the build context${cfg.context ? ' ' + cfg.context : ''}: ${(err as Error).message}`, { cause: err });
    }),
  );
}

/** An undici dispatcher for one short request outside the run (cancel, cleanup), closed after. */
async function oneShotAgent(cfg: BuildConfig): Promise<Agent> {
  return new Agent({
    connect: {
      ca: cfg.tls.caFile ? await readInputFile(cfg.tls.caFile, MAX_BUNDLE_FILE_BYTES) : undefined,
      rejectUnauthorized: !cfg.tls.insecureSkipVerify,
    },
    keepAliveTimeout: 1,
  });
}

/** PATCH release(<id>) to cancelled, as the dashboard's "cancel" does. Never throws: it logs. */
async function cancelRelease(ctx: ProbeContext, cfg: BuildConfig, releaseId: number, why: string): Promise<void> {
  let agent: Agent | undefined;
  const url = new URL(`/v7/release(${releaseId})`, cfg.api);
  try {
    agent = await oneShotAgent(cfg);
    const res = await request(url, {
      method: 'PATCH',
      dispatcher: agent,
      headers: { authorization: `Bearer ${(cfg.token as Secret).reveal()}`, 'content-type': 'application/json', 'user-agent': 'fleetprobe' },
      body: JSON.stringify({ status: 'cancelled', end_timestamp: new Date().toISOString() }),
      signal: AbortSignal.timeout(CANCEL_TIMEOUT_MS),
    });
    const body = await res.body.text();
    if (res.statusCode >= 300)
      ctx.log.warn(
        { releaseId, status: res.statusCode, body: reasonOf(body) },
        `could not cancel release ${releaseId}: the API answered HTTP ${res.statusCode}`,
      );
    else ctx.log.info({ releaseId, why }, `cancelled release ${releaseId} (${why})`);
  } catch (err) {
    ctx.log.warn({ releaseId, err }, `could not cancel release ${releaseId}`);
  } finally {
    await agent?.close().catch(() => {});
  }
}

async function runBalena(ctx: ProbeContext, cfg: BuildConfig): Promise<void> {
  const packed = await packPhase(ctx, cfg, true);
  const q = new URLSearchParams({
    slug: cfg.fleet!,
    dockerfilePath: cfg.dockerfilePath,
    emulated: String(cfg.emulated),
    nocache: String(cfg.nocache),
    headless: 'false',
    // Always: a probe's release is a draft and never deploys to the fleet's devices.
    isdraft: 'true',
  });
  const endpoint = balenaEndpoint(cfg.builder, cfg);
  const log = newLog();
  let releaseId: number | undefined;
  let cancelling = false;
  // Cancel once, as soon as we know we stop following a build that may still run.
  const cancel = (why: string) => {
    if (cancelling || releaseId === undefined || log.ended || log.failed) return;
    cancelling = true;
    ctx.teardown(cancelRelease(ctx, cfg, releaseId, why));
  };
  const onAbort = () => cancel(ctx.signal.reason instanceof Error ? ctx.signal.reason.message : 'run aborted');
  ctx.signal.addEventListener('abort', onAbort, { once: true });
  let close = () => {};
  try {
    const answer = await openBuild(
      ctx,
      cfg,
      endpoint,
      {
        path: `/v3/build?${q}`,
        headers: {
          host: new URL(cfg.builder).host,
          authorization: `Bearer ${(cfg.token as Secret).reveal()}`,
          'content-type': 'application/x-tar',
          'content-encoding': 'gzip',
          'user-agent': 'fleetprobe',
        },
        body: packed.body,
        framing: 'array',
      },
      { who: `the builder (${endpoint.label})`, refusedIsBuildFailure: false },
      (c) => (close = c),
    );

    const handle = (item: Record<string, unknown>): boolean => {
      if (item.type === 'metadata') {
        if (item.resource === 'buildLogId' && (typeof item.value === 'number' || typeof item.value === 'string')) {
          releaseId = Number(item.value);
          ctx.observe('release_id', releaseId);
        }
        return false;
      }
      if (item.isSuccess === true) log.ended = true;
      if (typeof item.message !== 'string') return false;
      const line = cleanProgressLine(item.message);
      log.lines++;
      keepLast(log.recent, line, ERROR_LINES);
      if (item.isError === true) {
        log.failed = true;
        keepLast(log.errorLines, line, ERROR_LINES);
      }
      ctx.progress(item.message, { transient: item.replace === true });
      return true;
    };

    await followBuild(ctx, answer.items, handle, log, () => {
      const release = releaseId !== undefined ? ` (release ${releaseId})` : '';
      if (log.failed) throw buildFailed(`the builder reported that the build failed${release}`, log);
      if (log.lines === 0) throw new ProbeError('protocol', `the builder's answer held no build log${release}`);
      if (releaseId === undefined) ctx.log.warn('the builder did not say which release it built (no buildLogId item)');
    });
  } catch (err) {
    cancel(err instanceof Error ? err.message : 'run failed');
    throw err;
  } finally {
    ctx.signal.removeEventListener('abort', onAbort);
    close();
  }
}

/** Removes the image a docker build made, so a build host does not fill up with probe images. */
async function removeImage(ctx: ProbeContext, ep: DockerEndpoint, imageId: string): Promise<void> {
  const agent = new Agent({ connect: 'socketPath' in ep ? { socketPath: ep.socketPath } : {}, keepAliveTimeout: 1 });
  const origin = dockerEndpointOf(ep).origin;
  try {
    const res = await request(`${origin}/images/${encodeURIComponent(imageId)}?force=1`, {
      method: 'DELETE',
      dispatcher: agent,
      signal: AbortSignal.timeout(CANCEL_TIMEOUT_MS),
    });
    const body = await res.body.text();
    if (res.statusCode >= 300 && res.statusCode !== 404)
      ctx.log.warn({ imageId, status: res.statusCode, body: reasonOf(body) }, `could not remove the probe's image ${imageId}`);
  } catch (err) {
    ctx.log.warn({ imageId, err }, `could not remove the probe's image ${imageId}`);
  } finally {
    await agent?.close().catch(() => {});
  }
}

async function runDocker(ctx: ProbeContext, cfg: BuildConfig): Promise<void> {
  const packed = await packPhase(ctx, cfg, false);
  const endpoint = dockerEndpointOf(cfg.docker);
  const q = new URLSearchParams({ rm: '1', forcerm: '1', nocache: cfg.nocache ? '1' : '0' });
  if (cfg.dockerfilePath) q.set('dockerfile', cfg.dockerfilePath);
  const log = newLog();
  let imageId: string | undefined;
  // Docker sends a line in pieces ("Step 1/2 : FROM scratch", then "\n"): whole lines only.
  let partial = '';
  let close = () => {};
  try {
    const answer = await openBuild(
      ctx,
      cfg,
      endpoint,
      {
        path: `/build?${q}`,
        headers: { host: 'docker', 'content-type': 'application/x-tar', 'user-agent': 'fleetprobe' },
        body: packed.body,
        framing: 'sequence',
      },
      { who: `the Docker engine (${endpoint.label})`, refusedIsBuildFailure: true },
      (c) => (close = c),
    );
    const line = (text: string) => {
      const clean = cleanProgressLine(text);
      if (!clean.trim()) return;
      log.lines++;
      keepLast(log.recent, clean, ERROR_LINES);
      ctx.progress(text);
    };
    const handle = (item: Record<string, unknown>): boolean => {
      if (typeof item.stream === 'string') {
        const parts = (partial + item.stream).split('\n');
        partial = parts.pop() ?? '';
        for (const p of parts) line(p);
        return log.lines > 0;
      }
      const aux = item.aux as { ID?: unknown } | undefined;
      if (aux && typeof aux.ID === 'string') imageId = aux.ID;
      if (typeof item.error === 'string' || item.errorDetail) {
        const detail = (item.errorDetail as { message?: unknown } | undefined)?.message;
        log.failed = true;
        keepLast(log.errorLines, cleanProgressLine(typeof detail === 'string' ? detail : String(item.error)), ERROR_LINES);
        return true;
      }
      if (typeof item.status === 'string') {
        ctx.progress([item.id, item.status, item.progress].filter((x) => typeof x === 'string').join(' '), { transient: true });
      }
      return false;
    };
    await followBuild(ctx, answer.items, handle, log, () => {
      if (partial) line(partial);
      if (log.failed) throw buildFailed('the Docker engine reported that the build failed', log);
      if (!imageId)
        throw new ProbeError('protocol', `the Docker engine's build stream ended with neither an image ID nor an error after ${log.lines} log line(s)`);
      ctx.observe('image_id', imageId);
    });
  } finally {
    close();
    if (imageId) ctx.teardown(removeImage(ctx, cfg.docker, imageId));
  }
}

export const buildKind = defineKind({
  kind: 'build',
  description: "a small test build on the platform's remote builder (as a draft release) or a Docker engine, timed per step",
  phases: ['pack', 'resolve', 'connect', 'tls', 'upload', 'queue', 'build'],
  schema,
  check: checkConfig,
  platformFields: ['builder', 'api', 'token'],
  // Builds are slow and cost the platform real work: rarely, with room to finish.
  defaults: { intervalMs: 30 * 60_000, timeoutMs: 15 * 60_000 },
  async run(ctx, cfg) {
    if (cfg.target === 'docker') await runDocker(ctx, cfg);
    else await runBalena(ctx, cfg);
    if (cfg.tls.insecureSkipVerify && cfg.target === 'balena') ctx.log.warn('TLS certificate verification is disabled for this probe (tls.insecureSkipVerify)');
  },
});
