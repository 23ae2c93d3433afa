// Benchmark 1: CPU per HTTPS probe, fleetprobe vs blackbox_exporter, probing the same nginx target
// with a fresh connection per probe at the same concurrency, in interleaved rounds.
import fs from 'node:fs';
import path from 'node:path';
import { BENCH, fmt, median, neighbours, procCpuSeconds, startWorker, tempDir, CPU_TICK_SECONDS } from './lib.mjs';
import { BLACKBOX, NGINX, benchCertificates, missing, startBlackbox, startNginx } from './targets.mjs';

export const TARGET_RATIO = 1.0;

export async function runHttpBench({ rounds = 9, n = 500, concurrency = 4 } = {}) {
  for (const b of [NGINX, BLACKBOX]) if (missing(b)) throw new Error(`${b} is missing (apt-get install nginx-light prometheus-blackbox-exporter)`);
  const dir = tempDir('http');
  const certs = await benchCertificates(dir);
  const nginx = await startNginx(dir, certs);
  const blackbox = await startBlackbox(dir, certs);
  const target = `https://127.0.0.1:${nginx.tlsPort}/`;
  // One probe per lane, as a daemon would have distinct probes running side by side.
  const configFile = path.join(dir, 'probes.yaml');
  fs.writeFileSync(
    configFile,
    `probes:\n` +
      Array.from(
        { length: concurrency },
        (_, i) =>
          `  - { name: bench-https-${i}, kind: http, url: "https://bench.test:${nginx.tlsPort}/", resolve: 127.0.0.1, interval: 60s, timeout: 5s, tls: { caFile: "${certs.ca}" }, expect: { status: [200], body: ok } }\n`,
      ).join(''),
  );
  const fp = startWorker(path.join(BENCH, 'http-worker.mjs'));
  const driver = startWorker(path.join(BENCH, 'blackbox-driver.mjs'));
  const probeUrl = `http://127.0.0.1:${blackbox.port}/probe?module=https_ok&target=${encodeURIComponent(target)}`;
  const before = neighbours();
  const rows = { fleetprobe: [], blackbox: [] };
  try {
    await fp.call({ op: 'load', configFile });
    const sides = {
      async fleetprobe(count) {
        const r = await fp.call({ op: 'round', n: count, concurrency });
        if (r.failures) throw new Error(`fleetprobe: ${r.failures}/${count} probes failed, first: ${r.firstFailure}`);
        return { cpu: r.cpuSeconds, wall: r.wallSeconds };
      },
      async blackbox(count) {
        const c0 = procCpuSeconds(blackbox.proc.pid);
        const r = await driver.call({ op: 'round', n: count, concurrency, url: probeUrl });
        const cpu = procCpuSeconds(blackbox.proc.pid) - c0;
        if (r.failures) throw new Error(`blackbox_exporter: ${r.failures}/${count} probes failed, first: ${r.firstFailure}`);
        return { cpu, wall: r.wallSeconds };
      },
    };
    // Warm-up (V8's JIT and heap keep settling for the first few thousand runs of a process that
    // then runs for months; Go runtime; nginx), not counted.
    await sides.fleetprobe(3000);
    await sides.blackbox(Math.min(200, n));
    for (let round = 0; round < rounds; round++) {
      // Alternate who goes first, so a drift in background load does not favour one side.
      const order = round % 2 ? ['blackbox', 'fleetprobe'] : ['fleetprobe', 'blackbox'];
      for (const side of order) {
        const { cpu, wall } = await sides[side](n);
        rows[side].push({ cpuMsPerProbe: (cpu / n) * 1000, probesPerSecond: n / wall });
      }
      process.stderr.write(
        `  http round ${round + 1}/${rounds}: fleetprobe ${fmt(rows.fleetprobe.at(-1).cpuMsPerProbe)} ms, blackbox ${fmt(rows.blackbox.at(-1).cpuMsPerProbe)} ms CPU/probe\n`,
      );
    }
  } finally {
    await Promise.all([fp.stop(), driver.stop()]);
    await blackbox.proc.stop();
    await nginx.proc.stop('SIGQUIT');
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const summary = (side) => ({
    cpuMsPerProbe: median(rows[side].map((r) => r.cpuMsPerProbe)),
    cpuSecondsPer1000: median(rows[side].map((r) => r.cpuMsPerProbe)),
    probesPerSecond: median(rows[side].map((r) => r.probesPerSecond)),
    rounds: rows[side].map((r) => Number(r.cpuMsPerProbe.toFixed(3))),
  });
  const fleetprobe = summary('fleetprobe');
  const blackboxS = summary('blackbox');
  const ratio = fleetprobe.cpuMsPerProbe / blackboxS.cpuMsPerProbe;
  return {
    params: { rounds, n, concurrency, target: 'nginx 1 worker, TLS 1.3, RSA-2048 leaf, keep-alive off', cpuTickMs: CPU_TICK_SECONDS * 1000 },
    fleetprobe,
    blackbox: blackboxS,
    ratio,
    target: TARGET_RATIO,
    pass: ratio <= TARGET_RATIO,
    summary: [
      [
        'HTTPS probe CPU vs blackbox_exporter',
        `${fmt(ratio)}x (${fmt(fleetprobe.cpuMsPerProbe, 2)} vs ${fmt(blackboxS.cpuMsPerProbe, 2)} ms/probe)`,
        `≤ ${fmt(TARGET_RATIO, 1)}x`,
        ratio <= TARGET_RATIO ? 'yes' : '**no**',
      ],
    ],
    neighbours: { before, after: neighbours() },
  };
}

export function httpMarkdown(r) {
  const p = r.params;
  return [
    `Both probe nginx at 127.0.0.1:PORT with SNI and certificate name \`bench.test\` on ${p.target}, ${p.rounds} interleaved rounds of ${p.n} probes each at concurrency ${p.concurrency} (after warm-up rounds of 3,000 fleetprobe and 200 blackbox probes, not counted), a fresh TCP+TLS connection per probe, CA verified, body checked for \`ok\`.`,
    `fleetprobe: \`runProbe\` + the daemon's \`recordResult\` (metrics, status, log) in a child process, CPU from its \`process.cpuUsage()\`. blackbox_exporter ${'0.23.0'}: utime+stime of its process from \`/proc/PID/stat\` (tick ${p.cpuTickMs} ms), driven by a separate node process over kept-alive connections.`,
    '',
    '| | CPU ms per probe (= CPU s per 1,000) | probes/s | per round (CPU ms/probe) |',
    '| --- | ---: | ---: | --- |',
    `| fleetprobe | ${fmt(r.fleetprobe.cpuMsPerProbe, 3)} | ${fmt(r.fleetprobe.probesPerSecond, 0)} | ${r.fleetprobe.rounds.join(', ')} |`,
    `| blackbox_exporter | ${fmt(r.blackbox.cpuMsPerProbe, 3)} | ${fmt(r.blackbox.probesPerSecond, 0)} | ${r.blackbox.rounds.join(', ')} |`,
    '',
    `**Ratio fleetprobe / blackbox_exporter: ${fmt(r.ratio)}x** (target ≤ ${fmt(r.target, 1)}x): ${r.pass ? 'holds' : 'does NOT hold'}.`,
  ].join('\n');
}
