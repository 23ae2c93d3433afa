import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

/**
 * `npm run soak -- --minutes N`: runs the built daemon against its embedded lab with the lab's own
 * probes (every kind) and many fast http probes while the lab's faults toggle, samples its /metrics over time, prints a table and a
 * verdict, and exits 1 when memory, handles or scheduler lag grew (2 when the daemon misbehaved).
 *
 * Growth is judged robustly: samples of the warm-up are dropped, then the median of the last third
 * of the samples is compared with the median of the first third. Medians ignore the sawtooth of
 * garbage collection and the swings of the fault cycle, and comparing thirds (not first and last
 * sample) needs growth to be sustained. A metric "grew" only when it exceeds BOTH a relative and an
 * absolute threshold, so a small baseline cannot trip on noise:
 *
 * - RSS +25% and +32 MiB: V8 sizes its heap lazily and glibc keeps freed pages, so RSS drifts up
 *   some 10-20 MiB over the first minutes with no leak at all.
 * - heap used +30% and +16 MiB: sampled at random points of the GC cycle, a healthy daemon's heap
 *   used swings by several MiB between samples; a leak of 1 KB per run at this load (~30 runs/s)
 *   adds ~5 MiB a minute, which a 3-minute soak shows and a long soak shows plainly.
 * - active handles +50% and +20: handles follow the runs in flight, which the fault cycle moves (a
 *   stalled fault keeps every probe's socket open for its timeout); a socket leaked per failed run
 *   adds hundreds.
 * - scheduler lag (mean per sample) x2 and +50 ms: lag is a few ms when the event loop is free; a
 *   daemon slowing down under its own weight shows here first.
 */

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '3' },
    probes: { type: 'string', default: '30' },
    'sample-seconds': { type: 'string', default: '5' },
    'toggle-seconds': { type: 'string', default: '6' },
  },
});
const MINUTES = Number(values.minutes);
const PROBES = Number(values.probes);
const SAMPLE_MS = Number(values['sample-seconds']) * 1000;
const TOGGLE_MS = Number(values['toggle-seconds']) * 1000;
if (!(MINUTES > 0) || !(PROBES > 0) || !(SAMPLE_MS > 0) || !(TOGGLE_MS > 0)) {
  process.stderr.write('usage: npm run soak -- [--minutes N] [--probes N] [--sample-seconds S] [--toggle-seconds S]\n');
  process.exit(2);
}
const WARMUP_MS = Math.max(30_000, MINUTES * 60_000 * 0.15);
const CLI = path.resolve('dist', 'cli', 'main.js');

interface Sample {
  atS: number;
  rssMiB: number;
  heapMiB: number;
  handles: number;
  lagMs: number;
  runsPerS: number;
  fault: string;
}

interface Threshold {
  name: string;
  of: (s: Sample) => number;
  ratio: number;
  absolute: number;
  unit: string;
}

const THRESHOLDS: Threshold[] = [
  { name: 'RSS', of: (s) => s.rssMiB, ratio: 1.25, absolute: 32, unit: 'MiB' },
  { name: 'heap used', of: (s) => s.heapMiB, ratio: 1.3, absolute: 16, unit: 'MiB' },
  { name: 'active handles', of: (s) => s.handles, ratio: 1.5, absolute: 20, unit: '' },
  { name: 'scheduler lag', of: (s) => s.lagMs, ratio: 2, absolute: 50, unit: 'ms' },
];

