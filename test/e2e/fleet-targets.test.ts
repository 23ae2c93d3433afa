import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import type { ProbeSpec, ProbeState } from '../../src/core/kind.js';
import { resultToJson, type RunResult } from '../../src/core/result.js';
import { runProbe } from '../../src/core/run.js';
import { Secret } from '../../src/core/redact.js';
import { KINDS } from '../../src/kinds/index.js';
import { LAB_DEVICES, startLab, type Lab } from '../../src/lab/index.js';
import { Metrics } from '../../src/metrics/metrics.js';
import { StatusStore } from '../../src/daemon/status.js';
import { statusRoute } from '../../src/daemon/status-routes.js';
import { metricValue, ROOT, runCli } from '../helpers/cli.js';
import { expectPromtoolClean } from '../helpers/promtool.js';

/**
 * Fleet targets (issue 15) against the embedded lab: the lab-fleet-* probes of probes/lab.yaml,
 * through the CLI as the engineer on call runs them and through runProbe as the daemon does, with
 * devices of the lab fleet taken down, the API broken, and fleets of 50 and 500 devices.
 */

const log = pino({ level: 'silent' });
const LAB_FILE = path.join(ROOT, 'probes', 'lab.yaml');
const CANARY = LAB_DEVICES[0].uuid;

type Json = ReturnType<typeof resultToJson>;

async function runJson(name: string, ...faults: string[]): Promise<{ code: number | null; json: Json; stdout: string }> {
  const r = await runCli(['run', name, '--lab', '--json', ...(faults.length ? ['--lab-fault', faults.join(',')] : [])], { timeoutMs: 60_000 });
  return { code: r.code, json: JSON.parse(r.stdout) as Json, stdout: r.stdout };
}

describe('fleetprobe run lab-fleet-ssh --lab', () => {
  it('passes over its 10 devices, each shown with its result', async () => {
    const r = await runCli(['run', 'lab-fleet-ssh', '--lab'], { timeoutMs: 60_000 });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^PASS lab-fleet-ssh \(ssh\)/);
    expect(r.stdout).toContain('devices: 10 of 10 passed');
    expect(r.stdout).toContain(`✓ ${CANARY}`);
    expect(r.stdout).toMatch(/✓ discover/);
    // A fleet run's timeline is its two phases; the kind's own are in each device's line.
    expect(r.stdout).not.toMatch(/not reached/);
  });

  it('with 10% of the fleet down still passes (minSuccess 0.8), the failed device in its result', async () => {
    const { code, json } = await runJson('lab-fleet-ssh', 'fleet-some-down');
    expect(code).toBe(0);
    expect(json.success).toBe(true);
    expect(json.targets).toHaveLength(10);
    const failed = json.targets!.filter((t) => !t.success);
    expect(failed.length).toBeGreaterThanOrEqual(1);
    expect(failed.length).toBeLessThanOrEqual(2);
    for (const f of failed) expect(f).toMatchObject({ reason: 'device_offline', phase: 'session' });
    expect(json.observations).toMatchObject({ targets: 10, targets_failed: failed.length });
  });

  it('with 60% of the fleet down fails with device_offline, and the message names the failed devices', async () => {
    const { code, json } = await runJson('lab-fleet-ssh', 'fleet-most-down');
    expect(code).toBe(1);
    expect(json).toMatchObject({ success: false, reason: 'device_offline', phase: 'targets' });
    const failed = json.targets!.filter((t) => !t.success);
    expect(failed.length).toBeGreaterThan(2);
    expect(json.message).toMatch(new RegExp(`^${failed.length} of 10 devices of fleet lab/sample-fleet failed`));
    // The first five by id, each with its reason; the rest counted.
    for (const f of failed.slice(0, 5)) expect(json.message).toContain(`${f.device} device_offline in session`);
    if (failed.length > 5) expect(json.message).toContain(`and ${failed.length - 5} more`);
    // Devices the API marks offline are skipped, never probed.
    expect(json.targets!.map((t) => t.device)).not.toContain('c0ffee00000000000000000000000003');
  });

  it('a proxy fault (proxy-agent-empty) fails it with device_auth', async () => {
    const { code, json } = await runJson('lab-fleet-ssh', 'proxy-agent-empty');
    expect(code).toBe(1);
    expect(json).toMatchObject({ success: false, reason: 'device_auth', phase: 'targets' });
    expect(json.targets!.every((t) => t.reason === 'device_auth')).toBe(true);
  });

  it('lab-fleet-tunnel and lab-fleet-url pass; with most of the fleet down their failed devices say device_offline', async () => {
    for (const name of ['lab-fleet-tunnel', 'lab-fleet-url']) {
      const ok = await runJson(name);
      expect(ok.code, ok.stdout).toBe(0);
      expect(ok.json.targets!.length).toBeGreaterThan(0);
    }
    // Random picks: with 60% down (2 in 3 of them unreachable while online), a sample of 10 at 0.8 fails.
    const down = await runJson('lab-fleet-tunnel', 'fleet-most-down');
    if (down.code === 1) expect(down.json).toMatchObject({ reason: 'device_offline', phase: 'targets' });
    for (const t of down.json.targets!.filter((x) => !x.success)) expect(t).toMatchObject({ reason: 'device_offline', phase: 'proxy_connect' });
  });
});

