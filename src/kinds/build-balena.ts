import { Agent, request } from 'undici';
import { MAX_BUNDLE_FILE_BYTES, readInputFile } from '../config/files.js';
import { ProbeError } from '../core/errors.js';
import type { ProbeContext } from '../core/kind.js';
import type { Secret } from '../core/redact.js';
import { cleanProgressLine } from '../core/run.js';
import { CLEANUP_TIMEOUT_MS, type BuildConfig } from './build-config.js';
import { packPhase } from './build-context.js';
import { buildFailed, ERROR_LINES, followBuild, keepLast, newLog, openBuild, reasonOf, type Endpoint } from './build-stream.js';
import { dialHttp } from './shared/http-exchange.js';

/**
 * `target: balena`: the platform's remote builder (`POST /v3/build`, always a draft release), and
 * the release cancelled through the API when we stop following a build that may still run.
 */

function balenaEndpoint(url: string, cfg: BuildConfig): Endpoint {
  const u = new URL(url);
  return { label: u.origin, origin: u.origin, dial: (ctx) => dialHttp(ctx, u, { tls: cfg.tls }) };
}

/** An undici dispatcher for one short request outside the run (cancel, cleanup), closed after. */
async function oneShotAgent(cfg: BuildConfig): Promise<Agent> {
  return new Agent({
    connect: {
      // Read without blocking the event loop, within the size checked at load.
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
      signal: AbortSignal.timeout(CLEANUP_TIMEOUT_MS),
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

export async function runBalena(ctx: ProbeContext, cfg: BuildConfig): Promise<void> {
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
