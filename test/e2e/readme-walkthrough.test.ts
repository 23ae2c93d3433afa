import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DaemonProcess, ROOT, runCli } from '../helpers/cli.js';

/**
 * The README's quick start, run as a reader would run it (against the lab), printing what the
 * README says it prints. Each quoted output is read from the README itself, so an edit to either
 * side that makes them differ fails here.
 */

const README = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');

/** The lines of the first fenced block after `marker` in the README. */
function blockAfter(marker: string): string[] {
  const at = README.indexOf(marker);
  expect(at, `README: "${marker}"`).toBeGreaterThanOrEqual(0);
  const m = /```[a-z]*\n([\s\S]*?)```/.exec(README.slice(at + marker.length));
  return m![1].trimEnd().split('\n');
}

/**
 * A README output line as a pattern of what the command prints: the README's ports (9437, PORT),
 * durations and dates stand for any; a trailing `...` for the rest of the line.
 */
function like(line: string): RegExp {
  let re = line.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  re = re.replace(/\\\.\\\.\\\.$/, '.*');
  re = re.replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\\\.\d{3}Z/g, '\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z');
  re = re.replace(/\d+\\\.\d+ms/g, '[\\d.]+m?s');
  re = re.replace(/ {2,}/g, ' +');
  re = re.replace(/9437|PORT/g, '\\d+');
  return new RegExp(`^${re}$`);
}

function expectLines(actual: string[], readme: string[], what: string): void {
  expect(actual.length, `${what}:\n${actual.join('\n')}`).toBe(readme.length);
  readme.forEach((line, i) => expect(actual[i], `${what}, line ${i + 1}`).toMatch(like(line)));
}

let daemon: DaemonProcess | undefined;
afterEach(async () => {
  await daemon?.stop();
  daemon = undefined;
});

describe("the README's walkthrough prints what the README says", () => {
  it('npm start (daemon --lab): the two log messages; a fault, the metrics grep, status; then the repair', async () => {
    daemon = new DaemonProcess(['--lab']);
    const base = await daemon.url();
    const control = await daemon.controlUrl();
    const messages = blockAfter('in these two messages:\n');
    const seen: string[] = [];
    for (const line of messages) seen.push((await daemon.waitForLog((l) => typeof l.msg === 'string' && like(line).test(l.msg))).msg as string);
    // The log's control URL is the one the fault commands use.
    expect(seen[1]).toContain(`curl -X PUT ${control}/faults/<name>`);
    await daemon.waitForMetrics((t) => /^probe_success\{probe="lab-url",[^}]*\} 1$/m.test(t), 30_000);

    const commands = blockAfter('Then break something and watch it:\n');
    const put = await fetch(`${control}/faults/device-offline`, { method: 'PUT' });
    expect(await put.text()).toBe(`${/answers `([^`]+)`/.exec(README)![1]}\n`);
    // The grep of the README's second command, on the metrics once lab-url has failed.
    const grep = new RegExp(/grep -E '([^']+)'/.exec(commands[1])![1]);
    const text = await daemon.waitForMetrics((t) => /^probe_success\{probe="lab-url",[^}]*\} 0$/m.test(t), 30_000);
    expectLines(
      text.split('\n').filter((l) => grep.test(l)),
      blockAfter('the second prints\n'),
      'the metrics grep',
    );

    // `fleetprobe status lab-url` prints the same timeline as `run` (below).
    const status = await runCli(['status', 'lab-url', '--daemon', base]);
    expect(status.code, status.stdout + status.stderr).toBe(1);
    const timeline = blockAfter('one run with its phase timeline:\n').slice(1);
    const out = status.stdout.split('\n');
    const start = out.findIndex((l) => like(timeline[0]).test(l));
    expect(start, status.stdout).toBeGreaterThanOrEqual(0);
    expectLines(out.slice(start, start + timeline.length), timeline, 'status lab-url');

    expect(await (await fetch(`${control}/faults/device-offline`, { method: 'DELETE' })).text()).toBe('lab fault device-offline: off\n');
    // The whole walkthrough (every lab probe started, a fault seen, status, the repair) waits up to
    // 30 s at each of its steps: the test's budget is theirs, not vitest's 30 s default.
  }, 90_000);

  it('fleetprobe run lab-url --lab --lab-fault device-offline: the timeline as quoted', async () => {
    const [command, ...output] = blockAfter('one run with its phase timeline:\n');
    expect(command).toBe('$ npx fleetprobe run lab-url --lab --lab-fault device-offline');
    const r = await runCli(command.split(' ').slice(3));
    expect(r.code, r.stderr).toBe(1);
    expectLines(r.stdout.trimEnd().split('\n'), output, 'run');
  });
});
