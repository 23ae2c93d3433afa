import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { loadConfig, type LoadOptions } from '../../src/config/load.js';
import { ConfigError, formatConfigIssue } from '../../src/core/errors.js';
import { Secret } from '../../src/core/redact.js';
import { startLab } from '../../src/lab/index.js';
import { KIND_NAMES } from '../../src/kinds/index.js';

/** Static fixtures; issue lines show their paths relative to this directory. */
const FIXTURES = fileURLToPath(new URL('../fixtures/config/', import.meta.url));
const fixture = (name: string) => path.join(FIXTURES, name);
const REPO = fileURLToPath(new URL('../../', import.meta.url));

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'fleetprobe-config-'));
afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

/** A fresh directory holding the given files (relative path -> content). */
function tree(files: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(tmpRoot, 'case-'));
  for (const [rel, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), content);
  }
  return dir;
}

/** What the user sees: the formatted issue lines, with fixture and temp directories made relative. */
function issueLines(opts: LoadOptions, ...dirs: string[]): string[] {
  let err: unknown;
  try {
    loadConfig(opts);
  } catch (e) {
    err = e;
  }
  if (!(err instanceof ConfigError)) throw new Error(`expected a ConfigError, got ${err === undefined ? 'a loaded config' : String(err)}`);
  expect(err.code).toBe('FP_ERR_CONFIG');
  const roots = [...dirs, FIXTURES].map((d) => d.replace(/\/?$/, '/'));
  return err.issues.map((i) => roots.reduce((line, root) => line.split(root).join(''), formatConfigIssue(i)));
}

const UNSET = ['FLEETPROBE_TEST_UNSET_HOST', 'FLEETPROBE_TEST_UNSET_TOKEN', 'FP_TEST_TOKEN', 'FP_TEST_HOST', 'FP_UNSET_IV'];
beforeEach(() => {
  for (const name of UNSET) vi.stubEnv(name, undefined);
});
afterEach(() => {
  vi.unstubAllEnvs();
});

const NAME_RULE = 'a probe name is letters, digits, ".", "_" and "-", starting with a letter or digit';
const STATUS_RULE = 'a status is a code (200), a class ("2xx") or a range ("200-299")';

