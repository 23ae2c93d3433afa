import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderJunit } from '../../src/cli/junit.js';
import type { RunRecord } from '../../src/cli/probe-run.js';
import { parseSelector, selectProbes, type Selection } from '../../src/cli/select.js';
import { failAfterBar, minSuccessBar, Tallies } from '../../src/cli/tally.js';
import { EmptySelectionError, UnknownProbeError, UsageError } from '../../src/core/errors.js';
import type { ProbeSpec } from '../../src/core/kind.js';
import type { RunResult } from '../../src/core/result.js';
import { tempDir } from '../helpers/cli.js';
import { validateJunit, xmllint, xpath } from '../helpers/cli-process.js';
import { fakeResult, fakeSpec } from '../helpers/results.js';

const spec = fakeSpec;

function run(s: ProbeSpec, attempt: number, over: Partial<RunResult> = {}, output: string[] = []): RunRecord {
  return { result: fakeResult(s, { startedAt: 1_700_000_000_000 + attempt * 1000, ...over }), output, attempt };
}

const fail = (reason: RunResult['reason'], phase: string, message: string): Partial<RunResult> => ({ success: false, reason, phase, message });

const PROBES = [
  spec('url-eu', 'http', { location: 'eu-west' }),
  spec('ssh-eu', 'ssh', { location: 'eu-west', tier: 'canary' }),
  spec('ssh-us', 'ssh', { location: 'us-east' }),
  spec('build', 'build', {}),
];
const sel = (over: Partial<Selection>): Selection => ({ names: [], terms: [], kinds: [], text: 'the test selection', ...over });
const names = (s: Selection) => selectProbes(PROBES, s).map((p) => p.name);

