// Benchmark 3: the daemon at scale. Full form: 10,000 http + 1,000 tunnel + 500 ssh probes at a
// 60 s interval for 10 minutes (--minutes M) against the embedded lab, run in a process of its
// own so the daemon's event loop and CPU are only the daemon's. Short form (--short, the CI
// guard): 2,000 http probes at 10 s for a minute, with generous bounds.
// Also the idle memory per configured probe: N probes configured, none due yet, vs none; the run
// history's memory at the full mix (scale-history.mjs); and (full size) a sharded run: twice the
// probes over 2 shard processes (scale-shards.mjs).
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import zlib from 'node:zlib';
import { BENCH, fmt, median, neighbours, percentile, sleep, startWorker, tempDir } from './lib.mjs';
import * as SHARDS from './scale-shards.mjs';
import { startLabHost } from './targets.mjs';

const MB = 1024 * 1024;
/**
 * The daemon runs with the V8 flags the sharded StatefulSet gives it (NODE_OPTIONS there): the heap
 * cap decides how much garbage V8 lets pile up between full collections, so RSS is measured as
 * deployed. On this 24 GB machine, without it V8's cap would be 4 GB and its heap growth the largest.
 */
export const HEAP_FLAGS = manifestNodeOptions();

function manifestNodeOptions() {
  const file = path.join(BENCH, '..', 'deploy/kubernetes/sharded/workload/statefulset.yaml');
  const found = /- name: NODE_OPTIONS\n\s+value: (.+)\n/.exec(fs.readFileSync(file, 'utf8'));
  if (!found) throw new Error(`${file}: no NODE_OPTIONS for the daemon`);
  return found[1].trim().split(/\s+/);
}
/** The sharded run's length (at most the main run's). */
const SHARDED_MINUTES = 5;
const FULL = {
  http: 10_000,
  tunnel: 1_000,
  ssh: 500,
  interval: '60s',
  minutes: 10,
  concurrency: 256,
  // Issue 18: render ≤ 100 ms, response ≤ 250 ms, ≤ 35 series per probe; issue 17: history ≤ 50 MB.
  bounds: { lagP99Ms: 50, rssMb: 500, renderMs: 100, responseMs: 250, idleKb: 10, seriesPerProbe: 35, historyMb: 50 },
};
const SHORT = {
  http: 2_000,
  tunnel: 0,
  ssh: 0,
  interval: '10s',
  minutes: 1,
  concurrency: 64,
  // All http: issue 18's 25 series per http probe, as the daemon exports them.
  bounds: { lagP99Ms: 500, rssMb: 400, renderMs: 1000, responseMs: 1000, idleKb: Infinity, seriesPerProbe: 25 },
};

/** The probe file: `counts` probes of each kind against the lab, spread over its devices. */
export function probeFile(lab, counts, interval) {
  const v = lab.vars;
  const lines = ['defaults:', `  interval: ${interval}`, '  labels: { location: bench }', 'probes:'];
  for (let i = 0; i < counts.http; i++) {
    const d = lab.devices[i % lab.devices.length];
    lines.push(`  - { name: http-${i}, kind: http, url: "http://127.0.0.1:${d.httpPort}/health", expect: { status: [200], body: "ok ${d.uuid}" } }`);
  }
  for (let i = 0; i < counts.tunnel; i++) {
    const d = lab.devices[i % lab.devices.length];
    lines.push(
      `  - { name: tunnel-${i}, kind: tunnel, tunnel: "127.0.0.1:${v.LAB_TUNNEL_PORT}", tunnelTls: { caFile: "${v.LAB_CA_FILE}", serverName: "${v.LAB_TUNNEL_HOST}" }, user: probe-bot, token: { file: "${v.LAB_TUNNEL_TOKEN_FILE}" }, device: "${d.uuid}", port: 80, http: { path: /health, expect: { status: [200] } } }`,
    );
  }
  for (let i = 0; i < counts.ssh; i++) {
    const d = lab.devices[i % lab.devices.length];
    lines.push(
      `  - { name: ssh-${i}, kind: ssh, mode: proxy, sshProxy: "127.0.0.1:${v.LAB_SSH_PROXY_PORT}", user: "${v.LAB_SSH_USER}", sshKey: { file: "${v.LAB_SSH_KEY_FILE}" }, hostKeys: { file: "${v.LAB_SSH_KNOWN_HOSTS}" }, device: "${d.uuid}", command: "cat /etc/os-release", expect: { stdout: balenaOS } }`,
    );
  }
  if (counts.http + counts.tunnel + counts.ssh === 0) lines[lines.length - 1] = 'probes: []';
  return lines.join('\n') + '\n';
}

