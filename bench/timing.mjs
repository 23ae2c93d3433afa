// Benchmark 4: are phase durations true? One phase at a time is held back by a known delay (the
// server, a TCP relay, or a dropped SYN); the measured phase must grow by that delay (within 5 ms,
// medians over rounds) and the other phases must not move.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BENCH, dist, fmt, median, neighbours, tempDir } from './lib.mjs';

export const TOLERANCE_MS = 5;
const DELAY_MS = 200;
// Linux's initial retransmission timeout for a SYN (TCP_TIMEOUT_INIT): what a dropped SYN adds.
const SYN_RTO_MS = 1000;
const PHASES = ['resolve', 'connect', 'tls', 'request', 'transfer'];

export async function runTimingBench({ rounds = 15 } = {}) {
  for (const tool of ['unshare', 'iptables', 'ip']) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`]);
    } catch {
      throw new Error(`${tool} is missing: the timing benchmark needs unshare, ip and iptables (and root)`);
    }
  }
  const dir = tempDir('timing');
  const before = neighbours();
  let out;
  try {
    const { createLabCa } = await dist('lab/ca.js');
    const ca = createLabCa('fleetprobe timing CA');
    const leaf = ca.issue({ dnsNames: ['timing.test'] });
    const certs = { ca: path.join(dir, 'ca.pem'), cert: path.join(dir, 'server.pem'), key: path.join(dir, 'server.key') };
    fs.writeFileSync(certs.ca, ca.certPem);
    fs.writeFileSync(certs.cert, leaf.certPem);
    fs.writeFileSync(certs.key, leaf.keyPem, { mode: 0o600 });
    const arg = JSON.stringify({ certFile: certs.cert, keyFile: certs.key, caFile: certs.ca, delayMs: DELAY_MS, rounds });
    out = await new Promise((resolve, reject) => {
      const child = spawn('unshare', ['-n', process.execPath, path.join(BENCH, 'timing-netns.mjs'), arg], { stdio: ['ignore', 'pipe', 'inherit'] });
      let stdout = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.on('exit', (code) =>
        code === 0 ? resolve(JSON.parse(stdout.trim().split('\n').at(-1))) : reject(new Error(`timing-netns exited with ${code}: ${stdout}`)),
      );
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const med = (name, phase) => median(out.runs[name].map((p) => (p[phase] ?? 0) * 1000));
  const base = Object.fromEntries(PHASES.map((p) => [p, med('baseline', p)]));
  // What the dropped SYN really added, as a bare net.connect in the same rounds sees it (the
  // kernel's retransmission timer is the injector here, and it is not exactly SYN_RTO_MS).
  const synDelay = median(out.raw.dropped) - median(out.raw.plain);
  const injected = { connect: synDelay, tls: DELAY_MS, request: DELAY_MS, transfer: DELAY_MS };
  const cases = Object.entries(injected).map(([name, delay]) => {
    const deltas = Object.fromEntries(PHASES.map((p) => [p, med(name, p) - base[p]]));
    const errorInjected = deltas[name] - delay;
    const others = PHASES.filter((p) => p !== name).map((p) => Math.abs(deltas[p]));
    const worstOther = Math.max(...others);
    return {
      phase: name,
      injectedMs: Number(delay.toFixed(2)),
      medians: Object.fromEntries(PHASES.map((p) => [p, Number(med(name, p).toFixed(2))])),
      deltaMs: Number(deltas[name].toFixed(2)),
      errorMs: Number(errorInjected.toFixed(2)),
      worstOtherPhaseMs: Number(worstOther.toFixed(2)),
      pass: Math.abs(errorInjected) <= TOLERANCE_MS && worstOther <= TOLERANCE_MS,
    };
  });
  const pass = cases.every((c) => c.pass);
  return {
    params: { rounds, delayMs: DELAY_MS, synRtoMs: SYN_RTO_MS, toleranceMs: TOLERANCE_MS },
    rawConnectMs: { plain: Number(median(out.raw.plain).toFixed(2)), droppedSyn: Number(median(out.raw.dropped).toFixed(2)) },
    baseline: Object.fromEntries(PHASES.map((p) => [p, Number(base[p].toFixed(2))])),
    cases,
    pass,
    summary: cases.map((c) => [
      `timing: ${c.phase} phase +${c.injectedMs} ms`,
      `error ${fmt(c.errorMs)} ms, other phases moved ≤ ${fmt(c.worstOtherPhaseMs)} ms`,
      `≤ ${TOLERANCE_MS} ms`,
      c.pass ? 'yes' : '**no**',
    ]),
    neighbours: { before, after: neighbours() },
  };
}

export function timingMarkdown(r) {
  const p = r.params;
  const rows = r.cases.map(
    (c) =>
      `| ${c.phase} | ${c.injectedMs} | ${PHASES.map((ph) => fmt(c.medians[ph])).join(' | ')} | ${fmt(c.deltaMs)} | ${fmt(c.errorMs)} | ${fmt(c.worstOtherPhaseMs)} | ${c.pass ? 'yes' : '**no**'} |`,
  );
  return [
    `HTTPS probes (\`runProbe\`, http kind) of a node HTTPS server behind a TCP relay, in a private network namespace; ${p.rounds} interleaved rounds of the five cases, medians in ms. Delays: \`tls\` — the relay holds the server's handshake flight ${p.delayMs} ms; \`request\` — the server waits ${p.delayMs} ms before its headers; \`transfer\` — it sends the headers, waits ${p.delayMs} ms, then the body; \`connect\` — iptables drops the first SYN, so the kernel retransmits it after its initial RTO (nominally ${p.synRtoMs} ms; user space cannot hold back a TCP handshake and this kernel has no netem qdisc, so the connect delay is about 1 s, not 200 ms). Its truth is what a bare \`net.connect\` measured in the same rounds: ${fmt(r.rawConnectMs.plain)} ms plain, ${fmt(r.rawConnectMs.droppedSyn)} ms with the SYN dropped.`,
    '',
    `| delayed phase | injected ms | ${PHASES.join(' | ')} | measured delta | error | other phases moved (max) | within ${p.toleranceMs} ms |`,
    `| --- | ---: | ${PHASES.map(() => '---:').join(' | ')} | ---: | ---: | ---: | --- |`,
    `| (baseline) | 0 | ${PHASES.map((ph) => fmt(r.baseline[ph])).join(' | ')} | | | | |`,
    ...rows,
  ].join('\n');
}
