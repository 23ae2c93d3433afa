import { describeDeferred } from './deferred.js';
import { loadConfig } from '../config/load.js';
import { createLogger } from '../core/log.js';
import { ownedBy, shardFrom } from '../daemon/shard.js';
import { startLab } from '../lab/index.js';
import { type Args, configPathsFor, EXIT, labFaults, logLevel, maybeLab } from './args.js';
import { probeMode, renderList } from './render.js';

/** The commands that look without probing: check, list and lab. */

export async function cmdCheck(args: Args): Promise<number> {
  const log = createLogger({ level: logLevel(args, 'warn'), fd: 2 });
  const lab = await maybeLab(args, log);
  try {
    const config = loadConfig({ paths: configPathsFor(args), lab: Boolean(lab), vars: lab?.vars });
    for (const f of config.skippedLabFiles) process.stdout.write(`${f}: skipped (lab: true); check it with --lab\n`);
    process.stdout.write(
      `ok: ${config.probes.length} probe${config.probes.length === 1 ? '' : 's'} in ${config.files.length - config.skippedLabFiles.length} file(s)\n`,
    );
    return EXIT.ok;
  } finally {
    await lab?.close();
  }
}

export async function cmdList(args: Args): Promise<number> {
  const log = createLogger({ level: logLevel(args, 'warn'), fd: 2 });
  const shard = shardFrom(args.values.shard);
  const lab = await maybeLab(args, log);
  try {
    const config = loadConfig({ paths: configPathsFor(args), lab: Boolean(lab), vars: lab?.vars, lenient: true });
    const probes = ownedBy(config.probes, shard);
    // On stderr with --json (stdout is one JSON array); after the table otherwise.
    const skipped = config.skippedLabFiles.map((f) => `${f}: skipped (lab: true); list its probes with --lab\n`).join('');
    if (args.values.json) {
      process.stderr.write(skipped);
      const out = probes.map((s) => ({
        name: s.name,
        kind: s.kind,
        description: s.description ?? null,
        mode: probeMode(s),
        interval: s.intervalMs ? s.intervalMs / 1000 : null,
        cron: s.cron ?? null,
        timeoutSeconds: s.timeoutMs / 1000,
        labels: s.labels,
        source: s.source,
        ...(shard.count > 1 ? { shard: `${shard.index}/${shard.count}` } : {}),
      }));
      const unresolved = config.deferred.map((d) => ({ name: d.name, loaded: false, unresolved: describeDeferred(d) }));
      process.stdout.write(JSON.stringify([...out, ...unresolved], null, 2) + '\n');
    } else {
      process.stdout.write(renderList(probes) + '\n' + skipped);
      for (const d of config.deferred)
        process.stdout.write(
          `${d.name}: not loaded, unresolved references:\n${describeDeferred(d)
            .map((l) => `  ${l}\n`)
            .join('')}`,
        );
      if (shard.count > 1) process.stdout.write(`shard ${shard.index}/${shard.count}: ${probes.length} of ${config.probes.length} probes\n`);
    }
    return EXIT.ok;
  } finally {
    await lab?.close();
  }
}

export async function cmdLab(args: Args): Promise<number> {
  const log = createLogger({ level: logLevel(args, 'info'), fd: 2 });
  const lab = await startLab({ faults: labFaults(args), log });
  const lines = ['fleetprobe lab running (loopback only). Endpoints:'];
  for (const [k, v] of Object.entries(lab.endpoints)) lines.push(`  ${k.padEnd(28)} ${v}`);
  lines.push(`  credentials file             ${lab.credentialsFile}`);
  lines.push(`  CA certificate               ${lab.caFile}`);
  lines.push('Devices:');
  for (const d of lab.devices) lines.push(`  ${d.name}  ${d.uuid}`);
  lines.push('Faults (switch with curl -X PUT|DELETE <control>/faults/<name>):');
  for (const f of lab.faults.list()) lines.push(`  [${f.on ? 'x' : ' '}] ${f.name.padEnd(16)} ${f.description}`);
  lines.push('Ctrl-C to stop.');
  process.stdout.write(lines.join('\n') + '\n');
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await lab.close();
  return EXIT.ok;
}
