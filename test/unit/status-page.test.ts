import { describe, expect, it } from 'vitest';
import type { ProbeSpec } from '../../src/core/kind.js';
import { Secret } from '../../src/core/redact.js';
import type { RunResult } from '../../src/core/result.js';
import { configView } from '../../src/daemon/config-view.js';
import { RunHistory } from '../../src/daemon/history.js';
import { html } from '../../src/daemon/pages/html.js';
import { StatusStore } from '../../src/daemon/status.js';
import { statusRoute } from '../../src/daemon/status-routes.js';
import { HTTP_PHASES, httpRun } from '../helpers/runs.js';

const HOSTILE = `<script>alert(1)</script>"'><img src=x onerror=alert(2)>&amp;`;
const TOKEN = 'tok-3c1f9a7be0d24c55b1e8';

function spec(name: string, over: Partial<ProbeSpec> = {}): ProbeSpec {
  return {
    name,
    kind: 'http',
    intervalMs: 15_000,
    timeoutMs: 5_000,
    labels: { location: 'lab' },
    source: { file: 'probes/x.yaml', line: 3 },
    config: { url: 'https://device.example/health', token: new Secret(TOKEN, 'env:BALENA_TOKEN'), ca: new Secret(TOKEN + 'x', 'file:/run/ca') },
    digest: name,
    ...over,
  };
}

let clock = 0;
const result = (name: string, over: Partial<RunResult> = {}) => httpRun(name, (clock += 15_000), over);

function store() {
  clock = Date.parse('2026-03-01T03:12:00Z');
  const s = new StatusStore(new RunHistory({ runs: 100, failures: 20 }, () => HTTP_PHASES));
  s.configure([spec('hostile', { description: HOSTILE, labels: { location: HOSTILE } }), spec('calm'), spec('other-kind', { kind: 'ssh', labels: {} })]);
  const failure = { success: false, reason: 'assertion' as const, phase: 'transfer', message: `body was ${HOSTILE}`, output: [HOSTILE, 'second line'] };
  s.update(result('hostile', failure));
  s.update(result('hostile'));
  s.update(result('hostile', failure));
  s.update(result('calm'));
  return s;
}

const get = (s: StatusStore, target: string) => statusRoute(s, target.split('?')[0], target)!;

