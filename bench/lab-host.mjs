// The embedded lab in a process of its own, as a load target: its CPU is not the daemon's. Prints
// {vars, devices} as one JSON line when it is up; stops on SIGTERM.
import { dist } from './lib.mjs';

const { startLab } = await dist('lab/index.js');
const lab = await startLab({});
process.stdout.write(JSON.stringify({ vars: lab.vars, devices: lab.devices }) + '\n');
process.on('SIGTERM', async () => {
  await lab.close();
  process.exit(0);
});