/** Heap and RSS of a daemon with `counts` probes configured (none due), after full GCs. */
async function idleMemory(dir, lab, counts) {
  const file = path.join(dir, `idle-${counts.http + counts.tunnel + counts.ssh}.yaml`);
  // A week apart: with offsets spread over the week, practically none falls due while we measure.
  fs.writeFileSync(file, probeFile(lab, counts, '7d'));
  const w = startWorker(path.join(BENCH, 'scale-daemon.mjs'), [], { nodeArgs: ['--expose-gc'] });
  try {
    await w.call({ op: 'start', configFile: file });
    await sleep(2000);
    return await w.call({ op: 'settledMemory' });
  } finally {
    await w.stop();
  }
}

/** GET with the headers Prometheus sends (gzip): the raw bytes and the time to the last one. */
function scrape(url) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = http.get(`${url}/metrics`, { headers: { 'accept-encoding': 'gzip', accept: 'text/plain;version=0.0.4' }, timeout: 30_000 }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ ms: performance.now() - t0, gzip: res.headers['content-encoding'] === 'gzip', raw: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('/metrics timed out')));
    req.on('error', reject);
  });
}

/** One scrape: its time, bytes on the wire and decompressed, samples, and the probes' own samples. */
export async function getMetrics(url, { names = false } = {}) {
  const { ms, gzip, raw } = await scrape(url);
  const body = gzip ? zlib.gunzipSync(raw) : raw;
  let lines = 0;
  let comments = 0;
  for (let i = body.indexOf(10); i !== -1; i = body.indexOf(10, i + 1)) lines++;
  for (let i = body.indexOf('\n#'); i !== -1; i = body.indexOf('\n#', i + 2)) comments++;
  const text = body.toString('latin1');
  const blank = text.split('\n\n').length - 1;
  // Series of a probe carry its labels first: `{probe="`.
  let probeSeries = 0;
  for (let i = text.indexOf('{probe="'); i !== -1; i = text.indexOf('{probe="', i + 8)) probeSeries++;
  const out = { ms, bytes: body.length, wireBytes: raw.length, gzip, series: lines - comments - blank - (body[0] === 35 ? 1 : 0), probeSeries };
  // Every configured probe has exactly one probe_interval_seconds series.
  if (names) out.names = [...text.matchAll(/^probe_interval_seconds\{probe="((?:[^"\\]|\\.)*)"/gm)].map((m) => m[1]);
  return out;
}

/**
 * Runs `shards` daemons (1: unsharded; else `--shard i/N` each) on one probe file for durationMs,
 * scraping each every 10 s, and returns what each saw (raw: lags, renders, scrapes, last stats).
 */
