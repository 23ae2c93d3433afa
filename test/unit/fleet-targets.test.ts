import fs from 'node:fs';
import type http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { renderTimeline } from '../../src/cli/render.js';
import { loadConfig } from '../../src/config/load.js';
import { ConfigError, formatConfigIssue } from '../../src/core/errors.js';
import type { ProbeSpec } from '../../src/core/kind.js';
import { resultToJson, type RunResult, type TargetResult } from '../../src/core/result.js';
import { runProbe } from '../../src/core/run.js';
import { KINDS } from '../../src/kinds/index.js';
import { judgeTargets } from '../../src/kinds/shared/fleet-fanout.js';
import { nextInTurn, sampleOf } from '../../src/kinds/shared/fleet-pick.js';
import { fleetFilter } from '../../src/kinds/shared/platform-api.js';
import { httpPeer, type Peer } from '../helpers/http-peers.js';

/**
 * The shared fleet-target layer (src/kinds/shared/fleet-*.ts) as a user meets it: the `fleet:`
 * field's problems in each of the three kinds, the picks, the API query, the verdict and its
 * message, the CLI's per-device lines, and discovery against an API that answers badly.
 */

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fleetprobe-fleet-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
beforeEach(() => {
  vi.stubEnv('FP_FLEET_TOKEN', 'fleet-test-token-value');
  vi.stubEnv('SSH_AUTH_SOCK', '/nonexistent/agent.sock');
});
afterEach(() => vi.unstubAllEnvs());

const TOKEN = 'token: { env: FP_FLEET_TOKEN }';
const API = 'api: "https://api.example.test"';

function load(kind: string, fields: string): { problems: string[]; specs: ProbeSpec[] } {
  const file = path.join(dir, 'probes.yaml');
  fs.writeFileSync(file, `probes:\n  - { name: p, kind: ${kind}, ${fields} }\n`);
  try {
    return { problems: [], specs: loadConfig({ paths: [file] }).probes };
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return { problems: err.issues.map((i) => formatConfigIssue(i).replace(`${dir}/`, '')), specs: [] };
  }
}

const BASE: Record<string, string> = {
  ssh: 'user: u, insecureAcceptAnyHostKey: true',
  tunnel: `${TOKEN}, expect: { banner: "^SSH" }`,
  http: 'url: "https://{uuid}.devices.example.test/health"',
};

describe('the fleet field, the same in ssh, tunnel and http', () => {
  it.each(Object.keys(BASE))('%s: a fleet probe loads, the short form is a slug or an id', (kind) => {
    const tok = kind === 'tunnel' ? '' : `, ${TOKEN}`;
    const bySlug = load(kind, `${BASE[kind]}${tok}, ${API}, fleet: myorg/probe-fleet`);
    expect(bySlug.problems).toEqual([]);
    expect(bySlug.specs[0].config).toMatchObject({ fleet: { slug: 'myorg/probe-fleet', sample: 1, pick: 'random', onlineOnly: true, concurrency: 5 } });
    expect(load(kind, `${BASE[kind]}${tok}, ${API}, fleet: 1234`).specs[0].config).toMatchObject({ fleet: { id: 1234 } });
  });

  it.each(Object.keys(BASE))('%s: without api and token, with device too, or with both slug and id: each problem named', (kind) => {
    const device = kind === 'http' ? '' : ', device: c0ffee1';
    // tunnel's own `token` is required by its schema (it opens the tunnels): only api is missing there.
    const withoutToken = kind === 'tunnel' ? BASE[kind] : BASE[kind].replace(TOKEN + ', ', '');
    const noApi = load(kind, `${withoutToken}${device}, fleet: myorg/f`).problems;
    if (kind !== 'http') expect(noApi).toContain("probes.yaml:2: probes[0].fleet: set either device or fleet (devices picked from the API's list), not both");
    expect(noApi).toContain(
      "probes.yaml:2: probes[0].api: is required with fleet: the platform API that lists the fleet's devices (here or in the platform block)",
    );
    if (kind !== 'tunnel')
      expect(noApi).toContain('probes.yaml:2: probes[0].token: is required with fleet: the API token that lists the devices (or fleet.token)');
    const tok = kind === 'tunnel' ? '' : `, ${TOKEN}`;
    const both = load(kind, `${BASE[kind]}${tok}, ${API}, fleet: { slug: a/b, id: 3 }`).problems;
    expect(both).toEqual(['probes.yaml:2: probes[0].fleet.id: set either slug or id, not both']);
  });

  it('rules of each kind: ssh proxy mode only, tunnel without target or hold, http names {uuid}', () => {
    expect(load('ssh', `${BASE.ssh}, ${TOKEN}, ${API}, mode: direct, host: h.example, fleet: a/b`).problems).toEqual([
      "probes.yaml:2: probes[0].fleet: is for proxy mode (the SSH proxy's `host <uuid>`)",
    ]);
    expect(load('tunnel', `${BASE.tunnel}, ${API}, target: "h.example:80", fleet: a/b`).problems).toContain(
      'probes.yaml:2: probes[0].target: a fleet probe reaches each device as <uuid>.<targetSuffix>:<port>, not a literal target',
    );
    expect(load('tunnel', `${TOKEN}, ${API}, http: { path: / }, hold: 1h, fleet: a/b`).problems.some((p) => p.includes('cannot hold one tunnel open'))).toBe(
      true,
    );
    expect(load('http', `url: "https://x.example.test/", ${TOKEN}, ${API}, fleet: a/b`).problems).toEqual([
      'probes.yaml:2: probes[0].url: names each device of the fleet by {uuid} (https://{uuid}.balena-devices.com/health)',
    ]);
  });

  it('a bad value inside the block is named by its path', () => {
    const p = load('http', `${BASE.http}, ${TOKEN}, ${API}, fleet: { slug: a/b, pick: sometimes, sample: 0 }`).problems;
    expect(p.join('\n')).toMatch(/probes\[0\]\.fleet\.pick: .*random.*round-robin/);
    expect(p.join('\n')).toMatch(/probes\[0\]\.fleet\.sample: /);
  });
});