/** Sum of every series of a metric in exposition text (labels ignored). */
function metric(text: string, name: string): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(name + ' ') || line.startsWith(name + '{')) total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function probesYaml(): string {
  const paths = ['/health', '/', '/redirect'];
  const devices = ['${LAB_DEVICE_UUID}', '${LAB_DEVICE2_UUID}', '${LAB_DEVICE3_UUID}'];
  const probes = Array.from({ length: PROBES }, (_, i) => {
    const device = devices[i % devices.length];
    return `  - name: soak-${i}
    kind: http
    url: https://${device}.\${LAB_URL_DOMAIN}:\${LAB_URL_FRONT_PORT}${paths[i % paths.length]}
    resolve: 127.0.0.1
    tls: { caFile: "\${LAB_CA_FILE}" }
`;
  });
  return `lab: true\ndefaults:\n  interval: 1s\n  timeout: 800ms\n  labels: { location: soak }\nprobes:\n${probes.join('')}`;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<number> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fleetprobe-soak-'));
  fs.writeFileSync(path.join(dir, 'soak.yaml'), probesYaml());
  // The lab's own probes (every kind, at their usual pace) beside the fast http ones.
  const config = ['--config', path.resolve('probes', 'lab.yaml'), '--config', dir];
  const child = spawn(process.execPath, [CLI, 'daemon', '--lab', ...config, '--listen', '127.0.0.1:0', '--log-level', 'info'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, FLEETPROBE_LOG_LEVEL: '' },
  });
  let exited: number | null | undefined;
  const exit = new Promise<number | null>((resolve) => child.on('close', (code) => resolve((exited = code))));
  // The log is read for the two addresses, then drained (a soak logs every failed run).
  let base = '';
  let control = '';
  let buf = '';
  let stderr = '';
  child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
  child.stdout.on('data', (d) => {
    if (base && control) return;
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      try {
        const l = JSON.parse(line);
        if (typeof l.listen === 'string') base = `http://${l.listen}`;
        if (l.endpoints?.control) control = l.endpoints.control;
      } catch {
        /* not JSON */
      }
    }
  });
  const stop = async () => {
    if (exited === undefined) child.kill('SIGTERM');
    const code = await Promise.race([exit, sleep(15_000).then(() => 'hung' as const)]);
    if (code === 'hung') child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
    return code;
  };

  for (let t = 0; !(base && control); t += 100) {
    if (exited !== undefined || t > 30_000) {
      process.stderr.write(`soak: the daemon did not start\n${stderr}\n`);
      await stop();
      return 2;
    }
    await sleep(100);
  }

  // Fault cycle: a healthy slot, then each lab fault in turn.
  const faults = ((await (await fetch(`${control}/faults`)).json()) as { name: string }[]).map((f) => f.name);
  const cycle = ['none', ...faults];
  let slot = 0;
  let fault = 'none';
  const toggle = async () => {
    if (fault !== 'none') await fetch(`${control}/faults/${fault}`, { method: 'DELETE' });
    fault = cycle[++slot % cycle.length];
    if (fault !== 'none') await fetch(`${control}/faults/${fault}`, { method: 'PUT' });
  };

  const started = Date.now();
  const end = started + MINUTES * 60_000;
  const samples: Sample[] = [];
  let prev: { lagSum: number; lagCount: number; runs: number; at: number } | undefined;
  let nextToggle = started + TOGGLE_MS;
  const mib = (b: number) => b / 2 ** 20;
  process.stdout.write(
    `soak: probes/lab.yaml and ${PROBES} probes every 1s against the lab for ${MINUTES} min; faults cycle through ${cycle.join(', ')} every ${TOGGLE_MS / 1000}s\n`,
  );
  process.stdout.write('   t(s)  RSS(MiB)  heap(MiB)  handles  lag(ms)  runs/s  fault\n');
  try {
    while (Date.now() < end) {
      const wait = Math.min(started + (samples.length + 1) * SAMPLE_MS, nextToggle) - Date.now();
      if (wait > 0) await sleep(wait);
      if (exited !== undefined) throw new Error(`the daemon exited (${exited}) during the soak\n${stderr}`);
      if (Date.now() >= nextToggle) {
        await toggle();
        nextToggle += TOGGLE_MS;
      }
      if (Date.now() < started + (samples.length + 1) * SAMPLE_MS) continue;
      const text = await (await fetch(`${base}/metrics`)).text();
      const now = {
        lagSum: metric(text, 'fleetprobe_scheduler_lag_seconds_sum'),
        lagCount: metric(text, 'fleetprobe_scheduler_lag_seconds_count'),
        runs: metric(text, 'probe_latency_seconds_count'),
        at: Date.now(),
      };
      if (prev) {
        const s: Sample = {
          atS: Math.round((now.at - started) / 1000),
          rssMiB: mib(metric(text, 'process_resident_memory_bytes')),
          heapMiB: mib(metric(text, 'nodejs_heap_size_used_bytes')),
          handles: metric(text, 'nodejs_active_handles'),
          lagMs: now.lagCount > prev.lagCount ? ((now.lagSum - prev.lagSum) / (now.lagCount - prev.lagCount)) * 1000 : 0,
          runsPerS: (now.runs - prev.runs) / ((now.at - prev.at) / 1000),
          fault,
        };
        samples.push(s);
        process.stdout.write(
          `${String(s.atS).padStart(7)}  ${s.rssMiB.toFixed(1).padStart(8)}  ${s.heapMiB.toFixed(1).padStart(9)}  ${String(s.handles).padStart(7)}  ${s.lagMs.toFixed(1).padStart(7)}  ${s.runsPerS.toFixed(1).padStart(6)}  ${s.fault}\n`,
        );
      }
      prev = now;
    }
  } catch (err) {
    process.stderr.write(`soak: ${(err as Error).message}\n`);
    await stop();
    return 2;
  }

  const code = await stop();
  if (code !== 0) {
    process.stderr.write(`soak: the daemon exited ${code} on SIGTERM (expected 0)\n${stderr}\n`);
    return 2;
  }

  const steady = samples.filter((s) => s.atS * 1000 >= WARMUP_MS);
  if (steady.length < 6) {
    process.stdout.write(`soak: only ${steady.length} samples after the ${WARMUP_MS / 1000}s warm-up; run longer for a verdict\n`);
    return samples.length ? 0 : 2;
  }
  const third = Math.floor(steady.length / 3);
  const first = steady.slice(0, third);
  const last = steady.slice(-third);
  let grew = false;
  process.stdout.write(`\nverdict (median of the first vs the last third of ${steady.length} samples after a ${WARMUP_MS / 1000}s warm-up):\n`);
  for (const t of THRESHOLDS) {
    const a = median(first.map(t.of));
    const b = median(last.map(t.of));
    const bad = b > a * t.ratio && b - a > t.absolute;
    grew ||= bad;
    process.stdout.write(
      `  ${bad ? 'GREW' : 'ok  '}  ${t.name.padEnd(15)} ${a.toFixed(1)} -> ${b.toFixed(1)} ${t.unit} (limit: x${t.ratio} and +${t.absolute} ${t.unit})\n`,
    );
  }
  process.stdout.write(grew ? 'soak: FAIL (growth)\n' : 'soak: ok (no growth)\n');
  return grew ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`soak: ${(err as Error).stack}\n`);
    process.exit(2);
  },
);
