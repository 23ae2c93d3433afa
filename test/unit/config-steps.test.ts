import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { interpolateDocument, withoutUnresolved } from '../../src/config/interpolate.js';
import { orderIssues } from '../../src/config/issues.js';
import { mergePlatform } from '../../src/config/probe.js';
import { loadConfig } from '../../src/config/load.js';
import { listFiles, readFile } from '../../src/config/read.js';
import { ConfigError } from '../../src/core/errors.js';
import { deriveSchedule, nominalIntervalMs } from '../../src/config/schedule.js';
import type { ConfigIssue } from '../../src/core/errors.js';
import { getKind } from '../../src/kinds/index.js';
import { tempDir } from '../helpers/cli.js';

/** Each step of loadConfig's pipeline on its own (the whole pipeline: config.test.ts). */

describe('config steps', () => {
  it('listFiles: a directory gives its .yaml/.yml files in name order, each file once; a missing path is an issue', () => {
    const dir = tempDir();
    for (const f of ['b.yml', 'a.yaml', 'notes.txt']) fs.writeFileSync(path.join(dir, f), 'probes: []\n');
    const issues: ConfigIssue[] = [];
    const seen: string[] = [];
    const files = listFiles([dir, path.join(dir, 'a.yaml'), path.join(dir, 'nope.yaml')], issues, seen);
    expect(files.map((f) => path.basename(f))).toEqual(['a.yaml', 'b.yml']);
    expect(issues).toEqual([{ file: path.join(dir, 'nope.yaml'), path: '', message: 'no such file or directory' }]);
  });

  it('readFile: a YAML syntax error is one issue with its line, with a hint for ${VAR} in flow maps', () => {
    const file = path.join(tempDir(), 'bad.yaml');
    fs.writeFileSync(file, 'probes:\n  - { name: x, url: ${URL}/a }\n');
    const issues: ConfigIssue[] = [];
    expect(readFile(file, issues)).toBeUndefined();
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ file, line: 2 });
    expect(issues[0].message).toMatch(/^YAML: .*quote values that use \$\{VAR\}/);
  });

  it('readFile: a config file that is a FIFO or a device is one issue, read without blocking', () => {
    const fifo = path.join(tempDir(), 'probes.yaml');
    execFileSync('mkfifo', [fifo]);
    const issues: ConfigIssue[] = [];
    expect(readFile(fifo, issues)).toBeUndefined();
    expect(readFile('/dev/zero', issues)).toBeUndefined();
    expect(issues.map((i) => i.message)).toEqual(['is a FIFO, not a regular file', 'is a character device, not a regular file']);
  });

  it('interpolateDocument: replaces in place and reports each missing variable by line and path', () => {
    const file = path.join(tempDir(), 'vars.yaml');
    fs.writeFileSync(file, 'probes:\n  - name: x\n    url: https://${HOST}/${MISSING_ONE}\n');
    const parsed = readFile(file, [])!;
    const issues = interpolateDocument(parsed.doc, parsed.lc, file, { HOST: 'example.org' });
    expect(issues).toEqual([
      { file, line: 3, path: 'probes[0].url', message: 'environment variable MISSING_ONE is not set (used as ${MISSING_ONE})', unresolved: true },
    ]);
    expect(parsed.doc.toJS().probes[0].url).toBe('https://example.org/${MISSING_ONE}');
    // A schema problem on that field (or one holding it) would only repeat the missing variable.
    const filter = withoutUnresolved(issues);
    const found = [
      { file, path: 'probes[0].url', message: 'invalid' },
      { file, path: 'probes[0]', message: 'whole probe' },
      { file, path: 'probes[0].name', message: 'kept' },
    ];
    expect(filter(found).map((i) => i.message)).toEqual(['kept']);
  });

  it('mergePlatform: takes only the kind platform fields the probe leaves out', () => {
    const kind = getKind('tunnel')!;
    const { input, fromPlatform } = mergePlatform({ name: 'x', token: 'own' }, { token: 'shared', user: 'u', other: 'ignored' }, kind);
    expect(fromPlatform).toEqual(['user']);
    expect(input).toEqual({ name: 'x', token: 'own', user: 'u' });
  });

  it('deriveSchedule: probe beats defaults beats kind; the timeout defaults to 80% of the gap and must stay below it', () => {
    expect(deriveSchedule({ probe: {}, defaults: {} })).toEqual({ intervalMs: 60_000, cron: undefined, timeoutMs: 10_000 });
    expect(deriveSchedule({ probe: { interval: 5000 }, defaults: { interval: 60_000 } })).toEqual({ intervalMs: 5000, cron: undefined, timeoutMs: 4000 });
    expect(deriveSchedule({ probe: {}, defaults: {}, kindDefaults: { intervalMs: 300_000, timeoutMs: 120_000 } })).toMatchObject({
      intervalMs: 300_000,
      timeoutMs: 120_000,
    });
    expect(deriveSchedule({ probe: { interval: 500 }, defaults: {} })).toEqual({ field: 'interval', message: 'interval 500ms is below the minimum of 1s' });
    expect(deriveSchedule({ probe: { interval: 1000, cron: '* * * * *' }, defaults: {} })).toEqual({
      field: 'cron',
      message: 'set either interval or cron, not both',
    });
    expect(deriveSchedule({ probe: { timeout: 2000 }, defaults: { interval: 2000 } })).toMatchObject({ field: 'timeout' });
    expect(deriveSchedule({ probe: { cron: '*/45 * * * *', timeout: 20 * 60_000 }, defaults: {} })).toMatchObject({
      field: 'timeout',
      message: expect.stringMatching(/gap between cron runs \(15m\)/),
    });
    expect(deriveSchedule({ probe: { cron: 'not a cron' }, defaults: {} })).toMatchObject({
      field: 'cron',
      message: expect.stringMatching(/^invalid cron pattern "not a cron"/),
    });
    expect(nominalIntervalMs({ cron: '0 9 * * 1-5' })).toBe(3 * 24 * 3600_000);
  });

  it('orderIssues: each problem once, in file order then line order', () => {
    const a = { file: 'a.yaml', line: 9, path: 'x', message: 'm' };
    const b1 = { file: 'b.yaml', line: 3, path: 'y', message: 'm' };
    const b0 = { file: 'b.yaml', line: 1, path: 'z', message: 'm' };
    expect(orderIssues([b1, a, b0, { ...a }], ['a.yaml', 'b.yaml'])).toEqual([a, b0, b1]);
  });

  it('a lenient load sets aside probes whose only problems are unresolved references', () => {
    const file = path.join(tempDir(), 'fleet.yaml');
    const probe = (name: string, token: string, tunnel = 't.example:443') =>
      `  - name: ${name}\n    kind: tunnel\n    tunnel: "${tunnel}"\n    device: 0123456789abcdef\n    token: { env: ${token} }\n`;
    fs.writeFileSync(file, `probes:\n${probe('ok', 'PATH')}${probe('secret-unset', 'FP_TEST_UNSET_1')}${probe('var-unset', 'PATH', '${FP_TEST_UNSET_2}:443')}`);
    expect(() => loadConfig({ paths: [file] })).toThrow(ConfigError);
    const lenient = loadConfig({ paths: [file], lenient: true });
    expect(lenient.probes.map((p) => p.name)).toEqual(['ok']);
    expect(lenient.deferred.map((d) => [d.name, d.issues.map((i) => i.message)])).toEqual([
      ['secret-unset', ['environment variable FP_TEST_UNSET_1 is not set (secret reference)']],
      ['var-unset', ['environment variable FP_TEST_UNSET_2 is not set (used as ${FP_TEST_UNSET_2})']],
    ]);
    // A platform field is the file's, but the probe that takes it is the one that cannot run.
    fs.writeFileSync(
      file,
      `platform:\n  token: { env: FP_TEST_UNSET_3 }\nprobes:\n${probe('own', 'PATH')}${probe('via-platform', 'X').replace('    token: { env: X }\n', '')}`,
    );
    const viaPlatform = loadConfig({ paths: [file], lenient: true });
    expect(viaPlatform.probes.map((p) => p.name)).toEqual(['own']);
    expect(viaPlatform.deferred).toEqual([{ name: 'via-platform', issues: [expect.objectContaining({ path: 'platform.token', unresolved: true })] }]);
  });
});
