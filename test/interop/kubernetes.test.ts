import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { LAB_URL_PROBE, ROOT, runCli, tempDir, writeLabConfig } from '../helpers/cli.js';
import { kubectl, miniKustomize, render as renderDir, type Obj } from '../helpers/kustomize.js';

const K8S = path.join(ROOT, 'deploy/kubernetes');
const OVERLAYS = ['eu-west', 'us-east'];
const render = (overlay: string) => renderDir(path.join(K8S, 'overlays', overlay));

/**
 * What every fleetprobe pod must be, the daemon's and the deploy gate's: restricted security, the
 * location from its own label, credentials from the Secret by reference, the probes read-only from
 * the generated ConfigMap, /tmp the only writable place. Returns the container.
 */
function expectHardenedPod(pod: Obj, cm: Obj): Obj {
  expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
  expect(pod.securityContext.runAsUser).toBeGreaterThan(0);
  expect(pod.automountServiceAccountToken).toBe(false);
  const [c] = pod.containers;
  expect(c.image).toBe('registry.example/fleetprobe:0.1.0');
  expect(c.securityContext).toMatchObject({
    runAsNonRoot: true,
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    capabilities: { drop: ['ALL'] },
    seccompProfile: { type: 'RuntimeDefault' },
  });
  expect(c.securityContext.capabilities.add).toBeUndefined();
  expect(c.env.find((e: Obj) => e.name === 'FLEETPROBE_LOCATION').valueFrom.fieldRef.fieldPath).toBe("metadata.labels['location']");
  expect(c.env.find((e: Obj) => e.name === 'BALENA_TOKEN').valueFrom.secretKeyRef).toEqual({ name: 'fleetprobe-credentials', key: 'token' });
  expect(JSON.stringify(c.env)).not.toMatch(/"value":"[^"]*(token|key)/i);
  const mounts = Object.fromEntries(c.volumeMounts.map((m: Obj) => [m.name, m]));
  expect(mounts.tmp.mountPath).toBe('/tmp');
  expect(mounts.probes.readOnly && mounts.credentials.readOnly).toBe(true);
  const vols = Object.fromEntries(pod.volumes.map((v: Obj) => [v.name, v]));
  expect(vols.tmp.emptyDir).toBeDefined();
  expect(vols.credentials.secret.secretName).toBe('fleetprobe-credentials');
  expect(vols.probes.configMap.name).toBe(cm.metadata.name);
  expect(cm.metadata.name).toMatch(/^fleetprobe-probes-[a-z0-9]+$/);
  return c;
}

/** What the kubelet does to `$(VAR)` in a container's args, from the container's own env values. */
function expandArgs(args: string[], env: Record<string, string>): string[] {
  return args.map((a) => a.replace(/\$\((\w+)\)/g, (whole, name: string) => env[name] ?? whole));
}