describe('selection (-l, --kind, names)', () => {
  it('label terms must all hold; kind and name count as labels; != also matches probes without the label', () => {
    expect(names(sel({ terms: parseSelector('kind=ssh,location=eu-west') }))).toEqual(['ssh-eu']);
    expect(names(sel({ terms: parseSelector('location!=eu-west') }))).toEqual(['ssh-us', 'build']);
    expect(names(sel({ terms: parseSelector('name==build') }))).toEqual(['build']);
    expect(names(sel({ terms: parseSelector(' tier = canary ') }))).toEqual(['ssh-eu']);
    expect(names(sel({ kinds: ['http', 'build'] }))).toEqual(['url-eu', 'build']);
    expect(names(sel({ kinds: ['ssh'], terms: parseSelector('location=us-east') }))).toEqual(['ssh-us']);
    expect(names(sel({}))).toEqual(PROBES.map((p) => p.name));
  });

  it('names keep the order given, once each; an unknown name lists the known ones', () => {
    expect(names(sel({ names: ['build', 'url-eu', 'build'] }))).toEqual(['build', 'url-eu']);
    expect(() => names(sel({ names: ['nope'] }))).toThrow(UnknownProbeError);
  });

  it('an empty selection names it and lists the probes and every label with its values', () => {
    let err: unknown;
    try {
      names(sel({ terms: parseSelector('location=mars'), text: '-l location=mars' }));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(EmptySelectionError);
    expect((err as EmptySelectionError).code).toBe('FP_ERR_EMPTY_SELECTION');
    expect((err as Error).message).toBe(
      'no probe matches -l location=mars\n  known probes: url-eu, ssh-eu, ssh-us, build\n  known labels: kind=build|http|ssh, location=eu-west|us-east, tier=canary',
    );
  });

  it('refuses selector terms that are not name=value or name!=value', () => {
    for (const bad of ['location', 'location=eu,', '=x', 'a=b=c', 'loc ation=x', 'a>b']) expect(() => parseSelector(bad), bad).toThrow(UsageError);
  });
});

describe('bars and tallies', () => {
  const [url] = PROBES;
  it('--min-success: the share of runs that passed; aborted runs count neither way', () => {
    const tallies = new Tallies([url]);
    const bar = minSuccessBar(0.5, 4);
    for (const r of [run(url, 1), run(url, 2, fail('timeout', 'request', 'slow')), run(url, 3, { success: false, aborted: true }), run(url, 4)]) tallies.add(r);
    const [t] = tallies.list;
    expect([t.passed, t.failed, t.aborted, t.counted]).toEqual([2, 1, 1, 3]);
    expect(bar.met(t)).toBe(true);
    expect(minSuccessBar(1, 4).met(t)).toBe(false);
    expect(minSuccessBar(1, 4).shortfall(t)).toBe('1 of 3 runs failed (needs 100% passing)');
    expect(tallies.totals(bar)).toEqual({
      probes: 1,
      passedProbes: 1,
      failedProbes: 0,
      notRunProbes: 0,
      runs: 3,
      passedRuns: 2,
      failedRuns: 1,
      abortedRuns: 1,
    });
  });

  it('--fail-after: the longest streak of failures in a row, not the count of failures', () => {
    const tallies = new Tallies([url]);
    const f = () => fail('device_offline', 'transfer', 'offline');
    for (const [i, over] of [{}, f(), {}, f(), {}, f()].entries()) tallies.add(run(url, i + 1, over));
    const [t] = tallies.list;
    expect(t.failed).toBe(3);
    expect(t.longestStreak).toBe(1);
    expect(failAfterBar(2, {}).met(t)).toBe(true);
    tallies.add(run(url, 7, f()));
    expect([t.streak, t.longestStreak]).toEqual([2, 2]);
    expect(failAfterBar(2, {}).met(t)).toBe(false);
    expect(failAfterBar(2, {}).shortfall(t)).toBe('failed 2 times in a row (fail-after 2)');
  });

  it('a probe with no counted run never meets a bar', () => {
    const tallies = new Tallies([url]);
    expect(minSuccessBar(0.1, 1).met(tallies.list[0])).toBe(false);
    expect(tallies.totals(minSuccessBar(0.1, 1))).toMatchObject({ passedProbes: 0, failedProbes: 0, notRunProbes: 1 });
  });
});

describe('JUnit XML', () => {
  it('escapes markup and drops what XML 1.0 cannot carry, so a hostile target cannot break the report', () => {
    const [url, ssh] = PROBES;
    const tallies = new Tallies([url, ssh, PROBES[3]]);
    tallies.add(run(url, 1, fail('assertion', 'transfer', 'body "<b>&amp;</b>" was \u0001\u0000\ud800 not ok]]>'), ['<script>&', 'bell\u0007']));
    tallies.add(run(ssh, 1));
    const xml = renderJunit({ name: 'fleetprobe run', tallies: tallies.list, bar: minSuccessBar(1, 1), startedAt: 1_700_000_000_000, interrupted: true });
    expect(xml).not.toMatch(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/);
    expect(xml).toContain('message="assertion in transfer: body &quot;&lt;b&gt;&amp;amp;&lt;/b&gt;&quot; was \ufffd\ufffd\ufffd not ok]]&gt;"');
    if (!xmllint) return;
    const file = path.join(tempDir(), 'r.xml');
    fs.writeFileSync(file, xml);
    expect(validateJunit(file)).toEqual({ ok: true, out: `${file} validates` });
    expect(xpath(file, 'string(//testcase[@name="url-eu"]/failure/@message)')).toBe(
      'assertion in transfer: body "<b>&amp;</b>" was \ufffd\ufffd\ufffd not ok]]>',
    );
    expect(xpath(file, 'string(//testcase[@name="url-eu"]/system-out)')).toContain('  <script>&\n  bell\ufffd');
    // Never ran (Ctrl-C came first): skipped, saying why.
    expect(xpath(file, 'string(//testcase[@name="build"]/skipped/@message)')).toBe('not run: interrupted before it ran');
    expect(xpath(file, 'string(//testsuite[@name="build"]/@skipped)')).toBe('1');
    expect(xpath(file, 'string(//testsuite[@name="http"]/@timestamp)')).toBe('2023-11-14T22:13:21');
  });
});
