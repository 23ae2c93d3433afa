// `npm run bench [-- NAME...] [--minutes M] [--short] [--scale F] [--shards on|off]`: runs the
// benchmarks (all by default: http, http-daemon, ssh, timing, scale) and renders bench/RESULTS.md
// from bench/results.json (each benchmark keeps its
// latest result, so running one alone updates only its section).
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { BENCH, fmt, loadResults, saveResult } from './lib.mjs';

const ALL = ['http', 'http-daemon', 'ssh', 'timing', 'scale'];
// --seconds (ssh): length of each round; --profile (ssh): the daemon runs under --cpu-prof and the
// summary of where its CPU went is kept with the result.
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    minutes: { type: 'string' },
    short: { type: 'boolean' },
    rounds: { type: 'string' },
    scale: { type: 'string' },
    concurrency: { type: 'string' },
    // scale: `--shards off` skips the sharded run of the full size, `--shards on` adds it at any size.
    shards: { type: 'string' },
    'no-write': { type: 'boolean' },
    seconds: { type: 'string' },
    profile: { type: 'boolean' },
    rates: { type: 'string' },
    'no-profile': { type: 'boolean' },
    // Writes RESULTS.md again from results.json, running nothing (after a change to its wording).
    render: { type: 'boolean' },
    'render-only': { type: 'boolean' },
  },
});
const chosen = values.render || values['render-only'] ? [] : positionals.length ? positionals : ALL;
for (const c of chosen) if (!ALL.includes(c)) throw new Error(`unknown benchmark "${c}"; known: ${ALL.join(', ')}`);

const argv = `npm run bench${process.argv.length > 2 ? ' -- ' + process.argv.slice(2).join(' ') : ''}`;
let failed = false;
for (const name of chosen) {
  process.stderr.write(`== ${name}\n`);
  const t0 = Date.now();
  let result;
  if (name === 'http') {
    const { runHttpBench } = await import('./http.mjs');
    result = await runHttpBench({ rounds: values.rounds ? Number(values.rounds) : undefined });
  } else if (name === 'http-daemon') {
    const { runHttpDaemonBench } = await import('./http-daemon.mjs');
    result = await runHttpDaemonBench({
      rounds: values.rounds ? Number(values.rounds) : undefined,
      seconds: values.seconds ? Number(values.seconds) : undefined,
      rates: values.rates ? values.rates.split(',').map(Number) : undefined,
      profile: !values['no-profile'],
    });
  } else if (name === 'ssh') {
    const { runSshBench } = await import('./ssh.mjs');
    result = await runSshBench({
      rounds: values.rounds ? Number(values.rounds) : undefined,
      seconds: values.seconds ? Number(values.seconds) : undefined,
      profile: values.profile,
    });
  } else if (name === 'timing') {
    const { runTimingBench } = await import('./timing.mjs');
    result = await runTimingBench({ rounds: values.rounds ? Number(values.rounds) : undefined });
  } else if (name === 'scale') {
    const { runScaleBench } = await import('./scale.mjs');
    result = await runScaleBench({
      short: values.short,
      minutes: values.minutes ? Number(values.minutes) : undefined,
      factor: values.scale ? Number(values.scale) : undefined,
      concurrency: values.concurrency ? Number(values.concurrency) : undefined,
      shards: values.shards === undefined ? undefined : values.shards === 'on',
    });
  }
  result.command = argv;
  result.elapsedSeconds = Math.round((Date.now() - t0) / 1000);
  if (!result.pass) failed = true;
  process.stderr.write(`== ${name}: ${result.pass ? 'targets hold' : 'a target does not hold'} (${result.elapsedSeconds}s)\n`);
  // The CI guard (--short) checks bounds; it must not overwrite the recorded full-size numbers.
  const key = name === 'scale' && values.scale && Number(values.scale) > 1 ? `scale-${values.scale}x` : name;
  if (!values['no-write'] && !values.short) saveResult(key, result);
  else for (const [what, got, bound, ok] of result.summary) process.stdout.write(`${ok === 'yes' ? 'ok  ' : 'FAIL'} ${what}: ${got} (bound ${bound})\n`);
}
if (values.render || (!values['no-write'] && !values.short && chosen.length)) writeMarkdown();
process.exitCode = failed ? 1 : 0;

async function writeMarkdown() {
  const all = loadResults();
  const sections = [];
  const md = {
    http: async (r) => (await import('./http.mjs')).httpMarkdown(r),
    'http-daemon': async (r) => (await import('./http-daemon.mjs')).httpDaemonMarkdown(r),
    ssh: async (r) => (await import('./ssh.mjs')).sshMarkdown(r),
    timing: async (r) => (await import('./timing.mjs')).timingMarkdown(r),
    scale: async (r) => (await import('./scale.mjs')).scaleMarkdown(r),
  };
  const titles = {
    http: '1b. HTTPS probe cost vs blackbox_exporter, runProbe in a loop (not the daemon)',
    'http-daemon': '1. HTTPS run cost in the daemon vs blackbox_exporter, at 50 and 200 runs/s',
    ssh: '2. SSH probe vs OpenSSH',
    timing: '4. Timing accuracy',
    scale: '3. Scale',
  };
  const order = [
    'http-daemon',
    'http',
    'ssh',
    'scale',
    ...Object.keys(all)
      .filter((k) => k.startsWith('scale-'))
      .sort(),
    'timing',
  ];
  for (const key of order) {
    const r = all[key];
    if (!r) continue;
    const name = key.startsWith('scale') ? 'scale' : key;
    const title = key.startsWith('scale-') ? `3b. Scale beyond the target: ${key.slice(6)}` : titles[name];
    const m = r.machine;
    sections.push(
      [
        `## ${title}`,
        '',
        `Run ${r.date} with \`${r.command}\` (${r.elapsedSeconds}s) on ${m.nproc} cores, ${m.cpu}, node ${m.node}, Linux ${m.kernel}.`,
        r.neighbours
          ? `Load average before/after: ${r.neighbours.before.loadavg} / ${r.neighbours.after.loadavg}. Busiest other processes at the start: ${r.neighbours.before.top.map((t) => '`' + t + '`').join('; ') || 'none'}.`
          : '',
        '',
        await md[name](r),
      ].join('\n'),
    );
  }
  const summary = ['| benchmark | measured | target | holds |', '| --- | --- | --- | --- |'];
  for (const key of order) for (const row of all[key]?.summary ?? []) summary.push(`| ${row.join(' | ')} |`);
  const text = [
    '# fleetprobe benchmarks',
    '',
    'Generated by `npm run build && npm run bench` (bench/run.mjs) from bench/results.json; each section says when it was run.',
    'The machine is shared with other test runs, so every comparison runs both sides in the same run, in interleaved rounds, and reports medians and ratios.',
    '',
    ...summary,
    '',
    ...sections.flatMap((s) => [s, '']),
  ].join('\n');
  fs.writeFileSync(path.join(BENCH, 'RESULTS.md'), text);
  process.stderr.write(`wrote ${path.relative(process.cwd(), path.join(BENCH, 'RESULTS.md'))}\n`);
}
export { fmt };