describe('fleet targets in-process against the lab', () => {
  let lab: Lab;
  let specs: Map<string, ProbeSpec>;
  beforeAll(async () => {
    lab = await startLab({ log });
    specs = new Map(loadConfig({ paths: [LAB_FILE], lab: true, vars: lab.vars }).probes.map((p) => [p.name, p]));
  });
  afterAll(() => lab?.close());

  const withFleet = (name: string, fleet: Record<string, unknown>, timeoutMs?: number): ProbeSpec => {
    const s = specs.get(name)!;
    const config = s.config as { fleet: Record<string, unknown> };
    return { ...s, timeoutMs: timeoutMs ?? s.timeoutMs, config: { ...config, fleet: { ...config.fleet, ...fleet } } };
  };
  const run = (s: ProbeSpec, state?: ProbeState): Promise<RunResult> => runProbe(s, KINDS[s.kind], { log, state });

  it('the canary going down alone does not fail the fleet probe, whether the API notices or not', async () => {
    try {
      // The API still says online: the canary is probed, fails, and the run passes on the others.
      lab.faults.set('status-stale', true);
      lab.deviceStates.setOnline(CANARY, false);
      const unnoticed = await run(specs.get('lab-fleet-ssh')!);
      expect(unnoticed.success, JSON.stringify(unnoticed)).toBe(true);
      expect(unnoticed.targets!.find((t) => t.device === CANARY)).toMatchObject({ success: false, reason: 'device_offline' });
      // The daemon's /probes and /probes/NAME show each device's result of the last run.
      const status = new StatusStore();
      status.configure([specs.get('lab-fleet-ssh')!]);
      status.update(unnoticed);
      for (const route of ['/probes', '/probes/lab-fleet-ssh']) {
        const body = JSON.parse(statusRoute(status, route, route)!.body);
        const served = (Array.isArray(body) ? body[0] : body).lastRun.targets as { device: string; success: boolean; reason: string | null }[];
        expect(served, route).toHaveLength(10);
        expect(
          served.find((t) => t.device === CANARY),
          route,
        ).toMatchObject({ success: false, reason: 'device_offline' });
      }
      // The API says offline: the canary is skipped (onlineOnly).
      lab.faults.set('status-stale', false);
      const noticed = await run(specs.get('lab-fleet-ssh')!);
      expect(noticed.success).toBe(true);
      expect(noticed.targets!.map((t) => t.device)).not.toContain(CANARY);
      expect(noticed.targets).toHaveLength(10);
    } finally {
      lab.faults.set('status-stale', false);
      lab.deviceStates.setOnline(CANARY, true);
    }
  });

  it('API outage: the cached list keeps the probe running, and the list age grows', async () => {
    const state: ProbeState = {};
    // listTtl 0: every run refreshes the list, so every run meets the outage.
    const s = withFleet('lab-fleet-tunnel', { listTtl: 0, apiTimeout: 1000 });
    const metrics = new Metrics('test', KINDS);
    metrics.configure([s]);
    const first = await run(s, state);
    expect(first.success, JSON.stringify(first)).toBe(true);
    expect(first.observations.targets_list_age_seconds).toBeLessThan(1);
    lab.faults.set('api-errors', true);
    try {
      const ages: number[] = [];
      // The API answers in turn 503, malformed JSON and a 30 s wait: each run goes on with the cached list.
      for (let i = 0; i < 3; i++) {
        await new Promise((r) => setTimeout(r, 300));
        const r = await run(s, state);
        expect(r.success, JSON.stringify(r)).toBe(true);
        expect(r.targets).toHaveLength(10);
        ages.push(r.observations.targets_list_age_seconds as number);
        metrics.record(r);
      }
      expect(ages[1]).toBeGreaterThan(ages[0]);
      expect(ages[2]).toBeGreaterThan(ages[1]);
      const { body } = await metrics.render();
      expect(metricValue(body, 'probe_targets_list_age_seconds', { probe: 'lab-fleet-tunnel' })).toBe(ages[2]);
      // A fresh probe (no list yet) fails in discover with the API's reason.
      const none = await run(s, {});
      expect(none).toMatchObject({ success: false, phase: 'discover' });
      expect(['proxy', 'protocol', 'timeout']).toContain(none.reason);
    } finally {
      lab.faults.set('api-errors', false);
    }
    // The API back: the list is fresh again.
    const back = await run(s, state);
    expect(back.observations.targets_list_age_seconds).toBeLessThan(1);
  });

  it('with no list at all the run fails in discover as auth, proxy or connect; the token never shows', async () => {
    const ssh = specs.get('lab-fleet-ssh')!;
    const cfg = ssh.config as Record<string, unknown>;
    const bad = await run({ ...ssh, config: { ...cfg, fleet: { ...(cfg.fleet as object), token: new Secret('not-the-lab-token', 'test') } } });
    expect(bad).toMatchObject({ success: false, reason: 'auth', phase: 'discover' });
    expect(bad.message).toContain('the API refused our token (HTTP 401)');
    const closed = await run({ ...ssh, config: { ...cfg, api: 'https://127.0.0.1:1/' } });
    expect(closed).toMatchObject({ success: false, reason: 'connect', phase: 'discover' });
    for (const r of [bad, closed]) expect(JSON.stringify(resultToJson(r))).not.toContain(lab.vars.LAB_BUILDER_TOKEN);
  });

  it('probes at most `concurrency` devices at once, within the one run timeout', async () => {
    lab.tunnelProxy.resetPeak();
    const r = await run(withFleet('lab-fleet-tunnel', { sample: 12, concurrency: 3 }));
    expect(r.success, JSON.stringify(r)).toBe(true);
    expect(r.targets).toHaveLength(12);
    expect(lab.tunnelProxy.peakConnections()).toBeLessThanOrEqual(3 + 1);
    // Every device stalls 30 s: the run still ends at its own timeout, not at one per device.
    lab.faults.set('tunnel-slow-connect', true);
    try {
      const t0 = performance.now();
      const slow = await run(withFleet('lab-fleet-tunnel', { sample: 10, concurrency: 2 }, 1500));
      expect(slow).toMatchObject({ success: false, reason: 'timeout', phase: 'targets' });
      expect(performance.now() - t0).toBeLessThan(4000);
    } finally {
      lab.faults.set('tunnel-slow-connect', false);
    }
  });

  it('the control server sets any share of the fleet down: some offline per the API, the rest unreachable while it says online', async () => {
    const put = (percent: number) => fetch(`${lab.controlUrl}/fleet/down/${percent}`, { method: 'PUT' });
    const before = lab.deviceStates.all().filter((d) => !d.online).length;
    const res = await put(20);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('lab fleet: 20% of the devices down\n');
    const down = lab.deviceStates.all().filter((d) => !d.online);
    // 20% of 50 spread over the fleet is devices 3, 8, ... 48; 48 was offline already.
    expect(down.length - before).toBe(9);
    const apiOnline = down.filter((d) => d.api.online).length;
    expect(apiOnline).toBeGreaterThan(0);
    expect(apiOnline).toBeLessThan(down.length - before);
    // The fleet probe sees the unreachable ones as device_offline, never the ones the API marks offline.
    const r = await run(withFleet('lab-fleet-tunnel', { sample: 100, minSuccess: 0 }));
    const failed = r.targets!.filter((t) => !t.success);
    expect(failed.map((t) => t.reason)).toEqual(failed.map(() => 'device_offline'));
    expect(failed).toHaveLength(apiOnline);
    expect((await put(150)).status).toBe(400);
    expect((await put(0)).status).toBe(200);
    expect(lab.deviceStates.all().filter((d) => !d.online)).toHaveLength(before);
  });

  it('tags and device type select the devices the API lists', async () => {
    const canaries = await run(withFleet('lab-fleet-tunnel', { tags: { role: 'canary' }, sample: 10, minSuccess: 1 }));
    expect(canaries.success, JSON.stringify(canaries)).toBe(true);
    expect(canaries.targets!.map((t) => t.device).sort()).toEqual(LAB_DEVICES.map((d) => d.uuid));
    const nucs = await run(withFleet('lab-fleet-url', { deviceType: 'intel-nuc', sample: 100 }));
    // Every fifth device (5, 10, ... 45; 50 starts offline).
    expect(nucs.targets).toHaveLength(9);
  });
});

