// Where a process's CPU went, from a V8 .cpuprofile (`node --cpu-prof`): self time grouped by who
// owns the code (crypto, ssh2's protocol code, fleetprobe, Node's own JS, other libraries, GC), and
// the functions with the most self time. Used by the SSH benchmark; also runnable alone:
// `node bench/profile-summary.mjs FILE.cpuprofile`.
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The group a profile node's self time is charged to. */
function groupOf({ functionName: fn, url }) {
  if (fn === '(idle)') return 'idle';
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

/**
 * `{ busyMs, groups: [{group, ms, share}], top: [{fn, ms, share}] }` of the profile in `file`, from
 * the samples `skipMs` after its start on (to leave start-up and warm-up out); `runs` is passed through.
 */
export function summarizeProfile(file, { skipMs = 0, runs = undefined } = {}) {
  const p = JSON.parse(fs.readFileSync(file, 'utf8'));
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const selfUs = new Map();
  let t = p.startTime;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i] ?? 0;
    if (t - p.startTime >= skipMs * 1000) selfUs.set(p.samples[i], (selfUs.get(p.samples[i]) ?? 0) + (p.timeDeltas[i] ?? 0));
  }
  const groups = new Map();
  const fns = new Map();
  let busy = 0;
  for (const [id, us] of selfUs) {
    const { callFrame } = byId.get(id);
    const group = groupOf(callFrame);
    if (group === 'idle') continue;
    busy += us;
    groups.set(group, (groups.get(group) ?? 0) + us);
    const where = `${callFrame.url.replace(/^.*node_modules\//, '').replace(/^.*\/dist\//, 'dist/')}:${callFrame.lineNumber + 1}`;
    const key = `${callFrame.functionName || '(anonymous)'} ${where}`;
    fns.set(key, (fns.get(key) ?? 0) + us);
  }
  const sorted = (m) => [...m].sort((a, b) => b[1] - a[1]);
  return {
    runs,
    busyMs: busy / 1000,
    groups: sorted(groups).map(([group, us]) => ({ group, ms: us / 1000, share: us / busy })),
    top: sorted(fns)
      .slice(0, 15)
      .map(([fn, us]) => ({ fn, ms: us / 1000, share: us / busy })),
  };
}

/** The summary as text: the groups, then the functions with the most self time. */
export function formatProfile(s) {
  const line = (share, ms, what) => `${(share * 100).toFixed(1).padStart(5)}%  ${ms.toFixed(0).padStart(6)} ms  ${what}\n`;
  return [
    `busy ${s.busyMs.toFixed(0)} ms\n`,
    ...s.groups.map((g) => line(g.share, g.ms, g.group)),
    'top self time:\n',
    ...s.top.map((f) => line(f.share, f.ms, f.fn)),
  ].join('');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) process.stdout.write(formatProfile(summarizeProfile(process.argv[2])));
