// Where a process's CPU went, from a V8 .cpuprofile (`node --cpu-prof`): self time by group (who
// owns the code: a classifier per benchmark decides), self time by function, and inclusive time of
// the functions named, over the samples from `fromMs` (since the profile started) on, so start-up
// and warm-up can be left out. Used by the HTTPS daemon and SSH benchmarks; also runnable alone:
// `node bench/cpuprofile.mjs FILE [--from MS] [--groups https|ssh]`.
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

/** The HTTPS daemon benchmark's areas: the HTTP client, Node's TLS and streams, the libraries. */
export function httpsArea({ functionName: fn, url }) {
  if (fn === '(garbage collector)') return 'GC';
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

/** The SSH benchmark's groups: crypto and key exchange, ssh2's protocol code, the rest. */
export function sshGroup({ functionName: fn, url }) {
  if (fn === '(garbage collector)') return 'GC';
  if (fn === '(program)') return 'native, outside JS ((program))';
  if (
    /internal\/crypto|ssh2\/lib\/protocol\/(crypto|keyParser|kex)/.test(url) ||
    /^(sign|verify|diffieHellman|createHash|createHmac|update|digest|final|encrypt|decrypt)$/.test(fn)
  )
    return 'crypto and key exchange';
  if (url.includes('node_modules/ssh2/')) return 'ssh2 protocol (JS)';
  if (url.includes('/dist/')) return 'fleetprobe';
  if (url.includes('node_modules/')) return `library ${url.split('node_modules/').pop().split('/')[0]}`;
  if (url.startsWith('node:') || !url) return 'Node.js core (net, streams, timers)';
  return 'other';
}

export const classifiers = { https: httpsArea, ssh: sshGroup };

/** `connect dist/net/dial.js:12`, `onData ssh2/lib/protocol/Protocol.js:401`: a function and where it is. */
export function functionKey(f) {
  const where = f.url
    .replace(/^file:\/\//, '')
    .replace(/^.*\/node_modules\//, '')
    .replace(/^.*\/dist\//, 'dist/');
  return `${f.functionName || '(anonymous)'} ${where}:${f.lineNumber + 1}`;
}

/**
 * `{ busyMs, idleMs, groups, self, inclusive }` of the profile in `file`, each list the `top`
 * entries `{name, ms, share}` by time (share of the busy time): self time by `classify(callFrame)`'s
 * group and by function, and inclusive time of the functions whose url matches `inclusive`.
 * @param {string} file a .cpuprofile
 * @param {{fromMs?: number, top?: number, classify?: (frame: {functionName: string, url: string}) => string, inclusive?: RegExp}} [opts]
 */
export function summarizeProfile(file, { fromMs = 0, top = 15, classify = httpsArea, inclusive = /\/dist\// } = {}) {
  const prof = JSON.parse(fs.readFileSync(file, 'utf8'));
  const nodes = new Map(prof.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map();
  const incl = new Map();
  const groups = new Map();
  const add = (m, k, us) => m.set(k, (m.get(k) ?? 0) + us);
  let t = 0;
  let busyUs = 0;
  let idleUs = 0;
  for (let i = 0; i < prof.samples.length; i++) {
    t += prof.timeDeltas[i];
    // The time a sample stands for is the gap to the next one.
    const dt = prof.timeDeltas[i + 1] ?? 0;
    if (t / 1000 < fromMs) continue;
    const node = nodes.get(prof.samples[i]);
    if (node.callFrame.functionName === '(idle)') {
      idleUs += dt;
      continue;
    }
    busyUs += dt;
    add(groups, classify(node.callFrame), dt);
    add(self, functionKey(node.callFrame), dt);
    const seen = new Set();
    for (let id = node.id; id !== undefined; id = parent.get(id)) {
      const f = nodes.get(id).callFrame;
      if (!inclusive.test(f.url)) continue;
      const fk = functionKey(f);
      if (seen.has(fk)) continue;
      seen.add(fk);
      add(incl, fk, dt);
    }
  }
  const rank = (m) =>
    [...m]
      .sort((x, y) => y[1] - x[1])
      .slice(0, top)
      .map(([name, us]) => ({ name, ms: us / 1000, share: us / busyUs }));
  return { busyMs: busyUs / 1000, idleMs: idleUs / 1000, groups: rank(groups), self: rank(self), inclusive: rank(incl) };
}

/** The summary as text: busy and idle time, then each list. */
export function formatProfile(s) {
  const line = (r) => `${(r.share * 100).toFixed(1).padStart(5)}% ${r.ms.toFixed(0).padStart(6)} ms  ${r.name}`;
  const list = (title, xs) => `\n${title}:\n${xs.map(line).join('\n')}\n`;
  return (
    `busy ${s.busyMs.toFixed(0)} ms, idle ${s.idleMs.toFixed(0)} ms\n` +
    list('groups (self)', s.groups) +
    list('functions (self)', s.self) +
    list('fleetprobe (inclusive)', s.inclusive)
  );
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { from: { type: 'string', default: '0' }, groups: { type: 'string', default: 'https' } },
  });
  const classify = classifiers[values.groups];
  if (positionals.length !== 1 || !classify) {
    process.stderr.write(`usage: node bench/cpuprofile.mjs FILE.cpuprofile [--from MS] [--groups ${Object.keys(classifiers).join('|')}]\n`);
    process.exit(2);
  }
  process.stdout.write(formatProfile(summarizeProfile(positionals[0], { fromMs: Number(values.from), top: 30, classify })));
}
