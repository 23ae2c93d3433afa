// Benchmark 1b: CPU per HTTPS run of the fleetprobe daemon itself (the built CLI, as a user starts
// it: N http probes on a 1 s interval, so N runs a second) against Debian's blackbox_exporter
// driven at the same rate, both probing the same nginx with a CA file. CPU is utime+stime from
// /proc of each process over a window, runs are the requests nginx logged for it in that window.
// Rounds interleave: the daemon's window, then blackbox's (order alternating), while the other
// side is idle (the daemon's probes moved to a 1 h interval by a SIGHUP reload).
import fs from 'node:fs';
import path from 'node:path';
import {
  DIST,
  fmt,
  freePort,
  median,
  neighbours,
  procCpuSeconds,
  sleep,
  startChild,
  startWorker,
  sumSamples,
  tempDir,
  BENCH,
  CPU_TICK_SECONDS,
} from './lib.mjs';
import { summarizeProfile } from './cpuprofile.mjs';
import { BLACKBOX, NGINX, benchCertificates, missing, startBlackbox, startNginx } from './targets.mjs';

export const TARGET_RATIO = 1.0;
export const GOAL_RATIO = 0.7;

/** The daemon's probe file: `n` https probes, on a 1 s interval when `active`, else 1 h (none due). */
function writeProbes(file, { n, active, port, ca }) {
  const interval = active ? '1s' : '1h';
  const lines = Array.from(
    { length: n },
    (_, i) =>
      `  - { name: bench-https-${i}, kind: http, url: "https://bench.test:${port}/fp", resolve: 127.0.0.1, interval: ${interval}, timeout: 900ms, tls: { caFile: "${ca}" }, expect: { status: [200], body: ok } }\n`,
  );
  fs.writeFileSync(file, `probes:\n${lines.join('')}`);
}

/** The daemon as a user runs it (`node dist/cli/main.js daemon ...`), with `reload()` by SIGHUP. */
async function startFleetprobe(configFile, { nodeArgs = [] } = {}) {
  const port = await freePort();
  const proc = startChild(process.execPath, [...nodeArgs, path.join(DIST, 'cli/main.js'), 'daemon', '--config', configFile, '--listen', `127.0.0.1:${port}`]);
  let log = '';
  let reloads = 0;
  const waiters = [];
  proc.child.stdout.on('data', (d) => {
    log = (log + d).slice(-100_000);
    reloads += (String(d).match(/configuration reloaded/g) ?? []).length;
    for (const w of waiters.splice(0)) w();
  });
  const until = async (ok, what) => {
    const deadline = Date.now() + 60_000;
    while (!ok()) {
      if (Date.now() > deadline || proc.child.exitCode !== null || proc.child.signalCode !== null)
        throw new Error(`fleetprobe daemon: ${what} did not happen\n${log}\n${proc.output()}`);
      await Promise.race([new Promise((r) => waiters.push(r)), sleep(100)]);
    }
  };
  await until(() => /running \d+ probes/.test(log), 'start');
  // The CLI installs its SIGHUP handler just after that line: a reload sent at once could beat it.
  await sleep(1000);
  return {
    proc,
    port,
    log: () => log,
    async reload() {
      const before = reloads;
      proc.child.kill('SIGHUP');
      await until(() => reloads > before, 'reload');
    },
  };
}

/**
 * long: one benchmark's whole sequence (targets, daemon, warm-up, interleaved rounds at each rate,
 * checks, the profiled run) reads top to bottom; its pieces are the helpers above.
 */
