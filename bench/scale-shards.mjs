// The scale benchmark's sharded run (issue 18): twice the full mix (23,000 probes) in one probe
// file, over 2 daemon processes on this machine, each started with `--shard i/2` (startDaemon's
// shard option, what the flag sets) and so running only its share against the one lab. Checked:
// the union of their /metrics holds every probe exactly once, and each process keeps the single
// daemon's bounds for lag and RSS.
import fs from 'node:fs';
import path from 'node:path';
import { fmt } from './lib.mjs';
import { driveDaemons, probeFile, runParagraph, summarize } from './scale.mjs';

const SHARDS = 2;

export async function runSharded({ dir, lab, counts, interval, concurrency, durationMs, bounds }) {
  const doubled = Object.fromEntries(Object.entries(counts).map(([k, n]) => [k, n * SHARDS]));
  const total = Object.values(doubled).reduce((a, n) => a + n, 0);
  const configFile = path.join(dir, 'sharded.yaml');
  fs.writeFileSync(configFile, probeFile(lab, doubled, interval));
  process.stderr.write(`  sharded: ${total} probes over ${SHARDS} processes\n`);
  const ds = await driveDaemons({ configFile, concurrency, durationMs, shards: SHARDS, tag: 'sharded ' });
  const per = ds.map((d) => summarize(d, d.names.length));
  // Every configured probe exactly once across the shards.
  const seen = new Map();
  for (const d of ds) for (const n of d.names) seen.set(n, (seen.get(n) ?? 0) + 1);
  const twice = [...seen].filter(([, n]) => n > 1).map(([name]) => name);
  const expected = Object.entries(doubled).flatMap(([kind, n]) => Array.from({ length: n }, (_, i) => `${kind}-${i}`));
  const missing = expected.filter((n) => !seen.has(n));
  const b = bounds;
  const each = (f) => per.map(f).join(' / ');
  const checks = [
    [
      'every probe in exactly one shard',
      `${seen.size} of ${total} (${each((m) => m.probes)} per shard)${missing.length ? `, missing ${missing.slice(0, 3).join(', ')}` : ''}${twice.length ? `, twice ${twice.slice(0, 3).join(', ')}` : ''}`,
      `${total}, none twice`,
      missing.length === 0 && twice.length === 0 && seen.size === total,
    ],
    ['scheduler start lag p99 per process', `${each((m) => `${fmt(m.lagP99Ms, 1)} ms`)}`, `≤ ${b.lagP99Ms} ms`, per.every((m) => m.lagP99Ms <= b.lagP99Ms)],
    ['RSS (max) per process', `${each((m) => `${fmt(m.rssMaxMb, 0)} MB`)}`, `≤ ${b.rssMb} MB`, per.every((m) => m.rssMaxMb <= b.rssMb)],
    ['skipped runs', `${each((m) => m.skipped)}`, '0', per.every((m) => m.skipped === 0)],
    [
      '/metrics render (max) per process',
      `${each((m) => `${fmt(m.renderWorkMaxMs, 0)} ms`)} (response ${each((m) => `${fmt(m.responseMaxMs, 0)} ms`)})`,
      `≤ ${b.renderMs} ms (response ≤ ${b.responseMs} ms)`,
      per.every((m) => m.renderWorkMaxMs <= b.renderMs && m.responseMaxMs <= b.responseMs),
    ],
  ].map(([what, got, bound, ok]) => ({ what, got, bound, ok }));
  return { shards: SHARDS, counts: doubled, total, minutes: durationMs / 60_000, per, checks, pass: checks.every((c) => c.ok) };
}

export function shardedMarkdown(s) {
  return [
    `**Sharded ×${s.shards}**: ${s.counts.http} http + ${s.counts.tunnel} tunnel + ${s.counts.ssh} ssh probes (${s.total}) in one file, over ${s.shards} daemon processes on this machine, each with \`--shard i/${s.shards}\` and the concurrency above, against the same lab, for ${fmt(s.minutes, 1)} min, measured as the single daemon is:`,
    '',
    '| check | measured | bound | holds |',
    '| --- | --- | --- | --- |',
    ...s.checks.map((c) => `| ${c.what} | ${c.got} | ${c.bound} | ${c.ok ? 'yes' : '**no**'} |`),
    '',
    ...s.per.flatMap((m, i) => [`Shard ${i}/${s.shards} (${m.probes} probes): ${runParagraph(m)}`, '']),
  ]
    .join('\n')
    .trimEnd();
}
