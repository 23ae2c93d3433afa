// Where a process's CPU went, from a V8 .cpuprofile (`node --cpu-prof`): self time by area and by
// function, and inclusive time of the functions named, over the samples from `fromMs` (since the
// profile started) on, so start-up and warm-up can be left out.
import fs from 'node:fs';

/** The area a frame's CPU belongs to, for a summary a reader can act on. */
function area(frame) {
  const { functionName: fn, url } = frame;
  if (fn === '(garbage collector)') return 'GC';
  if (fn === '(idle)') return 'idle';
  if (fn === '(program)') return 'native (program)';
  if (/node_modules\/undici\//.test(url)) return 'undici';
  if (/node_modules\/pino/.test(url)) return 'pino';
  if (/node_modules\/zod/.test(url)) return 'zod';
  if (/node_modules\//.test(url)) return 'other dependencies';
  if (/\/dist\//.test(url)) return 'fleetprobe';
  if (/^node:(internal\/)?(_?tls|tls_|internal\/tls)/.test(url) || /_tls_(wrap|common)/.test(url) || /internal\/tls\//.test(url)) return 'node tls';
  if (/^node:(internal\/)?(net|stream|internal\/streams|_stream|internal\/stream_base)/.test(url) || /streams?\//.test(url)) return 'node net/streams';
  if (/timers/.test(url)) return 'node timers';
  if (url.startsWith('node:')) return 'node (other)';
  if (!url && fn) return `native: ${fn}`;
  return url || 'unknown';
}

const key = (f) => `${f.functionName || '(anonymous)'} ${f.url.replace(/^.*\/(node_modules|dist)\//, '$1/').replace(/^file:\/\//, '')}:${f.lineNumber + 1}`;

/**
 * @param {string} file a .cpuprofile
 * @param {{fromMs?: number, top?: number, inclusive?: RegExp}} [opts]
 */
export function summarizeProfile(file, { fromMs = 0, top = 15, inclusive = /\/dist\// } = {}) {
  const prof = JSON.parse(fs.readFileSync(file, 'utf8'));
  const nodes = new Map(prof.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map();
  const incl = new Map();
  const areas = new Map();
  let t = 0;
  let busyUs = 0;
  let idleUs = 0;
  for (let i = 0; i < prof.samples.length; i++) {
    t += prof.timeDeltas[i];
    // The time a sample stands for is the gap to the next one.
    const dt = prof.timeDeltas[i + 1] ?? 0;
    if (t / 1000 < fromMs) continue;
    const node = nodes.get(prof.samples[i]);
    const a = area(node.callFrame);
    if (a === 'idle') {
      idleUs += dt;
      continue;
    }
    busyUs += dt;
    areas.set(a, (areas.get(a) ?? 0) + dt);
    const k = key(node.callFrame);
    self.set(k, (self.get(k) ?? 0) + dt);
    const seen = new Set();
    for (let id = node.id; id !== undefined; id = parent.get(id)) {
      const f = nodes.get(id).callFrame;
      if (!inclusive.test(f.url)) continue;
      const fk = key(f);
      if (seen.has(fk)) continue;
      seen.add(fk);
      incl.set(fk, (incl.get(fk) ?? 0) + dt);
    }
  }
  const rank = (m) =>
    [...m]
      .sort((x, y) => y[1] - x[1])
      .slice(0, top)
      .map(([name, us]) => ({ name, ms: us / 1000, share: us / busyUs }));
  return { busyMs: busyUs / 1000, idleMs: idleUs / 1000, areas: rank(areas), self: rank(self), inclusive: rank(incl) };
}

// `node bench/cpuprofile.mjs FILE [FROM_MS]`: the summary as text.
if (process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/^.*\//, '/'))) {
  const s = summarizeProfile(process.argv[2], { fromMs: Number(process.argv[3] ?? 0), top: 30 });
  const line = (r) => `${(r.share * 100).toFixed(1).padStart(5)}% ${r.ms.toFixed(0).padStart(6)} ms  ${r.name}`;
  process.stdout.write(`busy ${s.busyMs.toFixed(0)} ms, idle ${s.idleMs.toFixed(0)} ms\n\nareas (self):\n${s.areas.map(line).join('\n')}\n`);
  process.stdout.write(`\nfunctions (self):\n${s.self.map(line).join('\n')}\n\nfleetprobe (inclusive):\n${s.inclusive.map(line).join('\n')}\n`);
}