describe('the status page', () => {
  it('escapes everything that came from targets and config, and sends a policy that allows no script', () => {
    const s = store();
    for (const target of ['/', '/probe/hostile', '/?failing=1']) {
      const reply = get(s, target);
      expect(reply.status, target).toBe(200);
      expect(reply.headers['content-security-policy']).toMatch(/default-src 'none'/);
      expect(reply.headers['content-security-policy']).not.toMatch(/script-src/);
      expect(reply.body, target).not.toMatch(/<script|<img|onerror=alert\(2\)>/i);
      expect(reply.body, target).toContain('&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&gt;&lt;img src=x onerror=alert(2)&gt;&amp;amp;');
    }
    // The failure's target output, escaped, on the probe's page.
    expect(get(s, '/probe/hostile').body).toMatch(/<pre>&lt;script&gt;alert\(1\)[^<]*\nsecond line<\/pre>/);
  });

  it('shows secrets as references only', () => {
    const s = store();
    const page = get(s, '/probe/calm').body;
    expect(page).not.toContain(TOKEN);
    expect(page).toContain('token:\n  env: BALENA_TOKEN');
    expect(page).toContain('ca:\n  file: /run/ca');
    expect(get(s, '/probes/calm').body).not.toContain(TOKEN);
    expect(
      configView({
        list: [new Secret(TOKEN, 'env:T')],
        re: /a.b/i,
        url: `https://u:${TOKEN}@h/`,
        query: 'https://h/p?token=t0k3n&flag&x=1#top',
        plain: 'a?b=c',
        buf: Buffer.alloc(3),
      }),
    ).toEqual({
      list: [{ env: 'T' }],
      re: '/a.b/i',
      url: 'https://[redacted]@h/',
      query: 'https://h/p?token=[redacted]&flag&x=[redacted]#top',
      plain: 'a?b=c',
      buf: '(3 bytes)',
    });
  });

  it('groups probes by kind and location, with one uptime cell per run, titled, and the last failure', () => {
    const page = get(store(), '/').body;
    expect([...page.matchAll(/<tr class="group">\s*<th colspan="6">([^<]+)</g)].map((m) => m[1])).toEqual([
      'http · &lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&gt;&lt;img src=x onerror=alert(2)&gt;&amp;amp;',
      'http · lab',
      'ssh · no location',
    ]);
    const row = /<tr id="probe-hostile">.*?<\/tr>/s.exec(page)![0].replace(/\s+/g, ' ');
    expect([...row.matchAll(/<span class="(c(?: f)?)" title="([^"]+)">/g)].map((m) => [m[1], m[2]])).toEqual([
      ['c f', '2026-03-01 03:12:15Z · assertion in transfer · 41.0ms'],
      ['c', '2026-03-01 03:12:30Z · pass · 41.0ms'],
      ['c f', '2026-03-01 03:12:45Z · assertion in transfer · 41.0ms'],
    ]);
    expect(row).toContain('<span class="fail">FAIL</span>');
    expect(row).toContain('<strong>assertion in transfer</strong>: body was &lt;script&gt;');
    expect(/<tr id="probe-other-kind">.*?<\/tr>/s.exec(page)![0]).toContain('PENDING');
  });

  it('filters failing probes, in the page and in /probes', () => {
    const s = store();
    expect((JSON.parse(get(s, '/probes?failing=1').body) as { name: string }[]).map((p) => p.name)).toEqual(['hostile']);
    expect((JSON.parse(get(s, '/probes').body) as unknown[]).length).toBe(3);
    const page = get(s, '/?failing=1').body;
    expect(page).toContain('id="probe-hostile"');
    expect(page).not.toContain('id="probe-calm"');
  });

  it('serves one probe with its history and failures; unknown or undecodable names are 404s', () => {
    const s = store();
    const detail = JSON.parse(get(s, '/probes/hostile').body);
    expect(detail.history.map((e: { success: boolean }) => e.success)).toEqual([false, true, false]);
    expect(detail.history[0]).toMatchObject({ reason: 'assertion', phase: 'transfer', message: `body was ${HOSTILE}` });
    expect(detail.failures).toHaveLength(2);
    expect(detail.failures[0].output).toEqual([HOSTILE, 'second line']);
    expect(detail.summary).toMatchObject({ runs: 3, failures: 2 });
    expect(detail.summary.p50Seconds).toBeCloseTo(0.041, 4);
    expect(detail.config.token).toEqual({ env: 'BALENA_TOKEN' });
    for (const target of ['/probes/nope', '/probes/%E0%A4%A', '/probe/nope', '/probe/%ZZ']) expect(get(s, target).status, target).toBe(404);
    expect(statusRoute(s, '/probes/a/b', '/probes/a/b')).toBeUndefined();
  });

  it('pages the overview by 100 probes, keeping the failing filter in its links', () => {
    const s = new StatusStore(new RunHistory({ runs: 100, failures: 20 }, () => HTTP_PHASES));
    const names = Array.from({ length: 150 }, (_, i) => `p-${String(i).padStart(3, '0')}`);
    s.configure(names.map((name) => spec(name)));
    for (const name of names) s.update(result(name, { success: false, reason: 'timeout', phase: 'tls', message: 'slow' }));
    const rows = (target: string) => [...get(s, target).body.matchAll(/<tr id="probe-([^"]+)">/g)].map((m) => m[1]);
    expect(rows('/')).toEqual(names.slice(0, 100));
    expect(rows('/?page=2')).toEqual(names.slice(100));
    expect(rows('/?page=99')).toEqual(names.slice(100));
    expect(get(s, '/?failing=1').body).toContain('<a href="/?failing=1&amp;page=2">next →</a>');
    expect(get(s, '/?failing=1&page=2').body).toMatch(/← previous<\/a>\s+page 2 of\s+2/);
  });

  it('html`` escapes interpolations and nests Html without escaping it twice', () => {
    expect(html`<p title="${'"x"'}">${html`<b>${'<i>'}</b>`}${['a', '&']}${null}${false}${0}</p>`.text).toBe(
      '<p title="&quot;x&quot;"><b>&lt;i&gt;</b>a&amp;0</p>',
    );
  });
});