/** One invalid fixture per rule, and the one line the user sees for it. */
const ONE_RULE: [string, string][] = [
  ['unknown-top-level-key.yaml', 'invalid/unknown-top-level-key.yaml:3: probe: unknown field'],
  ['unknown-probe-field.yaml', 'invalid/unknown-probe-field.yaml:5: probes[0].retries: unknown field'],
  ['unknown-expect-field.yaml', 'invalid/unknown-expect-field.yaml:7: probes[0].expect.bodyContains: unknown field'],
  ['missing-name.yaml', 'invalid/missing-name.yaml:2: probes[0].name: is required'],
  ['missing-kind.yaml', `invalid/missing-kind.yaml:2: probes[0].kind: is required; one of: ${KIND_NAMES.join(', ')}`],
  ['unknown-kind.yaml', `invalid/unknown-kind.yaml:3: probes[0].kind: unknown kind "gopher"; one of: ${KIND_NAMES.join(', ')}`],
  ['bad-name.yaml', `invalid/bad-name.yaml:2: probes[0].name: ${NAME_RULE}`],
  ['bad-duration.yaml', 'invalid/bad-duration.yaml:5: probes[0].interval: "5 minutes" is not a duration (use e.g. 500ms, 30s, 5m, 1h)'],
  ['interval-below-1s.yaml', 'invalid/interval-below-1s.yaml:5: probes[0].interval: interval 500ms is below the minimum of 1s'],
  ['interval-and-cron.yaml', 'invalid/interval-and-cron.yaml:6: probes[0].cron: set either interval or cron, not both'],
  [
    'bad-cron.yaml',
    `invalid/bad-cron.yaml:5: probes[0].cron: invalid cron pattern "every monday": CronPattern: invalid configuration format ('every monday'), exactly five or six space separated parts are required.`,
  ],
  ['timeout-ge-interval.yaml', 'invalid/timeout-ge-interval.yaml:6: probes[0].timeout: timeout 10s must be below the interval (10s), so runs never overlap'],
  [
    'timeout-ge-cron-gap.yaml',
    'invalid/timeout-ge-cron-gap.yaml:6: probes[0].timeout: timeout 2m must be below the gap between cron runs (1m), so runs never overlap',
  ],
  ['bad-label-name.yaml', 'invalid/bad-label-name.yaml:6: probes[0].labels.team-name: a label name must match [a-zA-Z_][a-zA-Z0-9_]*'],
  [
    'reserved-label.yaml',
    'invalid/reserved-label.yaml:6: probes[0].labels.probe: is a label fleetprobe sets itself (probe, kind, phase, reason, result, job, instance, le, quantile)',
  ],
  [
    'inline-secret.yaml',
    'invalid/inline-secret.yaml:6: probes[0].headers.Authorization: secrets must be given by reference ({env: NAME} or {file: PATH}), never inline',
  ],
  [
    'secret-env-unset.yaml',
    'invalid/secret-env-unset.yaml:6: probes[0].headers.Authorization: environment variable FLEETPROBE_TEST_UNSET_TOKEN is not set (secret reference)',
  ],
  [
    'secret-file-missing.yaml',
    'invalid/secret-file-missing.yaml:6: probes[0].headers.Authorization: cannot read secret file invalid/secrets/missing-token: ENOENT',
  ],
  ['ca-file-missing.yaml', 'invalid/ca-file-missing.yaml:6: probes[0].tls.caFile: cannot read file invalid/certs/missing-ca.pem: ENOENT'],
  ['bad-regex.yaml', 'invalid/bad-regex.yaml:6: probes[0].expect.bodyRegex: invalid regular expression: Invalid regular expression: /ok(/: Unterminated group'],
  ['bad-status.yaml', `invalid/bad-status.yaml:6: probes[0].expect.status[0]: ${STATUS_RULE}`],
  ['ftp-url.yaml', 'invalid/ftp-url.yaml:4: probes[0].url: must be an http:// or https:// URL'],
  ['yaml-syntax.yaml', 'invalid/yaml-syntax.yaml:5:1: YAML: Sequence item without - indicator'],
  ['yaml-duplicate-key.yaml', 'invalid/yaml-duplicate-key.yaml:5:5: YAML: Map keys must be unique'],
  [
    'missing-var.yaml',
    'invalid/missing-var.yaml:4: probes[0].url: environment variable FLEETPROBE_TEST_UNSET_HOST is not set (used as ${FLEETPROBE_TEST_UNSET_HOST})',
  ],
];

describe('loadConfig: one rule per invalid fixture', () => {
  it.each(ONE_RULE)('%s', (file, line) => {
    expect(issueLines({ paths: [fixture(`invalid/${file}`)] })).toEqual([line]);
  });

  it('duplicate probe names across two files of one directory name the other file:line', () => {
    expect(issueLines({ paths: [fixture('dup')] })).toEqual(['dup/b.yaml:6: probes[1].name: duplicate probe name "shared" (also defined at dup/a.yaml:5)']);
  });

  it('an empty directory', () => {
    const dir = tree({ 'notes.txt': 'not a probe file\n' });
    expect(issueLines({ paths: [dir] }, tmpRoot)).toEqual([`${path.basename(dir)}: directory holds no .yaml or .yml files`]);
  });

  it('a nonexistent path', () => {
    expect(issueLines({ paths: [fixture('no-such-dir/probes.yaml')] })).toEqual(['no-such-dir/probes.yaml: no such file or directory']);
  });

  it('every fixture in invalid/ has a case', () => {
    expect(fs.readdirSync(fixture('invalid')).sort()).toEqual([...ONE_RULE.map(([f]) => f), 'several-problems.yaml'].sort());
  });
});