describe('picking, the query, the verdict', () => {
  it('round-robin takes the next ones in turn, wrapping, never one twice; random takes distinct ones', () => {
    const items = ['a', 'b', 'c', 'd', 'e'];
    expect(nextInTurn(items, 2, 0)).toEqual({ picked: ['a', 'b'], cursor: 2 });
    expect(nextInTurn(items, 4, 3)).toEqual({ picked: ['d', 'e', 'a', 'b'], cursor: 2 });
    expect(nextInTurn(items, 9, 7)).toEqual({ picked: ['c', 'd', 'e', 'a', 'b'], cursor: 2 });
    expect(nextInTurn([], 3, 5)).toEqual({ picked: [], cursor: 0 });
    expect(new Set(sampleOf(items, 3)).size).toBe(3);
  });

  it('the $filter has the fleet, device type, tags and online terms; a quote in a tag cannot end its literal', () => {
    expect(fleetFilter({ fleet: 'org/f', onlineOnly: true })).toBe("belongs_to__application/any(a:a/slug eq 'org/f') and is_online eq true");
    expect(fleetFilter({ fleet: 7, deviceType: 'raspberrypi4-64', tags: { site: "o'hare" }, onlineOnly: false })).toBe(
      "belongs_to__application eq 7 and is_of__device_type/any(dt:dt/slug eq 'raspberrypi4-64') and device_tag/any(t:t/tag_key eq 'site' and t/value eq 'o''hare')",
    );
  });

  const t = (device: string, reason: TargetResult['reason'] = null, phase: string | null = null): TargetResult => ({
    device,
    success: reason === null,
    reason,
    phase,
    message: reason ? `${device} said ${reason}` : null,
    durationSeconds: 0.1,
  });

  it('passes at minSuccess; below it fails with the most common reason, naming five devices and counting the rest', () => {
    expect(() => judgeTargets([t('d1'), t('d2', 'device_offline', 'session')], 0.5, 'fleet f')).not.toThrow();
    const many = [t('ok1'), ...['a', 'b', 'c', 'd', 'e', 'f', 'g'].map((d, i) => t(d, i === 0 ? 'timeout' : 'device_offline', 'session'))];
    let err: Error & { reason?: string } = new Error();
    try {
      judgeTargets(many, 0.8, 'fleet f');
    } catch (e) {
      err = e as typeof err;
    }
    expect(err.reason).toBe('device_offline');
    expect(err.message).toBe(
      '7 of 8 devices of fleet f failed (1 passed, 13% < minSuccess 0.8): a timeout in session, b device_offline in session, c device_offline in session, ' +
        'd device_offline in session, e device_offline in session, and 2 more; b: b said device_offline',
    );
  });

  it('the CLI prints one line per device; JSON carries them as targets', () => {
    const r: RunResult = {
      name: 'fleet-ssh',
      kind: 'ssh',
      success: false,
      aborted: false,
      reason: 'device_offline',
      phase: 'targets',
      message: '1 of 2 devices of fleet f failed',
      durationSeconds: 0.5,
      phases: { discover: 0.1, targets: 0.4 },
      startedAt: 0,
      observations: { targets: 2, targets_failed: 1 },
      labels: {},
      targets: [t('c0ffee01'), t('c0ffee02', 'device_offline', 'session')],
    };
    const text = renderTimeline(r, KINDS.ssh.phases, false);
    expect(text).toContain('devices: 1 of 2 passed');
    expect(text).toMatch(/✓ c0ffee01 +100\.0ms/);
    expect(text).toMatch(/✗ c0ffee02 +100\.0ms {2}device_offline in session: c0ffee02 said device_offline/);
    // The kind's own phases belong to each device, not to the run: none is "not reached".
    expect(text).not.toContain('not reached');
    expect(resultToJson(r).targets).toEqual(r.targets);
    // A run of one device never shows the fleet phases.
    const one = renderTimeline({ ...r, targets: undefined, phase: 'session', phases: { resolve: 0.1, session: 0.1 } }, KINDS.ssh.phases, false);
    expect(one).not.toMatch(/[✓✗-] (discover|targets)\b/);
  });
});

