import type net from 'node:net';
import type { Dispatcher } from 'undici';
import { describeError, errorCode } from '../core/classify.js';
import { formatDuration } from '../core/duration.js';
import { excerpt } from '../core/excerpt.js';
import { ProbeError } from '../core/errors.js';
import type { ProbeContext } from '../core/kind.js';
import { cleanProgressLine } from '../core/run.js';
import { JsonItemStream, type JsonFraming } from '../net/json-stream.js';
import type { BuildConfig } from './build-config.js';
import { HttpExchange, readBody } from './shared/http-exchange.js';

/**
 * A build's answer read as a stream of JSON log items (the builder's array, Docker's JSON lines),
 * with two time limits of our own, and what the items add up to. Both backends use it.
 */

/** Bytes of an error answer (status >= 400) read for its reason. */
const MAX_ERROR_BODY_BYTES = 4096;
/** Error lines of a failed build quoted in the message (the message is bounded anyway). */
export const ERROR_LINES = 4;
export const MAX_ERROR_LINE_CHARS = 200;

/** What the builder said, item by item, and what it adds up to. */
export interface BuildLog {
  /** Log lines seen (not metadata). */
  lines: number;
  /** The last lines, for the message of a failed build. */
  recent: string[];
  errorLines: string[];
  failed: boolean;
  /** Set by the reader when the answer ended as the protocol says a finished build ends. */
  ended: boolean;
}

export function newLog(): BuildLog {
  return { lines: 0, recent: [], errorLines: [], failed: false, ended: false };
}

export function keepLast(list: string[], line: string, n: number): void {
  list.push(excerpt(line, { max: MAX_ERROR_LINE_CHARS, ellipsisWithin: true }));
  if (list.length > n) list.shift();
}

export function buildFailed(what: string, log: BuildLog): ProbeError {
  const lines = log.errorLines.length ? log.errorLines : log.recent;
  return new ProbeError('build_failed', `${what}${lines.length ? ': ' + lines.join(' | ') : ''}`);
}

type Item = Record<string, unknown>;

/** One HTTP exchange with the builder whose answer is read as a stream of JSON items. */
export interface StreamedAnswer {
  status: number;
  /** Items as they arrive; throws ProbeError on a malformed, cut or stalled answer. */
  items: AsyncGenerator<Item, void>;
  /** The start of an error answer's body, for its reason. */
  errorText(): Promise<string>;
}

export interface Endpoint {
  /** For messages: what we talk to. */
  label: string;
  origin: string;
  dial(ctx: ProbeContext): Promise<net.Socket>;
}

export interface BuildRequest {
  path: string;
  headers: Record<string, string>;
  body: Buffer;
  framing: JsonFraming;
}

/** Our own time limits inside the run, one armed at a time: when it fires, `signal` aborts with its error. */
class Watchdog {
  private readonly fired = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  readonly signal: AbortSignal;

  constructor(run: AbortSignal) {
    this.signal = AbortSignal.any([run, this.fired.signal]);
  }

  arm(ms: number, error: () => ProbeError): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.fired.abort(error()), ms);
  }

  stop(): void {
    clearTimeout(this.timer);
  }
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
  limits: Pick<BuildConfig, 'uploadTimeout' | 'stallTimeout'>,
  onClose: (close: () => void) => void,
): Promise<StreamedAnswer> {
  const http = new HttpExchange(endpoint.origin, socket);
  const dog = new Watchdog(ctx.signal);
  const close = () => {
    dog.stop();
    void http.close();
  };
  onClose(close);

  const upload = formatDuration(limits.uploadTimeout);
  dog.arm(
    limits.uploadTimeout,
    () => new ProbeError('timeout', `the builder did not take the ${req.body.length}-byte build context and answer within the upload timeout of ${upload}`),
  );
  let res: Dispatcher.ResponseData;
  try {
    res = await http.send({ method: 'POST', path: req.path, headers: req.headers, body: req.body, signal: dog.signal });
  } catch (err) {
    close();
    // Our own limits and aborts first (send gives their reason); then what the connection said
    // (ECONNRESET: connect, ETIMEDOUT: timeout).
    throw err instanceof ProbeError || dog.signal.aborted ? err : new Error(`uploading the build context to ${endpoint.label} failed`, { cause: err });
  }

  const seen = { items: 0 };
  const stalled = () =>
    new ProbeError('timeout', `the builder sent nothing for ${formatDuration(limits.stallTimeout)} (stall timeout) after ${seen.items} log item(s)`);
  const stall = () => dog.arm(limits.stallTimeout, stalled);
  stall();
  return {
    status: res.statusCode,
    items: readItems(res, req.framing, endpoint.label, { seen, stall, dog }),
    async errorText() {
      // What arrived is the reason we have, even if the answer breaks off.
      return (await readBody(res, MAX_ERROR_BODY_BYTES, dog.signal, { partial: true })).text;
    },
  };
}

