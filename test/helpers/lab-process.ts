import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { CLI, ROOT } from './cli.js';

/**
 * The embedded lab in a child process (`fleetprobe lab`), for tests that account for every handle
 * and byte of heap in their own process: the lab's servers, sessions and fault timers then count
 * against the lab, not against the probes under test.
 */
export interface LabProcess {
  vars: Record<string, string>;
  caFile: string;
  controlUrl: string;
  faults: { set(name: string, on: boolean): Promise<void> };
  close(): Promise<void>;
}

export async function startLabProcess(): Promise<LabProcess> {
  const child = spawn(process.execPath, [CLI, 'lab'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, FLEETPROBE_LOG_LEVEL: 'warn' } });
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const file = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`fleetprobe lab did not start within 20s\n${out}\n${err}`)), 20_000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = /credentials file\s+(\S+)/.exec(out);
      if (m && out.includes('Ctrl-C')) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.once('close', (code) => reject(new Error(`fleetprobe lab exited (${code})\n${out}\n${err}`)));
  });
  const creds = JSON.parse(fs.readFileSync(file, 'utf8')) as { vars: Record<string, string>; caFile: string };
  const controlUrl = creds.vars.LAB_CONTROL_URL;
  return {
    vars: creds.vars,
    caFile: creds.caFile,
    controlUrl,
    faults: {
      async set(name, on) {
        const res = await fetch(`${controlUrl}/faults/${name}`, { method: on ? 'PUT' : 'DELETE' });
        await res.arrayBuffer();
        if (!res.ok) throw new Error(`lab fault ${name}: HTTP ${res.status}`);
      },
    },
    async close() {
      child.kill('SIGINT');
      await exited;
    },
  };
}