describe(`Kubernetes manifests (rendered with ${kubectl ? 'kubectl kustomize' : "the test's equivalent render: no kubectl with kustomize v4.1+"})`, () => {
  it.each(OVERLAYS)('%s: restricted pod security, lenient liveness, readiness, location label, secrets by reference', (location) => {
    const objs = render(location);
    const of = (kind: string) => objs.filter((o) => o.kind === kind);
    expect(objs.map((o) => o.kind).sort()).toEqual([
      'ConfigMap',
      'CronJob',
      'Deployment',
      'Namespace',
      'NetworkPolicy',
      'Service',
      'ServiceAccount',
      'ServiceMonitor',
    ]);
    for (const o of objs) expect(o.metadata.labels, o.kind).toMatchObject({ location, 'app.kubernetes.io/name': 'fleetprobe' });

    expect(of('Namespace')[0].metadata.labels['pod-security.kubernetes.io/enforce']).toBe('restricted');
    const [deploy] = of('Deployment');
    const pod = deploy.spec.template.spec;
    expect(deploy.spec.template.metadata.labels).toEqual({ 'app.kubernetes.io/name': 'fleetprobe', location });
    expect(deploy.spec.selector.matchLabels).toEqual({ 'app.kubernetes.io/name': 'fleetprobe' });
    expect(deploy.spec.strategy.rollingUpdate.maxUnavailable).toBe(0);
    const c = expectHardenedPod(pod, of('ConfigMap')[0]);
    expect(c.livenessProbe.httpGet.path).toBe('/healthz');
    // Lenient: minutes of failed checks before a restart, never a rotation during an outage.
    expect(c.livenessProbe.periodSeconds * c.livenessProbe.failureThreshold).toBeGreaterThanOrEqual(180);
    expect(c.readinessProbe.httpGet.path).toBe('/readyz');

    const [np] = of('NetworkPolicy');
    expect(np.spec.policyTypes).toEqual(['Ingress', 'Egress']);
    expect(np.spec.ingress).toHaveLength(1);
    expect(np.spec.ingress[0].from[0].podSelector.matchLabels).toEqual({ 'app.kubernetes.io/name': 'prometheus' });
    const egressPorts = np.spec.egress.flatMap((e: Obj) => e.ports.map((p: Obj) => `${p.protocol}/${p.port}`)).sort();
    expect(egressPorts).toEqual(['TCP/22', 'TCP/443', 'TCP/53', 'UDP/53']);
    expect(np.spec.egress[0].to[0].podSelector.matchLabels).toEqual({ 'k8s-app': 'kube-dns' });
    // It holds the daemon's pods and the gate's.
    expect(np.spec.podSelector).toEqual({ matchExpressions: [{ key: 'app.kubernetes.io/name', operator: 'In', values: ['fleetprobe', 'fleetprobe-gate'] }] });

    const [sm] = of('ServiceMonitor');
    expect(sm.spec.endpoints[0]).toMatchObject({ port: 'metrics', honorLabels: true });
    expect(sm.spec.podTargetLabels).toEqual(['location']);
    expect(of('Service')[0].metadata.name).toBe('fleetprobe');
  });

  it.each(OVERLAYS)("%s: the deploy gate Job template runs the gate on its location's probes, from the same image and ConfigMap", (location) => {
    const objs = render(location);
    const [cron] = objs.filter((o) => o.kind === 'CronJob');
    const [deploy] = objs.filter((o) => o.kind === 'Deployment');
    const [cm] = objs.filter((o) => o.kind === 'ConfigMap');
    expect(cron.metadata.name).toBe('fleetprobe-gate');
    // A template only: never runs on its own.
    expect(cron.spec.suspend).toBe(true);
    const job = cron.spec.jobTemplate.spec;
    // A failed gate is the verdict: no retry, no restart, and a deadline.
    expect(job.backoffLimit).toBe(0);
    expect(job.template.spec.restartPolicy).toBe('Never');
    expect(job.activeDeadlineSeconds).toBeGreaterThan(5 * 60 + 30);
    expect(job.template.metadata.labels).toEqual({ 'app.kubernetes.io/name': 'fleetprobe-gate', location });
    // Not selected by the daemon's Service or Deployment.
    const [svc] = objs.filter((o) => o.kind === 'Service');
    expect(job.template.metadata.labels['app.kubernetes.io/name']).not.toBe(svc.spec.selector['app.kubernetes.io/name']);

    const gate = expectHardenedPod(job.template.spec, cm);
    const daemon = deploy.spec.template.spec.containers[0];
    expect(gate.image).toBe(daemon.image);
    expect(job.template.spec.volumes).toEqual(deploy.spec.template.spec.volumes);
    expect(gate.volumeMounts).toEqual(daemon.volumeMounts);
    expect(job.template.spec.securityContext).toEqual(deploy.spec.template.spec.securityContext);
    expect(gate.securityContext).toEqual(daemon.securityContext);
    expect(gate.args[0]).toBe('gate');
    const args = expandArgs(gate.args, { FLEETPROBE_LOCATION: location });
    expect(args.slice(args.indexOf('-l'), args.indexOf('-l') + 2)).toEqual(['-l', `location=${location}`]);
    expect(args.slice(args.indexOf('--config'), args.indexOf('--config') + 2)).toEqual([
      '--config',
      daemon.volumeMounts.find((m: Obj) => m.name === 'probes').mountPath,
    ]);
  });

  it("the gate Job's arguments work with the real CLI: they select the probes of the pod's location and gate them", async () => {
    const [cron] = render('eu-west').filter((o) => o.kind === 'CronJob');
    const container = cron.spec.jobTemplate.spec.template.spec.containers[0];
    // The shipped arguments, with the lab's probes in place of the ConfigMap and a short period
    // appended (later values win); the probes are labelled with the pod's location.
    const dir = tempDir();
    writeLabConfig(dir, LAB_URL_PROBE('url-1'), 'lab.yaml', 'interval: 10s\n  timeout: 2s');
    fs.writeFileSync(
      path.join(dir, 'lab.yaml'),
      fs.readFileSync(path.join(dir, 'lab.yaml'), 'utf8').replace('location: test', 'location: "${FLEETPROBE_LOCATION}"'),
    );
    const args = expandArgs(container.args, { FLEETPROBE_LOCATION: 'eu-west' }).map((a, i, all) => (all[i - 1] === '--config' ? dir : a));
    const r = await runCli([...args, '--lab', '--for', '2s', '--every', '1s'], { env: { FLEETPROBE_LOCATION: 'eu-west' }, timeoutMs: 30_000 });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^gate passed: 1 probe for 2s \(3 rounds\)/m);
    // In another location's pod the same arguments select nothing: exit 2, naming the labels there are.
    const elsewhere = await runCli([...args, '--lab'], { env: { FLEETPROBE_LOCATION: 'us-east' } });
    expect(elsewhere.code).toBe(2);
    expect(elsewhere.stderr).toContain('no probe matches -l location=eu-west');
    expect(elsewhere.stderr).toContain('known labels: kind=http, location=us-east');
  });

  it.skipIf(!kubectl)("the test's equivalent render gives what kubectl kustomize gives", () => {
    for (const dir of [...OVERLAYS.map((o) => path.join(K8S, 'overlays', o)), path.join(K8S, 'rollouts')]) {
      const real = parseAllDocuments(spawnSync(kubectl!, ['kustomize', dir], { encoding: 'utf8' }).stdout).map((d) => d.toJSON() as Obj);
      // The ConfigMap's hash is kustomize's own; the rest must be equal.
      const same = (objs: Obj[]) =>
        (JSON.parse(JSON.stringify(objs).replace(/fleetprobe-probes-[a-z0-9]+/g, 'fleetprobe-probes-HASH')) as Obj[]).sort((a, b) =>
          `${a.kind}/${a.metadata.name}`.localeCompare(`${b.kind}/${b.metadata.name}`),
        );
      expect(same(miniKustomize(dir)), dir).toEqual(same(real));
    }
  });

  it('the shipped probe definitions pass fleetprobe check', async () => {
    const dir = tempDir();
    fs.copyFileSync(path.join(K8S, 'base/probes/fleet.yaml'), path.join(dir, 'fleet.yaml'));
    const r = await runCli(['check', '--config', dir], { env: { FLEETPROBE_LOCATION: 'eu-west' } });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });
});

describe('Dockerfile', () => {
  const text = fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
  it('runs non-root under an init, with production dependencies only and OCI labels', () => {
    const user = /^USER\s+(\S+)/m.exec(text)?.[1] ?? 'root';
    expect(user).not.toMatch(/^(root|0)(:|$)/);
    expect(text).toMatch(/^ENTRYPOINT \["\/usr\/bin\/tini", "--"/m);
    expect(text).toMatch(/npm prune --omit=dev|npm ci --omit=dev/);
    for (const l of ['title', 'description', 'version', 'revision', 'licenses']) expect(text).toContain(`org.opencontainers.image.${l}=`);
    // The last stage copies built output, not sources or dev tooling.
    const final = text.slice(text.lastIndexOf('\nFROM '));
    expect(final).not.toMatch(/COPY (src|test|tsconfig)/);
    expect(final).toMatch(/TMPDIR=\/tmp/);
  });
});