export async function driveDaemons({ configFile, concurrency, durationMs, shards = 1, nodeArgs = [], tag = '' }) {
  const ds = [];
  try {
    for (let i = 0; i < shards; i++) {
      const w = startWorker(path.join(BENCH, 'scale-daemon.mjs'), [], { nodeArgs: [...HEAP_FLAGS, ...nodeArgs] });
      const d = { w, lags: [], renders: [], seriesRenders: [], responses: [], scrapes: [], last: undefined, startInfo: undefined, names: [] };
      ds.push(d);
      d.startInfo = await w.call({ op: 'start', configFile, concurrency, shard: shards > 1 ? { index: i, count: shards } : undefined });
      process.stderr.write(`  ${tag}daemon${shards > 1 ? ` ${i}/${shards}` : ''} up in ${fmt(d.startInfo.startMs / 1000, 1)}s\n`);
    }
    process.stderr.write(`  ${tag}running ${fmt(durationMs / 60_000, 1)} min\n`);
    const until = Date.now() + durationMs;
    while (Date.now() < until) {
      await sleep(Math.min(10_000, until - Date.now()));
      for (const [i, d] of ds.entries()) {
        d.scrapes.push(await getMetrics(d.startInfo.url));
        d.last = await d.w.call({ op: 'stats' });
        d.lags.push(...d.last.lags);
        d.renders.push(...d.last.renders);
        d.seriesRenders.push(...d.last.seriesRenders);
        d.responses.push(...d.last.responses);
        const l = d.last;
        process.stderr.write(
          `  ${tag}${shards > 1 ? `[${i}] ` : ''}${new Date().toISOString().slice(11, 19)} runs ${l.counts.runs} failed ${l.counts.failures} skipped ${l.counts.skipped} lag p99 ${fmt(percentile(d.lags, 99), 1)} ms (loop delay p99 ${fmt(l.eventLoopDelayP99Ms, 0)} ms, in flight max ${l.inFlightMax}, cpu ${fmt(l.cpuShare * 100, 0)}%) rss ${fmt(l.memory.rss / MB, 0)} MB render ${fmt(Math.max(...d.seriesRenders.slice(-1).map((r) => r.workMs)), 0)} ms /metrics ${fmt(d.scrapes.at(-1).ms, 0)} ms\n`,
        );
      }
    }
    for (const d of ds) d.names = (await getMetrics(d.startInfo.url, { names: true })).names;
  } finally {
    for (const d of ds) await d.w.stop();
  }
  return ds;
}

/** The figures of one daemon's run. */
export function summarize(d, probes) {
  const { last, lags, renders, seriesRenders, responses, scrapes, startInfo } = d;
  const responseTimes = responses.length ? responses : renders.map((r) => r.ms);
  return {
    probes,
    lagP50Ms: percentile(lags, 50),
    lagP99Ms: percentile(lags, 99),
    lagMaxMs: Math.max(...lags),
    starts: lags.length,
    runs: last.counts.runs,
    failures: last.counts.failures,
    failuresByKind: last.failuresByKind,
    firstFailures: last.firstFailures,
    skipped: last.counts.skipped,
    rssMaxMb: last.rssMax / MB,
    heapMaxMb: last.heapMax / MB,
    renderMaxMs: Math.max(...renders.map((r) => r.ms)),
    renderMedianMs: median(renders.map((r) => r.ms)),
    responseMaxMs: Math.max(...responseTimes),
    responseMedianMs: median(responseTimes),
    seriesRenderMaxMs: Math.max(...seriesRenders.map((r) => r.wallMs)),
    seriesRenderMedianMs: median(seriesRenders.map((r) => r.wallMs)),
    renderWorkMaxMs: Math.max(...seriesRenders.map((r) => r.workMs)),
    renderWorkMedianMs: median(seriesRenders.map((r) => r.workMs)),
    // Every scrape but the first.
    renderWorkMaxSteadyMs: Math.max(...seriesRenders.slice(1).map((r) => r.workMs)),
    scrapeMaxMs: Math.max(...scrapes.map((s) => s.ms)),
    scrapeMedianMs: median(scrapes.map((s) => s.ms)),
    metricsBytes: scrapes.at(-1)?.bytes,
    metricsWireBytes: scrapes.at(-1)?.wireBytes,
    metricsGzip: scrapes.at(-1)?.gzip,
    metricsSeries: scrapes.at(-1)?.series,
    seriesPerProbe: (scrapes.at(-1)?.probeSeries ?? 0) / probes,
    configLoadSeconds: startInfo.startMs / 1000,
    daemonCpuShare: last.cpuShare,
    eventLoopDelayP99Ms: last.eventLoopDelayP99Ms,
    eventLoopDelayMaxMs: last.eventLoopDelayMaxMs,
    inFlightMax: last.inFlightMax,
  };
}

