import { defineKind } from '../core/kind.js';
import { runBalena } from './build-balena.js';
import { checkConfig, schema } from './build-config.js';
import { runDocker } from './build-docker.js';
import { warnIfInsecure } from './shared/tls.js';

/**
 * `build`: submits a small build to the platform's remote builder (`target: balena`, always as a
 * draft release that never deploys) or to a Docker engine (`target: docker`), reading the build log
 * as it streams and timing each step. Phases: `pack` (the context, in memory), `resolve`/`connect`/
 * `tls` (to the builder), `upload` (the context sent and the builder's answer), `queue` (to the first
 * build log line), `build` (to the final item).
 *
 * A build we stop following (deadline, shutdown, a stall, a cut stream) is cancelled through the API
 * (`PATCH release(<id>)` to `cancelled`), so no build keeps running because of us.
 *
 * Files: build-config.ts (fields), build-context.ts (the context packed each run), build-stream.ts
 * (the answer read as a stream of log items, with its time limits), build-balena.ts and
 * build-docker.ts (the two backends).
 */

export const buildKind = defineKind({
  kind: 'build',
  description: "a small test build on the platform's remote builder (as a draft release) or a Docker engine, timed per step",
  phases: ['pack', 'resolve', 'connect', 'tls', 'upload', 'queue', 'build'],
  reasons: ['tls', 'auth', 'proxy', 'protocol', 'build_failed'],
  // A draft build takes a minute to a quarter of an hour (the default timeout); no latency objective.
  buckets: [30, 60, 120, 300, 600, 900],
  schema,
  check: checkConfig,
  platformFields: ['builder', 'api', 'token'],
  // Builds are slow and cost the platform real work: rarely, with room to finish.
  defaults: { intervalMs: 30 * 60_000, timeoutMs: 15 * 60_000 },
  async run(ctx, cfg) {
    if (cfg.target === 'docker') await runDocker(ctx, cfg);
    else await runBalena(ctx, cfg);
    if (cfg.target === 'balena') warnIfInsecure(ctx, cfg.tls, '', 'tls.insecureSkipVerify');
  },
});
