import { Agent, request } from 'undici';
import { ProbeError } from '../core/errors.js';
import type { ProbeContext } from '../core/kind.js';
import { cleanProgressLine } from '../core/run.js';
import { connectTcp, connectUnix, resolveHost } from '../net/dial.js';
import { CLEANUP_TIMEOUT_MS, type BuildConfig, type DockerEndpoint } from './build-config.js';
import { packPhase } from './build-context.js';
import { buildFailed, ERROR_LINES, followBuild, keepLast, MAX_ERROR_LINE_CHARS, newLog, openBuild, reasonOf, type Endpoint } from './build-stream.js';
import { jsonExcerpt } from './shared/http-expect.js';

/**
 * `target: docker`: a Docker engine's `POST /build` over its unix socket or plain TCP, and the
 * image the build made removed afterwards.
 */

function dockerEndpointOf(ep: DockerEndpoint): Endpoint {
  if ('socketPath' in ep) return { label: ep.label, origin: 'http://docker', dial: (ctx) => connectUnix(ctx, ep.socketPath) };
  return {
    label: ep.label,
    origin: `http://${ep.host.includes(':') ? `[${ep.host}]` : ep.host}:${ep.port}`,
    dial: async (ctx) => connectTcp(ctx, await resolveHost(ctx, ep.host), ep.port),
  };
}

/** Removes the image a docker build made, so a build host does not fill up with probe images. */
async function removeImage(ctx: ProbeContext, ep: DockerEndpoint, imageId: string): Promise<void> {
  const agent = new Agent({ connect: 'socketPath' in ep ? { socketPath: ep.socketPath } : {}, keepAliveTimeout: 1 });
  const origin = dockerEndpointOf(ep).origin;
  try {
    const res = await request(`${origin}/images/${encodeURIComponent(imageId)}?force=1`, {
      method: 'DELETE',
      dispatcher: agent,
      signal: AbortSignal.timeout(CLEANUP_TIMEOUT_MS),
    });
    const body = await res.body.text();
    if (res.statusCode >= 300 && res.statusCode !== 404)
      ctx.log.warn({ imageId, status: res.statusCode, body: reasonOf(body) }, `could not remove the probe's image ${imageId}`);
  } catch (err) {
    ctx.log.warn({ imageId, err }, `could not remove the probe's image ${imageId}`);
  } finally {
    await agent.close().catch(() => {});
  }
}

/**
 * The last image this build committed, read from the classic builder's log (" ---> <id>" after a
 * step), for a build that ends before its final image ID arrives (a timeout, a SIGTERM): removing it
 * with force also removes its untagged parents, as removing a finished build's image does. The id
 * after `FROM` is the base image and one after "Using cache" was there before: neither is ours.
 */
function committedImages(): { line(text: string): void; last(): string | undefined } {
  let last: string | undefined;
  let ours = false;
  return {
    line(text) {
      const step = /^Step \d+\/\d+ : (\S+)/i.exec(text);
      if (step) ours = step[1].toUpperCase() !== 'FROM';
      else if (/^\s*---> Using cache\b/.test(text)) ours = false;
      else {
        const id = /^\s*---> ([0-9a-f]{12,64})$/.exec(text)?.[1];
        if (id && ours) last = id;
      }
    },
    last: () => last,
  };
}

export async function runDocker(ctx: ProbeContext, cfg: BuildConfig): Promise<void> {
  const packed = await packPhase(ctx, cfg, false);
  const endpoint = dockerEndpointOf(cfg.docker);
  const q = new URLSearchParams({ rm: '1', forcerm: '1', nocache: cfg.nocache ? '1' : '0' });
  if (cfg.dockerfilePath) q.set('dockerfile', cfg.dockerfilePath);
  const log = newLog();
  let imageId: string | undefined;
  const committed = committedImages();
  // Docker sends a line in pieces ("Step 1/2 : FROM scratch", then "\n"): whole lines only.
  let partial = '';
  let close = () => {};
  let removed = false;
  const remove = () => {
    // Cancelled or timed out before the final ID: what it committed so far goes too.
    const made = imageId ?? committed.last();
    if (removed || !made) return;
    removed = true;
    ctx.teardown(removeImage(ctx, cfg.docker, made));
  };
  // On abort at once: the run's result waits for teardowns registered by then, not for this function.
  ctx.signal.addEventListener('abort', remove, { once: true });
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
      committed.line(clean);
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
        // A peer's error that is not text is shown as JSON (bounded: it may be nested without end).
        const text = typeof detail === 'string' ? detail : typeof item.error === 'string' ? item.error : (jsonExcerpt(item.error, MAX_ERROR_LINE_CHARS) ?? '');
        keepLast(log.errorLines, cleanProgressLine(text), ERROR_LINES);
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
    ctx.signal.removeEventListener('abort', remove);
    close();
    remove();
  }
}