/** @param {{ short?: boolean, minutes?: number, factor?: number, concurrency?: number, shards?: boolean }} [options] */
// long: the benchmark's steps in order (idle memory, history, the run, the sharded run, the checks).
export async function runScaleBench({ short = false, minutes, factor = 1, concurrency, shards } = {}) {
  const shape = short ? SHORT : FULL;
  // 11,500 probes with slow ones among them (an ssh run takes 100s of ms) need more than the
  // default 64 runs at once, as a deployment of that size would set with --concurrency.
  concurrency ??= Math.ceil(shape.concurrency * factor);
  // A fraction (--scale 0.1) makes a small run to try changes with.
  const counts = { http: Math.round(shape.http * factor), tunnel: Math.round(shape.tunnel * factor), ssh: Math.round(shape.ssh * factor) };
  const total = counts.http + counts.tunnel + counts.ssh;
  const durationMs = (minutes ?? shape.minutes) * 60_000;
  // The sharded run belongs to the full-size benchmark (twice its probes over 2 processes).
  shards ??= !short && factor === 1;
  const dir = tempDir('scale');
  const before = neighbours();
  const lab = await startLabHost();
  let ds;
  let idle;
  /** @type {any} */
  let history;
  let sharded;
  try {
    if (!short) {
      // The baseline has one probe: a daemon with none refuses to start.
      process.stderr.write(`  idle memory: 1 vs ${total} probes configured\n`);
      const zero = await idleMemory(dir, lab, { http: 1, tunnel: 0, ssh: 0 });
      const full = await idleMemory(dir, lab, counts);
      idle = {
        probes: total,
        heapKbPerProbe: (full.heapUsed - zero.heapUsed) / (total - 1) / 1024,
        rssKbPerProbe: (full.rss - zero.rss) / (total - 1) / 1024,
        zero: { heapMb: zero.heapUsed / MB, rssMb: zero.rss / MB },
        full: { heapMb: full.heapUsed / MB, rssMb: full.rss / MB },
      };
      process.stderr.write(`  run history memory at ${total} probes\n`);
      for (const fill of ['typical', 'passes']) {
        const w = startWorker(path.join(BENCH, 'scale-history.mjs'), [], { nodeArgs: ['--expose-gc'] });
        try {
          const got = await w.call({ op: 'measure', counts, fill });
          history = { ...(history ?? {}), ...got, [fill]: got.mb };
        } finally {
          await w.stop();
        }
      }
    }
    const configFile = path.join(dir, 'probes.yaml');
    fs.writeFileSync(configFile, probeFile(lab, counts, shape.interval));
    // BENCH_CPU_PROF=DIR profiles the daemon (node --cpu-prof), to see what a slow number is made of.
    const prof = process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : [];
    ds = await driveDaemons({ configFile, concurrency, durationMs, nodeArgs: prof });
    if (shards) {
      sharded = await SHARDS.runSharded({
        dir,
        lab,
        counts,
        interval: shape.interval,
        concurrency,
        durationMs: Math.min(durationMs, SHARDED_MINUTES * 60_000),
        bounds: shape.bounds,
      });
    }
  } finally {
    await lab.proc.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const b = shape.bounds;
  const m = summarize(ds[0], total);
  /** @type {[string, string, string, boolean | null][]} what, measured, bound, holds (null: not held at this size) */
  const checks = [
    ['scheduler start lag p99', `${fmt(m.lagP99Ms, 1)} ms`, `≤ ${b.lagP99Ms} ms`, m.lagP99Ms <= b.lagP99Ms],
    ['skipped runs', String(m.skipped), '0', m.skipped === 0],
    ['RSS (max)', `${fmt(m.rssMaxMb, 0)} MB`, `≤ ${b.rssMb} MB`, m.rssMaxMb <= b.rssMb],
    ['series per probe', `${fmt(m.seriesPerProbe, 1)} (${m.metricsSeries} series in all)`, `≤ ${b.seriesPerProbe}`, m.seriesPerProbe <= b.seriesPerProbe],
    [
      '/metrics render (max)',
      `${fmt(m.renderWorkMaxMs, 0)} ms of rendering (${fmt(m.renderWorkMaxSteadyMs, 0)} ms after the first scrape, median ${fmt(m.renderWorkMedianMs, 0)} ms)`,
      `≤ ${b.renderMs} ms`,
      m.renderWorkMaxMs <= b.renderMs,
    ],
    [
      '/metrics response (max)',
      `${fmt(m.responseMaxMs, 0)} ms (median ${fmt(m.responseMedianMs, 0)} ms), gzip ${fmt(m.metricsWireBytes / MB, 1)} MB of ${fmt(m.metricsBytes / MB, 1)} MB`,
      `≤ ${b.responseMs} ms`,
      m.responseMaxMs <= b.responseMs,
    ],
  ];
  if (short) checks.push(['failed runs', String(m.failures), '0', m.failures === 0]);
  if (idle)
    checks.push([
      'idle memory per configured probe',
      `${fmt(idle.heapKbPerProbe, 1)} KB heap (${fmt(idle.rssKbPerProbe, 1)} KB RSS)`,
      `≤ ${b.idleKb} KB`,
      idle.heapKbPerProbe <= b.idleKb,
    ]);
  if (history)
    checks.push([
      'run history memory (100 runs per probe)',
      `${fmt(history.typical, 1)} MB (only passes ${fmt(history.passes, 1)} MB)`,
      `≤ ${b.historyMb} MB`,
      history.typical <= b.historyMb,
    ]);
  // Beyond the target size, issue 18 asks one process for lag and RSS (and the series budget holds
  // at any size); the render, response and history bounds are the 11,500 probes' and scale with the
  // probes: their figures are shown against the 1x bound, not held to it.
  const beyond = !short && factor > 1;
  const heldBeyond = new Set(['scheduler start lag p99', 'skipped runs', 'RSS (max)', 'series per probe', 'idle memory per configured probe']);
  for (const c of checks) {
    if (!beyond || heldBeyond.has(c[0])) continue;
    c[2] = `none at ${factor}x (${c[2]} at 1x)`;
    c[3] = null;
  }
  const label = short ? 'scale (short)' : `scale${factor > 1 ? ` ${factor}x` : ''}`;
  const summary = checks.map(([what, got, bound, ok]) => [`${label}: ${what}`, got, bound, holds(ok)]);
  if (sharded) summary.push(...sharded.checks.map((c) => [`scale sharded ×${sharded.shards}: ${c.what}`, String(c.got), String(c.bound), holds(c.ok)]));
  return {
    params: {
      ...counts,
      interval: shape.interval,
      minutes: durationMs / 60_000,
      factor,
      short,
      concurrency,
      target: 'embedded lab in its own process (http: device HTTP servers, plain; tunnel: TLS CONNECT proxy; ssh: SSH proxy to lab devices)',
    },
    measured: m,
    idle,
    history,
    sharded,
    checks: checks.map(([what, got, bound, ok]) => ({ what, got, bound, ok })),
    pass: checks.every((c) => c[3] !== false) && (!sharded || sharded.pass),
    summary,
    neighbours: { before, after: neighbours() },
  };
}

/** The holds column: yes, **no**, or — for a figure shown but not held at this size. */
const holds = (ok) => (ok === null ? '—' : ok ? 'yes' : '**no**');

/** The run's story in one paragraph (runs, lag, memory, /metrics), for one daemon's figures. */
export function runParagraph(m) {
  const failures = m.failures
    ? ` (${Object.entries(m.failuresByKind)
        .map(([k, n]) => `${k} ${n}`)
        .join(', ')}; first: ${m.firstFailures
        .slice(0, 2)
        .map((f) => '`' + f.slice(0, 200) + '`')
        .join('; ')})`
    : '';
  return `Runs ${m.runs} (starts ${m.starts}), failed ${m.failures}${failures}; lag p50 ${fmt(m.lagP50Ms, 1)} ms, max ${fmt(m.lagMaxMs, 0)} ms; heap max ${fmt(m.heapMaxMb, 0)} MB; /metrics ${fmt(m.metricsBytes / MB, 1)} MB (${fmt(m.seriesPerProbe, 1)} series per probe), ${m.metricsGzip ? `${fmt(m.metricsWireBytes / MB, 2)} MB gzip-compressed as Prometheus asks for it` : 'not compressed'}. The /metrics response inside the daemon (from the request to the body ready to send, compressed) median ${fmt(m.responseMedianMs, 0)} ms, max ${fmt(m.responseMaxMs, 0)} ms; before compression median ${fmt(m.renderMedianMs, 0)} ms, max ${fmt(m.renderMaxMs, 0)} ms, of which the probes' series median ${fmt(m.seriesRenderMedianMs, 0)} ms: rendering proper (its slices added up, without the turns the event loop gives to runs between them; each probe's lines are formatted in the background when its values change, and a scrape copies the unchanged probes' lines from the last exposition in runs) median ${fmt(m.renderWorkMedianMs, 0)} ms, max ${fmt(m.renderWorkMaxMs, 0)} ms (${fmt(m.renderWorkMaxSteadyMs, 0)} ms after the first scrape); the parent's scrape (request to last byte received) median ${fmt(m.scrapeMedianMs, 0)} ms, max ${fmt(m.scrapeMaxMs, 0)} ms; config load and start ${fmt(m.configLoadSeconds, 1)} s. The daemon used ${fmt(m.daemonCpuShare * 100, 0)}% of one core on average; its event loop delay (blocking work, GC, or waiting for a CPU) p99 ${fmt(m.eventLoopDelayP99Ms, 0)} ms, max ${fmt(m.eventLoopDelayMaxMs, 0)} ms.`;
}

export function scaleMarkdown(r) {
  const p = r.params;
  const m = r.measured;
  const lines = [
    `${p.http} http + ${p.tunnel} tunnel + ${p.ssh} ssh probes at a ${p.interval} interval for ${fmt(p.minutes, 1)} min, ${p.target}. The daemon is \`startDaemon\` in a child process (node ${HEAP_FLAGS.join(' ')}, as the sharded StatefulSet runs it; --concurrency ${p.concurrency}; at most ${m.inFlightMax} runs were in flight at once); lags are every run's start lag as the scheduler reports it (raw values, not histogram buckets); RSS sampled each second; /metrics scraped every 10 s by the parent with \`Accept-Encoding: gzip\` (render and response times measured inside the daemon).`,
    '',
    '| check | measured | bound | holds |',
    '| --- | --- | --- | --- |',
    ...r.checks.map((c) => `| ${c.what} | ${c.got} | ${c.bound} | ${holds(c.ok)} |`),
    '',
    runParagraph(m),
    '',
    'Where a bound does not hold, [docs/performance.md](../docs/performance.md) ("What does not hold, and why") says why, with what the render and the memory are made of.',
  ];
  if (r.idle) {
    lines.push(
      '',
      `Idle memory: a daemon with ${r.idle.probes} probes configured (the same mix at a 7-day interval, so none is due) vs one with a single probe, after full GCs: heap ${fmt(r.idle.zero.heapMb, 1)} → ${fmt(r.idle.full.heapMb, 1)} MB, RSS ${fmt(r.idle.zero.rssMb, 0)} → ${fmt(r.idle.full.rssMb, 0)} MB: **${fmt(r.idle.heapKbPerProbe, 1)} KB heap / ${fmt(r.idle.rssKbPerProbe, 1)} KB RSS per probe**.`,
    );
  }
  if (r.history) {
    lines.push(
      '',
      `Run history (src/daemon/history.ts, \`--history\` at its default of ${r.history.runs} runs and ${r.history.failures} failures kept per probe): a RunHistory filled with ${r.history.runs} runs of each of the ${r.history.probes} probes above (each kind's phases), in a process of its own, heap plus ArrayBuffers after full GCs against the same process before: **${fmt(r.history.typical, 1)} MB** with 2 failures of 100 per probe, each with a message and 2 lines of output (issue 17's case; budget 50 MB), ${fmt(r.history.passes, 1)} MB with passes only.`,
    );
  }
  if (r.sharded) {
    const { shardedMarkdown } = SHARDS;
    lines.push('', shardedMarkdown(r.sharded));
  }
  return lines.join('\n');
}