describe('loadConfig: all problems at once', () => {
  it('a file with several problems reports all of them, in line order', () => {
    const lines = issueLines({ paths: [fixture('invalid/several-problems.yaml')] });
    expect(lines).toEqual([
      `invalid/several-problems.yaml:7: probes[1].name: ${NAME_RULE}`,
      'invalid/several-problems.yaml:9: probes[1].url: must be an http:// or https:// URL',
      `invalid/several-problems.yaml:11: probes[2].kind: unknown kind "carrier-pigeon"; one of: ${KIND_NAMES.join(', ')}`,
      'invalid/several-problems.yaml:15: probes[3].retries: unknown field',
      `invalid/several-problems.yaml:17: probes[3].expect.status[0]: ${STATUS_RULE}`,
    ]);
  });

  it('the error message lists every problem, and problems in several files are all reported', () => {
    const paths = [fixture('invalid/ftp-url.yaml'), fixture('invalid/bad-name.yaml'), fixture('no-such.yaml')];
    let err: ConfigError | undefined;
    try {
      loadConfig({ paths });
    } catch (e) {
      err = e as ConfigError;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect(err!.issues).toHaveLength(3);
    expect(err!.message.split(FIXTURES).join('')).toBe(
      [
        'invalid configuration (3 problems):',
        '  invalid/ftp-url.yaml:4: probes[0].url: must be an http:// or https:// URL',
        `  invalid/bad-name.yaml:2: probes[0].name: ${NAME_RULE}`,
        '  no-such.yaml: no such file or directory',
      ].join('\n'),
    );
  });

  it('a missing ${VAR} is reported once, not again as an invalid value of its field', () => {
    const dir = tree({
      'p.yaml': ['probes:', '  - name: x', '    kind: http', '    url: https://example.com/', '    interval: ${FP_UNSET_IV}', ''].join('\n'),
    });
    expect(issueLines({ paths: [dir] }, dir)).toEqual(['p.yaml:5: probes[0].interval: environment variable FP_UNSET_IV is not set (used as ${FP_UNSET_IV})']);
  });

  it('a missing ${VAR} used twice in one value is one problem', () => {
    const dir = tree({ 'p.yaml': 'probes:\n  - name: x\n    kind: http\n    url: https://${FP_TEST_HOST}/${FP_TEST_HOST}\n' });
    expect(issueLines({ paths: [dir] }, dir)).toEqual(['p.yaml:4: probes[0].url: environment variable FP_TEST_HOST is not set (used as ${FP_TEST_HOST})']);
  });

  it('a malformed secret reference and a non-string inline secret are explained', () => {
    const dir = tree({
      'p.yaml': [
        'probes:',
        '  - name: x',
        '    kind: http',
        '    url: https://example.com/',
        '    headers:',
        '      Authorization: {envv: TOKEN}',
        '      X-Api-Key: 123456',
        '      Accept: text/plain',
        '',
      ].join('\n'),
    });
    expect(issueLines({ paths: [dir] }, dir)).toEqual([
      'p.yaml:6: probes[0].headers.Authorization: a secret reference is {env: NAME} or {file: PATH}',
      'p.yaml:7: probes[0].headers.X-Api-Key: secrets must be given by reference ({env: NAME} or {file: PATH}), never inline',
    ]);
  });

  it('the cron gap is the shortest one, whatever the time of day ("*/45" runs at :00 and :45)', () => {
    const dir = tree({ 'p.yaml': 'probes:\n  - name: x\n    kind: http\n    url: https://example.com/\n    cron: "*/45 * * * *"\n    timeout: 20m\n' });
    expect(issueLines({ paths: [dir] }, dir)).toEqual([
      'p.yaml:6: probes[0].timeout: timeout 20m must be below the gap between cron runs (15m), so runs never overlap',
    ]);
  });
});

const probe = (name: string, extra: string[] = []) => [`  - name: ${name}`, '    kind: http', '    url: https://example.com/', ...extra.map((l) => `    ${l}`)];
const yaml = (...lines: (string | string[])[]) => lines.flat().join('\n') + '\n';

describe('loadConfig: valid configurations', () => {
  it('applies defaults: interval from `defaults`, timeout min(10s, 80% of interval); a probe overrides them', () => {
    const dir = tree({
      'p.yaml': yaml(
        'defaults:',
        '  interval: 30s',
        'probes:',
        probe('from-defaults'),
        probe('short-interval', ['interval: 5s']),
        probe('own-timeout', ['interval: 2m', 'timeout: 3s']),
        probe('cron', ['cron: "* * * * *"']),
      ),
    });
    const { probes, files, skippedLabFiles } = loadConfig({ paths: [dir] });
    expect(files).toEqual([path.join(dir, 'p.yaml')]);
    expect(skippedLabFiles).toEqual([]);
    expect(probes.map((p) => [p.name, p.intervalMs, p.cron, p.timeoutMs])).toEqual([
      ['from-defaults', 30_000, undefined, 10_000],
      ['short-interval', 5_000, undefined, 4_000],
      ['own-timeout', 120_000, undefined, 3_000],
      ['cron', undefined, '* * * * *', 10_000],
    ]);
    expect(probes[0].source).toEqual({ file: path.join(dir, 'p.yaml'), line: 4 });
    expect(probes[0].kind).toBe('http');
  });

  it('without a defaults block, the interval is 1m and the timeout 10s; a defaults timeout applies too', () => {
    const dir = tree({
      'a.yaml': yaml('probes:', probe('bare')),
      'b.yaml': yaml('defaults:', '  timeout: 2s', 'probes:', probe('default-timeout', ['interval: 90s'])),
    });
    const { probes } = loadConfig({ paths: [dir] });
    expect(probes.map((p) => [p.name, p.intervalMs, p.timeoutMs])).toEqual([
      ['bare', 60_000, 10_000],
      ['default-timeout', 90_000, 2_000],
    ]);
  });

  it('fills the kind defaults into config', () => {
    const dir = tree({ 'p.yaml': yaml('probes:', probe('x')) });
    const [p] = loadConfig({ paths: [dir] }).probes;
    expect(p.config).toMatchObject({ url: 'https://example.com/', method: 'GET', headers: {}, followRedirects: 5, expect: { status: ['2xx'], headers: {} } });
  });

  it('interpolates ${VAR}, ${VAR:-default} and $${, with `vars` before the environment', () => {
    vi.stubEnv('FP_TEST_HOST', 'env.example.com');
    const dir = tree({
      'p.yaml': yaml(
        'probes:',
        '  - name: x',
        '    kind: http',
        '    url: https://${FP_TEST_HOST}:${FP_TEST_PORT:-8443}/',
        '    expect:',
        '      body: "literal $${FP_TEST_HOST}"',
        '  - name: y',
        '    kind: http',
        '    url: https://${FP_TEST_HOST}/',
      ),
    });
    const env = loadConfig({ paths: [dir] }).probes.map((p) => p.config as { url: string; expect: { body?: string } });
    expect(env[0].url).toBe('https://env.example.com:8443/');
    expect(env[0].expect.body).toBe('literal ${FP_TEST_HOST}');
    expect(env[1].url).toBe('https://env.example.com/');
    const withVars = loadConfig({ paths: [dir], vars: { FP_TEST_HOST: 'vars.example.com', FP_TEST_PORT: '9443' } }).probes;
    expect((withVars[0].config as { url: string }).url).toBe('https://vars.example.com:9443/');
  });

  it('resolves {env} and {file} secrets to Secrets that print as [redacted]; {file} is relative to the config file', () => {
    vi.stubEnv('FP_TEST_TOKEN', 'Bearer env-token-value');
    const dir = tree({
      'conf/p.yaml': yaml(
        'probes:',
        probe('secrets', ['headers:', '  Authorization: {env: FP_TEST_TOKEN}', '  X-Api-Key: {file: secrets/api-key}', '  Accept: text/plain']),
      ),
      'conf/secrets/api-key': 'file-token-value\n',
    });
    const [p] = loadConfig({ paths: [path.join(dir, 'conf')] }).probes;
    const headers = (p.config as { headers: Record<string, unknown> }).headers;
    const auth = headers.Authorization as Secret;
    const key = headers['X-Api-Key'] as Secret;
    expect(auth).toBeInstanceOf(Secret);
    expect(key).toBeInstanceOf(Secret);
    expect(auth.reveal()).toBe('Bearer env-token-value');
    expect(key.reveal()).toBe('file-token-value');
    expect(headers.Accept).toBe('text/plain');
    expect(String(auth)).toBe('[redacted]');
    expect(`${key}`).toBe('[redacted]');
    const json = JSON.stringify(p);
    expect(json).toContain('"Authorization":"[redacted]"');
    expect(json).toContain('"X-Api-Key":"[redacted]"');
    expect(json).not.toContain('env-token-value');
    expect(json).not.toContain('file-token-value');
  });

  it('resolves tls.caFile relative to the config file', () => {
    const dir = tree({ 'p.yaml': yaml('probes:', probe('ca', ['tls:', '  caFile: ca.pem'])), 'ca.pem': 'not really a cert\n' });
    const [p] = loadConfig({ paths: [dir] }).probes;
    expect((p.config as { tls: { caFile: string } }).tls.caFile).toBe(path.join(dir, 'ca.pem'));
  });

  it('merges labels: defaults, then the probe', () => {
    const dir = tree({
      'p.yaml': yaml('defaults:', '  labels: {team: edge, region: eu}', 'probes:', probe('plain'), probe('own', ['labels: {region: us, tier: gold}'])),
    });
    const { probes } = loadConfig({ paths: [dir] });
    expect(probes.map((p) => p.labels)).toEqual([
      { team: 'edge', region: 'eu' },
      { team: 'edge', region: 'us', tier: 'gold' },
    ]);
  });

  it("takes a file's buckets: for every probe, or per kind; other files' probes keep their kind's", () => {
    const dir = tree({
      'a.yaml': yaml('buckets: [0.1, 0.5, 2]', 'probes:', probe('all')),
      'b.yaml': yaml('buckets:', '  ssh: [1, 5]', '  http: [0.2, 2]', 'probes:', probe('per-kind')),
      'c.yaml': yaml('probes:', probe('none')),
    });
    expect(loadConfig({ paths: [dir] }).probes.map((p) => p.buckets)).toEqual([[0.1, 0.5, 2], [0.2, 2], undefined]);
  });

  it('rejects bad buckets: naming file, line, field and problem', () => {
    const dir = tree({
      'p.yaml': yaml('buckets:', '  http: [1, 0.5]', '  htp: [1]', '  ssh: [0, -1]', '  build: []', 'probes:', probe('x')),
      'q.yaml': yaml('buckets: fast', 'probes:', probe('y')),
    });
    const lines = issueLines({ paths: [dir] }, dir);
    expect(lines).toContain('p.yaml:2: buckets.http: bucket bounds must increase, each larger than the one before');
    expect(lines).toContain('p.yaml:3: buckets.htp: unknown field');
    expect(lines).toContain('p.yaml:4: buckets.ssh[0]: a bucket bound is a number of seconds above 0');
    expect(lines).toContain('p.yaml:5: buckets.build: needs at least one bound (+Inf is always added)');
    expect(lines.find((l) => l.startsWith('q.yaml:1: buckets:'))).toMatch(/a list of bounds in seconds .* or one per kind .*kinds: http, /);
  });

  it('skips `lab: true` files unless asked, and loads them with `vars` when asked', () => {
    const dir = tree({
      'lab.yaml': yaml('lab: true', 'probes:', '  - name: lab-probe', '    kind: http', '    url: http://127.0.0.1:${FP_TEST_LAB_PORT}/'),
      'real.yaml': yaml('probes:', probe('real')),
    });
    const without = loadConfig({ paths: [dir] });
    expect(without.probes.map((p) => p.name)).toEqual(['real']);
    expect(without.skippedLabFiles).toEqual([path.join(dir, 'lab.yaml')]);
    const withLab = loadConfig({ paths: [dir], lab: true, vars: { FP_TEST_LAB_PORT: '18080' } });
    expect(withLab.probes.map((p) => p.name)).toEqual(['lab-probe', 'real']);
    expect((withLab.probes[0].config as { url: string }).url).toBe('http://127.0.0.1:18080/');
    expect(withLab.skippedLabFiles).toEqual([]);
  });

  it('leaves out `enabled: false` probes (still validated)', () => {
    const dir = tree({ 'p.yaml': yaml('probes:', probe('on'), probe('off', ['enabled: false'])) });
    expect(loadConfig({ paths: [dir] }).probes.map((p) => p.name)).toEqual(['on']);
    const bad = tree({ 'p.yaml': yaml('probes:', probe('off', ['enabled: false', 'url2: x'])) });
    expect(issueLines({ paths: [bad] }, bad)).toEqual(['p.yaml:6: probes[0].url2: unknown field; did you mean `url`?']);
  });

  it("loads a directory's *.yaml and *.yml files in name order, not recursively", () => {
    const dir = tree({
      'b.yml': yaml('probes:', probe('from-b')),
      'a.yaml': yaml('probes:', probe('from-a')),
      'c.yaml': yaml('probes:', probe('from-c')),
      'notes.txt': 'probes: [oops',
      'README.md': '# not config',
      'sub/d.yaml': yaml('probes:', probe('from-sub')),
    });
    const { probes, files } = loadConfig({ paths: [dir] });
    expect(files.map((f) => path.relative(dir, f))).toEqual(['a.yaml', 'b.yml', 'c.yaml']);
    expect(probes.map((p) => p.name)).toEqual(['from-a', 'from-b', 'from-c']);
  });

  it('accepts files and directories together, loading a file named twice once', () => {
    const dir = tree({ 'a.yaml': yaml('probes:', probe('a')), 'b.yaml': yaml('probes:', probe('b')) });
    const { files, probes } = loadConfig({ paths: [path.join(dir, 'b.yaml'), dir] });
    expect(files.map((f) => path.relative(dir, f))).toEqual(['b.yaml', 'a.yaml']);
    expect(probes.map((p) => p.name)).toEqual(['b', 'a']);
  });

  it('an empty file is valid and has no probes', () => {
    const dir = tree({ 'empty.yaml': '# nothing yet\n' });
    expect(loadConfig({ paths: [dir] }).probes).toEqual([]);
  });

  it('digest is stable for the same input and changes when a field changes', () => {
    const dir = tree({});
    const file = path.join(dir, 'p.yaml');
    const write = (extra: string[], defaults: string[] = []) => fs.writeFileSync(file, yaml(defaults, 'probes:', probe('x', extra), probe('y')));
    const digests = () => loadConfig({ paths: [file] }).probes.map((p) => p.digest);

    write([]);
    const [x, y] = digests();
    expect(x).toMatch(/^[0-9a-f]{16}$/);
    expect(x).not.toBe(y);
    expect(digests()).toEqual([x, y]);

    write(['# a comment changes nothing']);
    expect(digests()).toEqual([x, y]);
    write(['expect: {status: [200]}']);
    expect(digests()[0]).not.toBe(x);
    expect(digests()[1]).toBe(y);
    write(['interval: 30s']);
    expect(digests()[0]).not.toBe(x);
    write(['labels: {team: edge}']);
    expect(digests()[0]).not.toBe(x);
    // A changed default changes every probe it applies to.
    write([], ['defaults:', '  timeout: 2s']);
    const [x2, y2] = digests();
    expect(x2).not.toBe(x);
    expect(y2).not.toBe(y);
  });
});

describe('probes/lab.yaml', () => {
  const labFile = path.join(REPO, 'probes/lab.yaml');

  it('is skipped without the lab', () => {
    expect(loadConfig({ paths: [labFile] })).toEqual({ probes: [], files: [labFile], skippedLabFiles: [labFile], deferred: [] });
  });

  it('loads with the lab and its variables', async () => {
    vi.stubEnv('FLEETPROBE_LOCATION', undefined);
    // The running lab's own variables: each kind's lab probes need theirs (ports, keys, tokens).
    const lab = await startLab();
    try {
      const v = lab.vars;
      const { probes, skippedLabFiles } = loadConfig({ paths: [labFile], lab: true, vars: v });
      expect(skippedLabFiles).toEqual([]);
      expect(probes.length).toBe(parseYaml(fs.readFileSync(labFile, 'utf8')).probes.length);
      // Each kind's lab probes are checked by that kind's tests; these are the http ones.
      const http = probes.filter((p) => p.kind === 'http');
      expect(http.map((p) => [p.name, p.kind, p.intervalMs, p.timeoutMs, p.labels])).toEqual([
        ['lab-url', 'http', 15_000, 5_000, { location: 'lab' }],
        ['lab-url-device-2', 'http', 15_000, 5_000, { location: 'lab' }],
        ['lab-fleet-url', 'http', 15_000, 5_000, { location: 'lab' }],
      ]);
      expect(http[0].config).toMatchObject({
        url: `https://${v.LAB_DEVICE_UUID}.${v.LAB_URL_DOMAIN}:${v.LAB_URL_FRONT_PORT}/health`,
        resolve: '127.0.0.1',
        tls: { caFile: v.LAB_CA_FILE, insecureSkipVerify: false },
        expect: { status: [200], body: `ok ${v.LAB_DEVICE_UUID}` },
      });
      expect((http[0].config as { expect: { headers: Record<string, RegExp> } }).expect.headers['content-type']).toEqual(/^text\/plain/);
      expect(http[1].config).toMatchObject({
        url: `https://${v.LAB_DEVICE2_UUID}.${v.LAB_URL_DOMAIN}:${v.LAB_URL_FRONT_PORT}/`,
        expect: { status: ['2xx'], bodyRegex: /lab-device-2/ },
      });
      // Fleet targets: `{uuid}` stays in the URL for each picked device; the selector is defaulted.
      expect(http[2].config).toMatchObject({
        url: `https://{uuid}.${v.LAB_URL_DOMAIN}:${v.LAB_URL_FRONT_PORT}/health`,
        api: v.LAB_API_URL,
        fleet: { slug: v.LAB_FLEET_SLUG, deviceType: 'raspberrypi4-64', sample: 5, pick: 'random', onlineOnly: true, concurrency: 5, listTtl: 300_000 },
      });
    } finally {
      await lab.close();
    }
  });

  it('names every missing LAB_* variable when loaded with the lab but without them', () => {
    vi.stubEnv('FLEETPROBE_LOCATION', undefined);
    for (const v of ['LAB_DEVICE_UUID', 'LAB_DEVICE2_UUID', 'LAB_URL_DOMAIN', 'LAB_URL_FRONT_PORT', 'LAB_CA_FILE']) vi.stubEnv(v, undefined);
    const missing = (line: number, field: string, name: string) => `lab.yaml:${line}: ${field}: environment variable ${name} is not set (used as \${${name}})`;
    // Only the missing variables: the fields still holding "${...}" are not reported again as invalid.
    const lines = issueLines({ paths: [labFile], lab: true }, path.join(REPO, 'probes'));
    // Every problem is a missing variable; those of the first two (http) probes exactly:
    for (const l of lines) expect(l).toMatch(/: environment variable LAB_\w+ is not set \(used as \$\{LAB_\w+\}\)$/);
    expect(lines.filter((l) => /probes\[[01]\]\./.test(l))).toEqual([
      missing(13, 'probes[0].url', 'LAB_DEVICE_UUID'),
      missing(13, 'probes[0].url', 'LAB_URL_DOMAIN'),
      missing(13, 'probes[0].url', 'LAB_URL_FRONT_PORT'),
      missing(17, 'probes[0].tls.caFile', 'LAB_CA_FILE'),
      missing(20, 'probes[0].expect.body', 'LAB_DEVICE_UUID'),
      missing(26, 'probes[1].url', 'LAB_DEVICE2_UUID'),
      missing(26, 'probes[1].url', 'LAB_URL_DOMAIN'),
      missing(26, 'probes[1].url', 'LAB_URL_FRONT_PORT'),
      missing(29, 'probes[1].tls.caFile', 'LAB_CA_FILE'),
    ]);
  });
});