export async function runHttpDaemonBench({ rates = [50, 200], rounds = 5, seconds = 10, warmupSeconds = 16, profile = true } = {}) {
  for (const b of [NGINX, BLACKBOX]) if (missing(b)) throw new Error(`${b} is missing (apt-get install nginx-light prometheus-blackbox-exporter)`);
  const dir = tempDir('http-daemon');
  const certs = await benchCertificates(dir);
  const nginx = await startNginx(dir, certs, { countPaths: ['fp', 'bb'] });
  const blackbox = await startBlackbox(dir, certs);
  const driver = startWorker(path.join(BENCH, 'blackbox-driver.mjs'));
  const configFile = path.join(dir, 'probes.yaml');
  const probes = (n, active) => writeProbes(configFile, { n, active, port: nginx.tlsPort, ca: certs.ca });
  const probeUrl = `http://127.0.0.1:${blackbox.port}/probe?module=https_ok&target=${encodeURIComponent(`https://127.0.0.1:${nginx.tlsPort}/bb`)}`;
  const before = neighbours();
  const results = [];
  let fp;
  let checks;
  let prof;
  try {
    probes(rates[0], false);
    fp = await startFleetprobe(configFile);
    const scrape = async () => {
      const text = await (await fetch(`http://127.0.0.1:${fp.port}/metrics`)).text();
      return { failed: sumSamples(text, 'probe_failures_total'), skipped: sumSamples(text, 'probe_skipped_runs_total') };
    };
    const window = async (side, rate) => {
      const pid = side === 'fleetprobe' ? fp.proc.pid : blackbox.proc.pid;
      const other = side === 'fleetprobe' ? blackbox.proc.pid : fp.proc.pid;
      const counter = side === 'fleetprobe' ? 'fp' : 'bb';
      // The scrape before the window's CPU reading, so its cost is not counted.
      const f0 = side === 'fleetprobe' ? await scrape() : { failed: 0, skipped: 0 };
      const c0 = procCpuSeconds(pid);
      const o0 = procCpuSeconds(other);
      const n0 = nginx.requestsServed(counter);
      const t0 = performance.now();
      let failed = 0;
      let skipped = 0;
      let firstFailure;
      if (side === 'fleetprobe') await sleep(seconds * 1000);
      else ({ failures: failed, firstFailure } = await driver.call({ op: 'paced', rate, seconds, url: probeUrl }));
      const wall = (performance.now() - t0) / 1000;
      const runs = nginx.requestsServed(counter) - n0;
      const cpu = procCpuSeconds(pid) - c0;
      const otherIdleCpuMs = (procCpuSeconds(other) - o0) * 1000;
      if (side === 'fleetprobe') {
        const f1 = await scrape();
        failed = f1.failed - f0.failed;
        skipped = f1.skipped - f0.skipped;
      }
      if (side === 'fleetprobe' && failed)
        firstFailure = /"msg":"(probe [^"]* failed[^"]*)"/.exec(
          fp
            .log()
            .split('\n')
            .findLast((l) => / failed in /.test(l)) ?? '',
        )?.[1];
      if (failed) process.stderr.write(`  ${side}: ${failed} runs failed in the window${firstFailure ? `, e.g. ${firstFailure}` : ''}\n`);
      return { cpuMsPerRun: (cpu / runs) * 1000, runsPerSecond: runs / wall, failed, skipped, otherIdleCpuMs, loadavg: neighbours().loadavg };
    };
    // The daemon's probes on (or off), then a pause for runs to reach their pace (or to end).
    const setDaemon = async (n, active) => {
      probes(n, active);
      await fp.reload();
      await sleep(active ? 2500 : 1500);
    };
    // Warm-up (V8's JIT and heap keep settling for the first few thousand runs of a process that
    // then runs for months; Go runtime; nginx), not counted: first at the highest rate, then a
    // shorter one at each rate.
    const top = Math.max(...rates);
    process.stderr.write(`  http-daemon: warm-up, ${warmupSeconds} s at ${top} runs/s\n`);
    await setDaemon(top, true);
    await sleep(warmupSeconds * 1000);
    for (const rate of rates) {
      await setDaemon(rate, true);
      await sleep((warmupSeconds * 1000) / 2);
      await setDaemon(rate, false);
      await driver.call({ op: 'paced', rate, seconds: Math.min(5, warmupSeconds), url: probeUrl });
      const rows = { fleetprobe: [], blackbox: [] };
      for (let round = 0; round < rounds; round++) {
        // Alternate who goes first, so a drift in background load does not favour one side.
        const order = round % 2 ? ['blackbox', 'fleetprobe'] : ['fleetprobe', 'blackbox'];
        for (const side of order) {
          await setDaemon(rate, side === 'fleetprobe');
          rows[side].push(await window(side, rate));
        }
        process.stderr.write(
          `  http-daemon ${rate}/s round ${round + 1}/${rounds}: fleetprobe ${fmt(rows.fleetprobe.at(-1).cpuMsPerRun)} ms, blackbox ${fmt(rows.blackbox.at(-1).cpuMsPerRun)} ms CPU/run (load ${rows.blackbox.at(-1).loadavg})\n`,
        );
      }
      const side = (s) => ({
        cpuMsPerRun: median(rows[s].map((r) => r.cpuMsPerRun)),
        runsPerSecond: median(rows[s].map((r) => r.runsPerSecond)),
        rounds: rows[s].map((r) => Number(r.cpuMsPerRun.toFixed(3))),
        otherIdleCpuMs: median(rows[s].map((r) => r.otherIdleCpuMs)),
        failed: rows[s].reduce((n, r) => n + r.failed, 0),
        skipped: rows[s].reduce((n, r) => n + r.skipped, 0),
        loadavg: rows[s].map((r) => r.loadavg.split(' ')[0]),
      });
      const f = side('fleetprobe');
      const b = side('blackbox');
      results.push({ rate, fleetprobe: f, blackbox: b, ratio: f.cpuMsPerRun / b.cpuMsPerRun });
    }
    // Every run the daemon made passed, and none was skipped.
    const metrics = await (await fetch(`http://127.0.0.1:${fp.port}/metrics`)).text();
    checks = {
      runs: sumSamples(metrics, 'probe_latency_seconds_count'),
      failed: sumSamples(metrics, 'probe_failures_total'),
      skipped: sumSamples(metrics, 'probe_skipped_runs_total'),
    };
    if (profile) prof = await profileDaemon({ configFile, probes, rate: rates[0], seconds: Math.max(seconds * 2, 20) });
  } finally {
    await Promise.all([driver.stop(), fp?.proc.stop()]);
    await blackbox.proc.stop();
    await nginx.proc.stop('SIGQUIT');
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const pass = results.every((r) => r.ratio <= TARGET_RATIO && !r.fleetprobe.failed && !r.blackbox.failed);
  return {
    params: {
      rates,
      rounds,
      seconds,
      warmupSeconds,
      target: 'nginx 1.22 with 1 worker, TLS 1.3 (ssl_protocols TLSv1.2 TLSv1.3), RSA-2048 leaf, no session resumption, keep-alive off',
      cpuTickMs: CPU_TICK_SECONDS * 1000,
    },
    results,
    checks,
    profile: prof,
    target: TARGET_RATIO,
    goal: GOAL_RATIO,
    pass,
    summary: results.map((r) => [
      `HTTPS daemon CPU vs blackbox_exporter at ${r.rate} runs/s`,
      `${fmt(r.ratio)}x (${fmt(r.fleetprobe.cpuMsPerRun, 2)} vs ${fmt(r.blackbox.cpuMsPerRun, 2)} ms/run)`,
      `≤ ${fmt(TARGET_RATIO, 1)}x (goal ${fmt(GOAL_RATIO, 1)}x)`,
      r.ratio <= TARGET_RATIO ? 'yes' : '**no**',
    ]),
    neighbours: { before, after: neighbours() },
  };
}

/**
 * The daemon again, under `--cpu-prof`, at `rate` for `seconds` after a warm-up: where its CPU goes
 * per run (samples of the warm-up left out). The profile is written when the daemon exits.
 */
export async function profileDaemon({ configFile, probes, rate, seconds, keep = undefined }) {
  const profDir = path.join(path.dirname(configFile), 'prof');
  probes(rate, true);
  const t0 = performance.now();
  const fp = await startFleetprobe(configFile, { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${profDir}`] });
  const warmupMs = 15_000;
  await sleep(warmupMs);
  const fromMs = performance.now() - t0;
  await sleep(seconds * 1000);
  await fp.proc.stop();
  const file = fs.readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error('the profiled daemon wrote no .cpuprofile');
  if (keep) fs.copyFileSync(path.join(profDir, file), keep);
  const s = summarizeProfile(path.join(profDir, file), { fromMs, top: 12 });
  const runs = rate * seconds;
  const perRun = (xs) => xs.map((x) => ({ name: x.name, usPerRun: Math.round((x.ms / runs) * 1000), share: Number(x.share.toFixed(3)) }));
  return { rate, seconds, fromMs, busyMsPerRun: s.busyMs / runs, areas: perRun(s.groups), self: perRun(s.self), inclusive: perRun(s.inclusive) };
}

export function httpDaemonMarkdown(r) {
  const p = r.params;
  const rows = r.results.flatMap((x) => [
    `| ${x.rate} | fleetprobe daemon | **${fmt(x.fleetprobe.cpuMsPerRun, 3)}** | ${fmt(x.fleetprobe.runsPerSecond, 1)} | ${x.fleetprobe.rounds.join(', ')} | ${x.fleetprobe.loadavg.join(', ')} |`,
    `| ${x.rate} | blackbox_exporter | **${fmt(x.blackbox.cpuMsPerRun, 3)}** | ${fmt(x.blackbox.runsPerSecond, 1)} | ${x.blackbox.rounds.join(', ')} | ${x.blackbox.loadavg.join(', ')} |`,
  ]);
  const ratios = r.results.map((x) => `**${x.rate} runs/s: ${fmt(x.ratio)}x**`).join(', ');
  const holds = r.results
    .map((x) => `${x.rate}/s ${x.ratio <= r.target ? 'holds' : 'does NOT hold'}${x.ratio <= r.goal ? ' and meets the goal' : ''}`)
    .join('; ');
  const out = [
    `The daemon as a user runs it (\`node dist/cli/main.js daemon --config probes.yaml\`, log level info, no scrapes) with N \`http\` probes on a 1 s interval (N = the rate), each \`https://bench.test:PORT/fp\` with \`resolve: 127.0.0.1\`, \`tls.caFile\`, status 200 and body \`ok\` expected; blackbox_exporter 0.23.0 probing \`https://127.0.0.1:PORT/bb\` (\`server_name: bench.test\`, the same CA file, status and body regexp) for \`/probe\` requests sent at the same rate, spread evenly, by a driver process of its own. Both against one nginx (${p.target}), a fresh TCP+TLS connection per run.`,
    `CPU: utime+stime of each process from \`/proc/PID/stat\` over a window of ${p.seconds} s (tick ${p.cpuTickMs} ms), divided by the requests nginx logged for that side in the window. ${p.rounds} interleaved rounds per rate (the order alternates), each a window of the daemon and one of blackbox; while one side is measured the other is idle (the daemon's probes moved to a 1 h interval by a SIGHUP reload; blackbox gets no requests). Warm-up, not counted: the daemon ${p.warmupSeconds} s at ${Math.max(...p.rates)} runs/s, then ${p.warmupSeconds / 2} s at each rate; blackbox 5 s at each rate. Load average (1 min) at the end of each window is listed.`,
    '',
    '| runs/s | | CPU ms per run (median) | runs/s measured | per round (CPU ms/run) | load average |',
    '| ---: | --- | ---: | ---: | --- | --- |',
    ...rows,
    '',
    `Ratio fleetprobe / blackbox_exporter: ${ratios} (target ≤ ${fmt(r.target, 1)}x, goal ${fmt(r.goal, 1)}x): ${holds}.`,
    `Failed runs in the measured windows: fleetprobe ${r.results.map((x) => `${x.fleetprobe.failed} at ${x.rate}/s (${x.fleetprobe.skipped ?? '?'} skipped)`).join(', ')}; blackbox_exporter ${r.results.map((x) => `${x.blackbox.failed} at ${x.rate}/s`).join(', ')}.` +
      (r.checks ? ` The daemon made ${r.checks.runs} runs in all (warm-up included), ${r.checks.failed} failed, ${r.checks.skipped} skipped.` : ''),
  ];
  if (r.profile) {
    const pr = r.profile;
    const list = (xs) => xs.map((x) => `${x.name.replace(/\|/g, '\\|')} ${x.usPerRun} µs (${fmt(x.share * 100, 1)}%)`).join('; ');
    out.push(
      '',
      `Profile (\`node --cpu-prof\`, a second daemon at ${pr.rate} runs/s for ${pr.seconds} s after a 15 s warm-up; the profiler adds its own cost): ${fmt(pr.busyMsPerRun * 1000, 0)} µs of samples per run.`,
      `- by area (self time): ${list(pr.areas)}`,
      `- by function (self time): ${list(pr.self)}`,
      `- fleetprobe's own functions (inclusive): ${list(pr.inclusive)}`,
      '',
      'What the profile says, and why the goal is missed: [docs/performance.md](../docs/performance.md).',
    );
  }
  return out.join('\n');
}