describe('discovery against an API that answers badly', () => {
  let api: Peer;
  let answer: (req: http.IncomingMessage, res: http.ServerResponse) => void;
  const urls: string[] = [];
  beforeAll(async () => {
    api = await httpPeer((req, res) => {
      urls.push(decodeURIComponent(req.url ?? ''));
      answer(req, res);
    });
  });
  afterAll(() => api?.close());
  const send =
    (body: unknown, status = 200) =>
    (_req: http.IncomingMessage, res: http.ServerResponse) => {
      const text = typeof body === 'string' ? body : JSON.stringify(body);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    };
  const run = (fleet: string) => {
    const { specs, problems } = load('http', `url: "http://127.0.0.1:1/{uuid}", ${TOKEN}, api: "${api.url}", fleet: ${fleet}`);
    expect(problems).toEqual([]);
    return runProbe({ ...specs[0], timeoutMs: 3000 }, KINDS.http, { log: pino({ level: 'silent' }) });
  };

  it('pages with $top/$skip up to maxDevices, Bearer token; the token never in the result', async () => {
    urls.length = 0;
    answer = (req, res) => {
      const skip = Number(new URL(req.url!, 'http://x').searchParams.get('$skip'));
      send({ d: [0, 1].map((i) => ({ uuid: `c0ffee${skip + i}0000`, is_online: true, __metadata: {} })) })(req, res);
    };
    const r = await run('{ slug: o/f, sample: 3, pageSize: 2, maxDevices: 5 }');
    expect(urls.map((u) => /\$top=(\d+)&\$skip=(\d+)/.exec(u)?.slice(1).join('/'))).toEqual(['2/0', '2/2', '1/4']);
    expect(r.targets).toHaveLength(3);
    // Every device's URL is on a closed port: each fails on its own with connect.
    expect(r).toMatchObject({ success: false, reason: 'connect', phase: 'targets' });
    expect(JSON.stringify(resultToJson(r))).not.toContain('fleet-test-token-value');
  });

  it.each([
    ['is_online missing', 'protocol', 'is_online is undefined, not true or false', send({ d: [{ uuid: 'c0ffee1' }] })],
    ['a uuid that is not one', 'protocol', 'has no valid uuid', send({ d: [{ uuid: 'not a uuid', is_online: true }] })],
    ['no d array', 'protocol', 'has no "d" array', send({ value: [] })],
    ['not JSON', 'protocol', 'is not JSON', send('<html>oops</html>')],
    ['401', 'auth', 'the API refused our token (HTTP 401)', send({ message: 'Unauthorized' }, 401)],
    ['503', 'proxy', 'the API failed (HTTP 503)', send('upstream connect error', 503)],
    ['an empty list', 'assertion', 'the API lists no online device of fleet o/f', send({ d: [] })],
  ] as const)('%s: fails in discover with %s', async (_what, reason, text, handler) => {
    answer = handler;
    const r = await run('o/f');
    expect(r).toMatchObject({ success: false, reason, phase: 'discover' });
    expect(r.message).toContain(text);
  });

  it('an API that ignores the online filter does not put offline devices in the sample', async () => {
    answer = send({ d: [{ uuid: 'c0ffee1', is_online: false }] });
    const r = await run('o/f');
    expect(r).toMatchObject({ success: false, reason: 'assertion', phase: 'discover' });
  });
});
