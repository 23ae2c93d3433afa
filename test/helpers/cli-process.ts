import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { CLI, ROOT, toolPath } from './cli.js';

/**
 * A `fleetprobe` child process watched while it runs (a gate lasts seconds and is switched from
 * outside mid-run), unlike runCli, which only sees the end.
 */
export class CliProcess {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly startedAt = Date.now();
  readonly exit: Promise<{ code: number | null; atMs: number }>;
  private waiters: Array<() => void> = [];

  constructor(args: string[], env: Record<string, string> = {}) {
    this.child = spawn(process.execPath, [CLI, ...args], {
      cwd: ROOT,
      env: { ...process.env, FLEETPROBE_LOG_LEVEL: '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const wake = () => this.waiters.splice(0).forEach((w) => w());
    this.child.stdout!.on('data', (d) => ((this.stdout += d), wake()));
    this.child.stderr!.on('data', (d) => ((this.stderr += d), wake()));
    this.exit = new Promise((resolve) =>
      this.child.on('close', (code) => {
        wake();
        resolve({ code, atMs: Date.now() });
      }),
    );
  }

  /** Waits until the output (stdout + stderr) matches; returns the match. */
  async waitFor(re: RegExp, timeoutMs = 20_000): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = re.exec(this.stdout) ?? re.exec(this.stderr);
      if (m) return m;
      if (Date.now() > deadline || this.child.exitCode !== null)
        throw new Error(`${re} not seen within ${timeoutMs}ms\nstdout:\n${this.stdout}\nstderr:\n${this.stderr}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, 200);
        this.waiters.push(() => (clearTimeout(t), r()));
      });
    }
  }

  /** The JSON Lines printed so far. */
  jsonLines(): Record<string, any>[] {
    return this.stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, any>);
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.child.exitCode === null) this.child.kill(signal);
  }
}

export const JUNIT_XSD = path.join(ROOT, 'test/fixtures/junit.xsd');

/** xmllint (libxml2-utils), the JUnit reports' real consumer in tests; under CI=true it must be there. */
export const xmllint = toolPath('xmllint', 'libxml2-utils');

/** xmllint's verdict on a report against the JUnit schema: "validates", or its complaints. */
export function validateJunit(file: string): { ok: boolean; out: string } {
  const r = spawnSync(xmllint!, ['--noout', '--schema', JUNIT_XSD, file], { encoding: 'utf8' });
  return { ok: r.status === 0, out: (r.stdout + r.stderr).trim() };
}

/** An XPath 1.0 expression evaluated by xmllint on a report, e.g. `string(//testcase[1]/@name)`. */
export function xpath(file: string, expr: string): string {
  const r = spawnSync(xmllint!, ['--xpath', expr, file], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`xmllint --xpath ${expr} ${file}: ${r.stderr}`);
  return r.stdout.trim();
}
