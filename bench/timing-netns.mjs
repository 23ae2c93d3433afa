// Runs inside a private network namespace (`unshare -n`, started by timing.mjs), so the iptables
// rule that drops SYNs touches nobody else's traffic. Probes each case in interleaved rounds and
// prints every run's phases as one JSON line.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import readline from 'node:readline';
import { BENCH, dist, quietLogger, sleep } from './lib.mjs';

const { certFile, keyFile, caFile, delayMs, rounds } = JSON.parse(process.argv[2]);
execFileSync('ip', ['link', 'set', 'lo', 'up']);

const server = spawn(process.execPath, [path.join(BENCH, 'timing-server.mjs'), certFile, keyFile, String(delayMs)], { stdio: ['ignore', 'pipe', 'inherit'] });
const { ports } = await new Promise((resolve, reject) => {
  readline.createInterface({ input: server.stdout }).once('line', (l) => resolve(JSON.parse(l)));
  server.once('exit', (code) => reject(new Error(`timing server exited (${code})`)));
});

// The first SYN of each connection to the `connect` relay is dropped; the client's retransmission
// (after the kernel's initial RTO, 1 s) gets through. The recent list is cleared before each such
// probe, so each probe's first SYN is "first" again.
const RECENT = 'fpsyn';
const ipt = (...args) => execFileSync('iptables', args);
ipt('-A', 'INPUT', '-p', 'tcp', '--dport', String(ports.connect), '--syn', '-m', 'recent', '--name', RECENT, '--rcheck', '-j', 'ACCEPT');
ipt('-A', 'INPUT', '-p', 'tcp', '--dport', String(ports.connect), '--syn', '-m', 'recent', '--name', RECENT, '--set', '-j', 'DROP');
const clearRecent = () => fs.writeFileSync(`/proc/net/xt_recent/${RECENT}`, '/\n');

const { runProbe } = await dist('core/run.js');
const { KINDS } = await dist('kinds/index.js');
const log = await quietLogger('warn');

const CASES = {
  baseline: { port: ports.plain, path: '/' },
  connect: { port: ports.connect, path: '/' },
  tls: { port: ports.tls, path: '/' },
  request: { port: ports.plain, path: '/slow-head' },
  transfer: { port: ports.plain, path: '/slow-body' },
};
function spec(name, { port, path: p }) {
  const config = KINDS.http.schema.parse({
    url: `https://timing.test:${port}${p}`,
    resolve: '127.0.0.1',
    tls: { caFile },
    expect: { status: [200], body: 'ok' },
  });
  return { name: `timing-${name}`, kind: 'http', intervalMs: 60_000, timeoutMs: 10_000, labels: {}, source: { file: 'bench' }, config, digest: name };
}
const specs = Object.fromEntries(Object.entries(CASES).map(([k, c]) => [k, spec(k, c)]));

/** A bare TCP connect's duration: the truth the `connect` phase is compared with. */
function rawConnectMs(port) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const s = net.connect({ host: '127.0.0.1', port }, () => {
      resolve(performance.now() - t0);
      s.destroy();
    });
    s.once('error', reject);
  });
}

const runs = Object.fromEntries(Object.keys(CASES).map((k) => [k, []]));
const raw = { plain: [], dropped: [] };
try {
  // Warm-up: the first runs of a process pay for JIT and lazy initialisation in every phase.
  for (let i = 0; i < 30; i++) await runProbe(specs.baseline, KINDS.http, { log });
  for (let round = 0; round < rounds; round++) {
    for (const name of Object.keys(CASES)) {
      if (name === 'connect') clearRecent();
      const r = await runProbe(specs[name], KINDS.http, { log });
      if (!r.success) throw new Error(`${name}: ${r.reason} in ${r.phase}: ${r.message}`);
      runs[name].push(r.phases);
      await sleep(5);
    }
    raw.plain.push(await rawConnectMs(ports.plain));
    clearRecent();
    raw.dropped.push(await rawConnectMs(ports.connect));
  }
} finally {
  server.kill('SIGTERM');
}
process.stdout.write(JSON.stringify({ runs, raw }) + '\n');
