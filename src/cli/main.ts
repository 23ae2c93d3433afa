#!/usr/bin/env node
import { ConfigError, FleetprobeError, UnknownProbeError, UsageError } from '../core/errors.js';
import { VERSION } from '../core/version.js';
import { type Args, EXIT, parse } from './args.js';
import { cmdDaemon } from './cmd-daemon.js';
import { cmdGate } from './cmd-gate.js';
import { cmdCheck, cmdLab, cmdList } from './cmd-inspect.js';
import { cmdRun } from './cmd-run.js';
import { cmdHostkey } from './hostkey.js';
import { cmdStatus } from './status.js';
import { USAGE } from './usage.js';

export { EXIT } from './args.js';

const COMMANDS: Record<string, (args: Args) => Promise<number>> = {
  daemon: cmdDaemon,
  run: cmdRun,
  gate: cmdGate,
  check: cmdCheck,
  list: cmdList,
  lab: cmdLab,
  status: cmdStatus,
};

/** Errors that are the user's input, not a bug: a message without a stack, exit 2. */
const INPUT_ERRORS = new Set(['FP_ERR_LAB', 'FP_ERR_LISTEN', 'FP_ERR_NO_PROBES', 'FP_ERR_EMPTY_SELECTION', 'FP_ERR_REPORT_FILE']);

export async function main(argv: string[]): Promise<number> {
  try {
    // hostkey has options of its own (src/cli/hostkey.ts).
    if (argv[0] === 'hostkey') return await cmdHostkey(argv.slice(1));
    const args = parse(argv);
    if (args.values.version) {
      process.stdout.write(`fleetprobe ${VERSION}\n`);
      return EXIT.ok;
    }
    const command = args.positionals[0];
    if (args.values.help || !command) {
      process.stdout.write(USAGE + '\n');
      return args.values.help ? EXIT.ok : EXIT.usage;
    }
    const cmd = Object.hasOwn(COMMANDS, command) ? COMMANDS[command] : undefined;
    if (!cmd) throw new UsageError(`unknown command "${command}"; commands: ${[...Object.keys(COMMANDS), 'hostkey'].join(', ')}`);
    return await cmd(args);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`fleetprobe: ${err.message}\n`);
      return EXIT.usage;
    }
    if (err instanceof UsageError) {
      process.stderr.write(`fleetprobe: ${err.message}\nRun "fleetprobe --help" for usage.\n`);
      return EXIT.usage;
    }
    if (err instanceof UnknownProbeError || (err instanceof FleetprobeError && INPUT_ERRORS.has(err.code))) {
      process.stderr.write(`fleetprobe: ${err.message}\n`);
      return EXIT.usage;
    }
    process.stderr.write(`fleetprobe: ${(err as Error)?.stack ?? err}\n`);
    return EXIT.fail;
  }
}

void main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
  // Long-lived handles (the lab, undici internals) must not keep a finished command alive.
  if (process.argv[2] !== 'daemon' && process.argv[2] !== 'lab') setImmediate(() => process.exit(code));
  else process.exit(code);
});
