// Benchmark 2: an SSH probe through the platform's SSH proxy (`host <uuid>`, the lab's proxy, in a
// process of its own), fleetprobe vs the OpenSSH client run once per probe as people script it,
// sending the same marker script on stdin. Client CPU per probe and end-to-end latency.
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BENCH, dist, fmt, median, neighbours, startWorker, tempDir, CPU_TICK_SECONDS } from './lib.mjs';
import { startLabHost } from './targets.mjs';

export const TARGETS = { cpu: 0.1, latency: 1.0 };
const SSH = '/usr/bin/ssh';
const COMMAND = 'cat /etc/os-release';

/** CPU seconds of this process's reaped children (cutime + cstime, /proc/self/stat fields 16-17). */
function childrenCpuSeconds() {
  const stat = fs.readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[13]) + Number(f[14])) * CPU_TICK_SECONDS;
}

function openssh(vars, uuid, script) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(
      SSH,
      [
        '-F',
        '/dev/null',
        '-i',
        vars.LAB_SSH_KEY_FILE,
        '-o',
        `UserKnownHostsFile=${vars.LAB_SSH_KNOWN_HOSTS}`,
        '-o',
        'StrictHostKeyChecking=yes',
        '-o',
        'BatchMode=yes',
        '-o',
        'IdentitiesOnly=yes',
        '-o',
        'ConnectTimeout=10',
        '-p',
        vars.LAB_SSH_PROXY_PORT,
        `${vars.LAB_SSH_USER}@127.0.0.1`,
        `host ${uuid}`,
      ],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.stdin.end(script);
    child.on('close', (code) => {
      const ms = performance.now() - t0;
      if (!/FPEND-[0-9a-f]+:0\n/.test(out) || !out.includes('balenaOS'))
        reject(new Error(`ssh exited ${code} without the end marker: ${out.slice(0, 200)} ${err.slice(0, 300)}`));
      else resolve(ms);
    });
  });
}