describe('series per probe do not depend on the fleet size', () => {
  async function seriesOf(fleetSize: number): Promise<Record<string, number>> {
    const lab = await startLab({ log, fleetSize });
    try {
      const probes = loadConfig({ paths: [LAB_FILE], lab: true, vars: lab.vars }).probes.filter((p) => p.name.startsWith('lab-fleet-'));
      const big = probes.map((p) => {
        const c = p.config as Record<string, unknown>;
        // The whole fleet's list, its largest sample.
        return typeof c.fleet === 'object' ? { ...p, timeoutMs: 20_000, config: { ...c, fleet: { ...(c.fleet as object), sample: 100, concurrency: 8 } } } : p;
      });
      const metrics = new Metrics('test', KINDS);
      metrics.configure(big);
      for (const p of big) {
        const r = await runProbe(p, KINDS[p.kind], { log });
        expect(r.success, `${p.name}: ${r.message}`).toBe(true);
        metrics.record(r);
      }
      const { body } = await metrics.render();
      expectPromtoolClean(body);
      const count: Record<string, number> = {};
      for (const p of big) count[p.name] = body.split('\n').filter((l) => !l.startsWith('#') && l.includes(`probe="${p.name}"`)).length;
      expect(metricValue(body, 'probe_targets', { probe: 'lab-fleet-tunnel' })).toBe(Math.min(100, fleetSize - 3));
      expect(body).not.toMatch(/device="/);
      return count;
    } finally {
      await lab.close();
    }
  }

  it('50 and 500 lab devices give the same series count for every fleet probe', async () => {
    const small = await seriesOf(50);
    const large = await seriesOf(500);
    expect(Object.keys(small).sort()).toEqual(['lab-fleet-sample', 'lab-fleet-ssh', 'lab-fleet-tunnel', 'lab-fleet-url']);
    expect(large).toEqual(small);
  }, 120_000);
});
