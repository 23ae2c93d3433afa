import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { ROOT, runCli, tempDir } from '../helpers/cli.js';

const K8S = path.join(ROOT, 'deploy/kubernetes');
const OVERLAYS = ['eu-west', 'us-east'];
type Obj = Record<string, any>;

/** kubectl with a kustomize that knows `labels` (v4.1+, kubectl 1.22+); Debian's kubectl 1.20 does not. */
function modernKubectl(): string | undefined {
  const r = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' });
  const m = /Kustomize Version: v(\d+)\.(\d+)/.exec(r.stdout ?? '');
  return m && (Number(m[1]) > 4 || (Number(m[1]) === 4 && Number(m[2]) >= 1)) ? 'kubectl' : undefined;
}

/**
 * A render equivalent to `kubectl kustomize` for the fields these kustomizations use, for machines
 * without a recent kubectl. It refuses any other field, so it cannot silently drift from kustomize.
 */
function miniKustomize(dir: string): Obj[] {
  const k = parse(fs.readFileSync(path.join(dir, 'kustomization.yaml'), 'utf8')) as Obj;
  for (const key of Object.keys(k))
    if (!['resources', 'namespace', 'labels', 'configMapGenerator', 'images'].includes(key))
      throw new Error(`miniKustomize: unsupported field ${key} in ${dir}`);
  const objs: Obj[] = [];
  for (const r of k.resources ?? []) {
    const p = path.join(dir, r);
    if (fs.statSync(p).isDirectory()) objs.push(...miniKustomize(p));
    else objs.push(...parseAllDocuments(fs.readFileSync(p, 'utf8')).map((d) => d.toJSON()));
  }
  const renames: Record<string, string> = {};
  for (const g of k.configMapGenerator ?? []) {
    const data: Record<string, string> = {};
    for (const f of g.files) data[path.basename(f)] = fs.readFileSync(path.join(dir, f), 'utf8');
    const name = `${g.name}-${createHash('sha256').update(JSON.stringify(data)).digest('hex').slice(0, 10)}`;
    renames[g.name] = name;
    objs.push({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name }, data });
  }
  for (const o of objs) {
    if (k.namespace && o.kind !== 'Namespace') o.metadata.namespace = k.namespace;
    for (const l of k.labels ?? []) {
      o.metadata.labels = { ...o.metadata.labels, ...l.pairs };
      if (l.includeTemplates && o.spec?.template) o.spec.template.metadata.labels = { ...o.spec.template.metadata.labels, ...l.pairs };
    }
    for (const v of o.spec?.template?.spec?.volumes ?? []) if (v.configMap && renames[v.configMap.name]) v.configMap.name = renames[v.configMap.name];
    for (const c of o.spec?.template?.spec?.containers ?? []) {
      for (const img of k.images ?? []) if (c.image.split(':')[0] === img.name) c.image = `${img.newName ?? img.name}:${img.newTag}`;
    }
  }
  return objs;
}

const kubectl = modernKubectl();
function render(overlay: string): Obj[] {
  const dir = path.join(K8S, 'overlays', overlay);
  if (!kubectl) return miniKustomize(dir);
  const r = spawnSync(kubectl, ['kustomize', dir], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return parseAllDocuments(r.stdout).map((d) => d.toJSON());
}

describe(`Kubernetes manifests (rendered with ${kubectl ? 'kubectl kustomize' : "the test's equivalent render: no kubectl with kustomize v4.1+"})`, () => {
  it.each(OVERLAYS)('%s: restricted pod security, lenient liveness, readiness, location label, secrets by reference', (location) => {
    const objs = render(location);
    const of = (kind: string) => objs.filter((o) => o.kind === kind);
    expect(objs.map((o) => o.kind).sort()).toEqual(['ConfigMap', 'Deployment', 'Namespace', 'NetworkPolicy', 'Service', 'ServiceAccount', 'ServiceMonitor']);
    for (const o of objs) expect(o.metadata.labels, o.kind).toMatchObject({ location, 'app.kubernetes.io/name': 'fleetprobe' });

    expect(of('Namespace')[0].metadata.labels['pod-security.kubernetes.io/enforce']).toBe('restricted');
    const [deploy] = of('Deployment');
    const pod = deploy.spec.template.spec;
    expect(deploy.spec.template.metadata.labels).toEqual({ 'app.kubernetes.io/name': 'fleetprobe', location });
    expect(deploy.spec.selector.matchLabels).toEqual({ 'app.kubernetes.io/name': 'fleetprobe' });
    expect(deploy.spec.strategy.rollingUpdate.maxUnavailable).toBe(0);
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
    expect(c.livenessProbe.httpGet.path).toBe('/healthz');
    // Lenient: minutes of failed checks before a restart, never a rotation during an outage.
    expect(c.livenessProbe.periodSeconds * c.livenessProbe.failureThreshold).toBeGreaterThanOrEqual(180);
    expect(c.readinessProbe.httpGet.path).toBe('/readyz');
    expect(c.env.find((e: Obj) => e.name === 'FLEETPROBE_LOCATION').valueFrom.fieldRef.fieldPath).toBe("metadata.labels['location']");
    expect(c.env.find((e: Obj) => e.name === 'BALENA_TOKEN').valueFrom.secretKeyRef).toEqual({ name: 'fleetprobe-credentials', key: 'token' });
    expect(JSON.stringify(c.env)).not.toMatch(/"value":"[^"]*(token|key)/i);
    const mounts = Object.fromEntries(c.volumeMounts.map((m: Obj) => [m.name, m]));
    expect(mounts.tmp.mountPath).toBe('/tmp');
    expect(mounts.probes.readOnly && mounts.credentials.readOnly).toBe(true);
    const vols = Object.fromEntries(pod.volumes.map((v: Obj) => [v.name, v]));
    expect(vols.tmp.emptyDir).toBeDefined();
    expect(vols.credentials.secret.secretName).toBe('fleetprobe-credentials');
    const [cm] = of('ConfigMap');
    expect(vols.probes.configMap.name).toBe(cm.metadata.name);
    expect(cm.metadata.name).toMatch(/^fleetprobe-probes-[a-z0-9]+$/);

    const [np] = of('NetworkPolicy');
    expect(np.spec.policyTypes).toEqual(['Ingress', 'Egress']);
    expect(np.spec.ingress).toHaveLength(1);
    expect(np.spec.ingress[0].from[0].podSelector.matchLabels).toEqual({ 'app.kubernetes.io/name': 'prometheus' });
    const egressPorts = np.spec.egress.flatMap((e: Obj) => e.ports.map((p: Obj) => `${p.protocol}/${p.port}`)).sort();
    expect(egressPorts).toEqual(['TCP/22', 'TCP/443', 'TCP/53', 'UDP/53']);
    expect(np.spec.egress[0].to[0].podSelector.matchLabels).toEqual({ 'k8s-app': 'kube-dns' });

    const [sm] = of('ServiceMonitor');
    expect(sm.spec.endpoints[0]).toMatchObject({ port: 'metrics', honorLabels: true });
    expect(sm.spec.podTargetLabels).toEqual(['location']);
    expect(of('Service')[0].metadata.name).toBe('fleetprobe');
  });

  it('the shipped probe definitions pass fleetprobe check', async () => {
    const dir = tempDir();
    fs.copyFileSync(path.join(K8S, 'base/probes/fleet.yaml'), path.join(dir, 'fleet.yaml'));
    const r = await runCli(['check', '--config', dir], { env: { FLEETPROBE_LOCATION: 'eu-west' } });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });
});