/** The answer's items as they complete; every chunk re-arms the stall limit. */
async function* readItems(
  res: Dispatcher.ResponseData,
  framing: JsonFraming,
  label: string,
  s: { seen: { items: number }; stall(): void; dog: Watchdog },
): AsyncGenerator<Item, void> {
  const parser = new JsonItemStream(framing);
  try {
    for await (const chunk of res.body) {
      s.stall();
      for (const item of parser.push(chunk as Buffer)) {
        if (!item || typeof item !== 'object' || Array.isArray(item))
          throw new ProbeError('protocol', `item ${s.seen.items + 1} of the build stream is not a JSON object`);
        s.seen.items++;
        yield item as Item;
      }
    }
  } catch (err) {
    if (err instanceof ProbeError) throw err;
    if (s.dog.signal.aborted) throw s.dog.signal.reason;
    const what = `the build stream from ${label} was cut after ${s.seen.items} item(s)`;
    // A connection dropped mid-build is a broken answer, whatever the socket error was called;
    // only a kernel-level timeout says "timeout".
    if (errorCode(err) === 'ETIMEDOUT') throw new Error(what, { cause: err });
    throw new ProbeError('protocol', `${what}: ${describeError(err)}`, { cause: err });
  } finally {
    s.dog.stop();
  }
  parser.end();
}

/** The reason in an error answer: `{"message": ...}` / `{"error": ...}` as builders send, or its text. */
export function reasonOf(body: string): string {
  try {
    const j = JSON.parse(body) as Record<string, unknown>;
    for (const k of ['message', 'error', 'detail']) if (typeof j[k] === 'string' && j[k]) return cleanProgressLine(j[k] as string);
  } catch {
    /* not JSON */
  }
  const text = cleanProgressLine(excerpt(body, { max: Infinity, markup: true, collapse: true }));
  return excerpt(text, { max: 300, ellipsisWithin: true, empty: '(empty body)' });
}

function statusError(status: number, body: string, who: string, buildFailedOn400: boolean): ProbeError {
  const reason = reasonOf(body);
  if (status === 401 || status === 403) return new ProbeError('auth', `${who} refused our credentials: HTTP ${status}: ${reason}`);
  // Docker answers 400 for a build it will not start (a Dockerfile it cannot parse): a failed build.
  if (status === 400 && buildFailedOn400) return new ProbeError('build_failed', `${who} refused the build: HTTP 400: ${reason}`);
  return new ProbeError('proxy', `${who} answered HTTP ${status}: ${reason}`);
}

/**
 * Dials the builder (its own phases), then in `upload` sends the context and checks the answer's
 * status; `onClose` gets what closes everything opened, on every path.
 */
export async function openBuild(
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
async function readPhase(ctx: ProbeContext, phase: string, items: AsyncGenerator<Item, void>, handle: (item: Item) => boolean | void): Promise<boolean> {
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
export async function followBuild(
  ctx: ProbeContext,
  items: AsyncGenerator<Item, void>,
  handle: (item: Item) => boolean,
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