export async function runSshBench({ rounds = 7, n = 20 } = {}) {
  if (!fs.existsSync(SSH)) throw new Error(`${SSH} is missing (apt-get install openssh-client)`);
  const { markerScript } = await dist('net/ssh-session.js');
  const dir = tempDir('ssh');
  const before = neighbours();
  const lab = await startLabHost();
  const { vars } = lab;
  const fp = startWorker(path.join(BENCH, 'ssh-worker.mjs'));
  const rows = { fleetprobe: [], openssh: [] };
  try {
    const uuid = vars.LAB_DEVICE_UUID;
    const configFile = path.join(dir, 'ssh.yaml');
    fs.writeFileSync(
      configFile,
      `probes:\n  - { name: bench-ssh, kind: ssh, mode: proxy, sshProxy: "127.0.0.1:${vars.LAB_SSH_PROXY_PORT}", user: "${vars.LAB_SSH_USER}", sshKey: { file: "${vars.LAB_SSH_KEY_FILE}" }, hostKeys: { file: "${vars.LAB_SSH_KNOWN_HOSTS}" }, device: "${uuid}", command: "${COMMAND}", expect: { stdout: balenaOS }, interval: 60s, timeout: 10s }\n`,
    );
    await fp.call({ op: 'load', configFile });
    const sides = {
      async fleetprobe(count) {
        const r = await fp.call({ op: 'round', n: count });
        return { cpuMs: (r.cpuSeconds / count) * 1000, latencies: r.latencies };
      },
      async openssh(count) {
        const c0 = childrenCpuSeconds();
        const latencies = [];
        for (let i = 0; i < count; i++) latencies.push(await openssh(vars, uuid, markerScript(COMMAND, randomBytes(8).toString('hex'))));
        return { cpuMs: ((childrenCpuSeconds() - c0) / count) * 1000, latencies };
      },
    };
    // Warm-up (JIT, the lab's own first sessions), not counted.
    await sides.fleetprobe(20);
    await sides.openssh(3);
    for (let round = 0; round < rounds; round++) {
      for (const side of round % 2 ? ['openssh', 'fleetprobe'] : ['fleetprobe', 'openssh']) rows[side].push(await sides[side](n));
      process.stderr.write(
        `  ssh round ${round + 1}/${rounds}: fleetprobe ${fmt(rows.fleetprobe.at(-1).cpuMs)} ms CPU ${fmt(median(rows.fleetprobe.at(-1).latencies), 1)} ms; openssh ${fmt(rows.openssh.at(-1).cpuMs)} ms CPU ${fmt(median(rows.openssh.at(-1).latencies), 1)} ms\n`,
      );
    }
  } finally {
    await fp.stop();
    await lab.proc.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const summary = (side) => ({
    cpuMsPerProbe: median(rows[side].map((r) => r.cpuMs)),
    latencyMedianMs: median(rows[side].flatMap((r) => r.latencies)),
    latencyP90Ms: [...rows[side].flatMap((r) => r.latencies)].sort((a, b) => a - b)[Math.floor(0.9 * rows[side].length * n)],
    rounds: rows[side].map((r) => Number(r.cpuMs.toFixed(2))),
  });
  const fleetprobe = summary('fleetprobe');
  const opensshS = summary('openssh');
  const cpuRatio = fleetprobe.cpuMsPerProbe / opensshS.cpuMsPerProbe;
  const latencyRatio = fleetprobe.latencyMedianMs / opensshS.latencyMedianMs;
  const pass = cpuRatio <= TARGETS.cpu && latencyRatio <= TARGETS.latency;
  return {
    params: { rounds, n, command: COMMAND },
    fleetprobe,
    openssh: opensshS,
    cpuRatio,
    latencyRatio,
    pass,
    summary: [
      [
        'SSH probe client CPU vs OpenSSH',
        `${fmt(cpuRatio)}x (${fmt(fleetprobe.cpuMsPerProbe, 1)} vs ${fmt(opensshS.cpuMsPerProbe, 1)} ms/probe)`,
        `≤ ${TARGETS.cpu}x`,
        cpuRatio <= TARGETS.cpu ? 'yes' : '**no**',
      ],
      [
        'SSH probe latency vs OpenSSH',
        `${fmt(latencyRatio)}x (${fmt(fleetprobe.latencyMedianMs, 1)} vs ${fmt(opensshS.latencyMedianMs, 1)} ms)`,
        `≤ ${TARGETS.latency}x`,
        latencyRatio <= TARGETS.latency ? 'yes' : '**no**',
      ],
    ],
    neighbours: { before, after: neighbours() },
  };
}

export function sshMarkdown(r) {
  const p = r.params;
  return [
    `Both run \`host <uuid>\` through the lab's SSH proxy (ssh2 server, in its own process, onward to a lab device) with the same stdin marker script around \`${p.command}\`, checking the end marker and \`balenaOS\` in the output; ${p.rounds} interleaved rounds of ${p.n} sequential probes (after warm-up). fleetprobe: \`runProbe\` of an \`ssh\` probe (proxy mode, host key from known_hosts) in a child process, CPU from its \`process.cpuUsage()\`, latency the run's wall time. OpenSSH: \`ssh -F /dev/null -i KEY -o UserKnownHostsFile=... -o StrictHostKeyChecking=yes -o BatchMode=yes ... host <uuid>\`, one process per probe; CPU is the kernel's account of reaped children (cutime+cstime of the spawning process in /proc/self/stat, the sum over the round, so the 10 ms tick does not limit a per-probe figure), latency from spawn to exit.`,
    '',
    '| | client CPU ms per probe | latency median ms | latency p90 ms | per round (CPU ms/probe) |',
    '| --- | ---: | ---: | ---: | --- |',
    `| fleetprobe | ${fmt(r.fleetprobe.cpuMsPerProbe, 2)} | ${fmt(r.fleetprobe.latencyMedianMs, 1)} | ${fmt(r.fleetprobe.latencyP90Ms, 1)} | ${r.fleetprobe.rounds.join(', ')} |`,
    `| OpenSSH client | ${fmt(r.openssh.cpuMsPerProbe, 2)} | ${fmt(r.openssh.latencyMedianMs, 1)} | ${fmt(r.openssh.latencyP90Ms, 1)} | ${r.openssh.rounds.join(', ')} |`,
    '',
    `**CPU ratio ${fmt(r.cpuRatio)}x** (target ≤ ${TARGETS.cpu}x): ${r.cpuRatio <= TARGETS.cpu ? 'holds' : 'does NOT hold'}. **Latency ratio ${fmt(r.latencyRatio)}x** (target ≤ ${TARGETS.latency}x): ${r.latencyRatio <= TARGETS.latency ? 'holds' : 'does NOT hold'}.`,
  ].join('\n');
}