/**
 * The sharded variant needs kubectl's own kustomize (`replacements` across two levels; no
 * equivalent render here). Under CI=true a missing kubectl is a failure, not a skip.
 */
const shardedKubectl = kubectl ?? (process.env.CI === 'true' ? 'missing' : undefined);
describe.skipIf(!shardedKubectl)('Kubernetes sharded variant (deploy/kubernetes/sharded)', () => {
  it('renders a StatefulSet of N shards taking i from their ordinal, a headless Service scraped per pod, and a PodDisruptionBudget', () => {
    expect(kubectl, 'kubectl with kustomize v4.1+ is required under CI=true').toBeDefined();
    const r = spawnSync(kubectl!, ['kustomize', path.join(K8S, 'sharded')], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const objs: Obj[] = parseAllDocuments(r.stdout).map((d) => d.toJSON());
    const of = (kind: string) => objs.filter((o) => o.kind === kind);
    expect(objs.map((o) => o.kind).sort()).toEqual([
      'ConfigMap',
      'Namespace',
      'NetworkPolicy',
      'PodDisruptionBudget',
      'Service',
      'ServiceAccount',
      'ServiceMonitor',
      'StatefulSet',
    ]);
    for (const o of objs) expect(o.metadata.labels, o.kind).toMatchObject({ location: 'eu-west', 'app.kubernetes.io/name': 'fleetprobe' });
    for (const o of objs) if (o.kind !== 'Namespace') expect(o.metadata.namespace, o.kind).toBe('fleetprobe');
    const [sts] = of('StatefulSet');
    const [svc] = of('Service');
    const [c] = sts.spec.template.spec.containers;
    expect(c.env.find((e: Obj) => e.name === 'FLEETPROBE_SHARD').value).toBe(`auto/${sts.spec.replicas}`);
    expect(sts.spec.replicas).toBeGreaterThan(1);
    expect(sts.spec.serviceName).toBe(svc.metadata.name);
    expect(svc.spec.clusterIP).toBe('None');
    expect(sts.spec.selector.matchLabels).toEqual(svc.spec.selector);
    // The same pod as the base's Deployment: hardened, the probes' ConfigMap, the location label.
    const base = render('eu-west').find((o) => o.kind === 'Deployment')!;
    expect(sts.spec.template.spec.securityContext).toEqual(base.spec.template.spec.securityContext);
    expect(c.securityContext).toEqual(base.spec.template.spec.containers[0].securityContext);
    expect(c.image).toBe('registry.example/fleetprobe:0.1.0');
    expect(sts.spec.template.metadata.labels).toEqual({ 'app.kubernetes.io/name': 'fleetprobe', location: 'eu-west' });
    expect(sts.spec.template.spec.volumes.find((v: Obj) => v.name === 'probes').configMap.name).toBe(of('ConfigMap')[0].metadata.name);
    expect(of('ConfigMap')[0].metadata.name).toMatch(/^fleetprobe-probes-[a-z0-9]+$/);
    const [pdb] = of('PodDisruptionBudget');
    expect(pdb.spec.maxUnavailable).toBe(1);
    expect(pdb.spec.selector.matchLabels).toEqual(sts.spec.selector.matchLabels);
    // The base's ServiceMonitor selects the headless Service: every shard is a target of its own.
    expect(of('ServiceMonitor')[0].spec.selector.matchLabels).toEqual({ 'app.kubernetes.io/name': 'fleetprobe' });
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
