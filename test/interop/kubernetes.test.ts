import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import ssh2 from 'ssh2';
import { parse, parseAllDocuments } from 'yaml';
import { interpolate } from '../../src/config/interpolate.js';
import { KINDS } from '../../src/kinds/index.js';
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
  expect(c.envFrom).toEqual([{ configMapRef: { name: expect.stringMatching(/^fleetprobe-settings-[a-z0-9]+$/) } }]);
  expectHeapCapUnderLimit(c);
  return c;
}

/**
 * V8's heap cap (NODE_OPTIONS) below the container's memory limit, with room for what is outside
 * the heap (buffers, the exposition, code): V8 collects before the kernel kills the pod.
 */
function expectHeapCapUnderLimit(c: Obj): void {
  const options = c.env.find((e: Obj) => e.name === 'NODE_OPTIONS')?.value ?? '';
  const cap = /--max-old-space-size=(\d+)/.exec(options);
  expect(cap, `NODE_OPTIONS "${options}" sets --max-old-space-size`).not.toBeNull();
  const limit = /^(\d+)(Mi|Gi)$/.exec(c.resources.limits.memory)!;
  const limitMb = Number(limit[1]) * (limit[2] === 'Gi' ? 1024 : 1);
  expect(Number(cap![1]), `heap cap vs memory limit ${c.resources.limits.memory}`).toBeLessThanOrEqual(limitMb * 0.8);
  expect(Number(cap![1])).toBeGreaterThanOrEqual(limitMb * 0.5);
}

/** The generated ConfigMap of the probe files (the other one holds the settings). */
function probesConfigMap(objs: Obj[]): Obj {
  return objs.find((o) => o.kind === 'ConfigMap' && o.metadata.name.startsWith('fleetprobe-probes-'))!;
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
    const c = expectHardenedPod(pod, probesConfigMap(objs));
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
    const cm = probesConfigMap(objs);
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
        (JSON.parse(JSON.stringify(objs).replace(/fleetprobe-(probes|settings)-[a-z0-9]+/g, 'fleetprobe-$1-HASH')) as Obj[]).sort((a, b) =>
          `${a.kind}/${a.metadata.name}`.localeCompare(`${b.kind}/${b.metadata.name}`),
        );
      expect(same(miniKustomize(dir)), dir).toEqual(same(real));
    }
  });

  it.each(OVERLAYS)(
    "%s: the shipped probes use every credential the pod mounts, at the pod's paths, and cover every kind; check passes once the settings are filled in, and names each one until then",
    async (location) => {
      const pod = podView(render(location));
      const refs = references(pod.probeFiles, pod.env);
      for (const [file, key] of Object.entries(pod.secretFiles)) expect(refs.files, `Secret key ${key}, mounted at ${file}`).toContain(file);
      for (const [name, key] of Object.entries(pod.secretEnv)) expect(refs.envs, `Secret key ${key}, as $${name}`).toContain(name);
      expect(Object.values(pod.secretFiles).concat(Object.values(pod.secretEnv)).sort()).toEqual(['known-hosts', 'ssh-key', 'token']);

      // The pod's view on disk: its probe files, and its Secret's files (FLEETPROBE_SECRETS_DIR
      // stands in for the mount point, which a test cannot create).
      const probesDir = tempDir();
      for (const [name, text] of Object.entries(pod.probeFiles)) fs.writeFileSync(path.join(probesDir, name), text);
      const secretsDir = tempDir();
      const key = ssh2.utils.generateKeyPairSync('ed25519');
      const contents: Record<string, string> = { 'ssh-key': key.private, 'known-hosts': `ssh.balena-devices.com ${key.public}\n`, token: 'not-a-real-token' };
      for (const [file, secretKey] of Object.entries(pod.secretFiles)) fs.writeFileSync(path.join(secretsDir, path.basename(file)), contents[secretKey]);
      const env = {
        ...pod.env,
        ...Object.fromEntries(Object.entries(pod.secretEnv).map(([name, secretKey]) => [name, contents[secretKey]])),
        FLEETPROBE_SECRETS_DIR: secretsDir,
      };

      // As shipped, the installation's own settings are empty: check names each one, and nothing else.
      const required = pod.settings.filter((k) => pod.env[k] === '').sort();
      expect(required).toEqual(Object.keys(INSTALLATION).sort());
      const unset = await runCli(['check', '--config', probesDir], { env });
      expect(unset.code).toBe(2);
      const named = [...new Set([...unset.stderr.matchAll(/environment variable (\w+) is not set/g)].map((m) => m[1]))].sort();
      expect(named).toEqual(required);
      expect(unset.stderr.split('\n').filter((l) => l.startsWith('  ') && !/is not set/.test(l))).toEqual([]);

      // With them (documented in docs/fleet.md), every probe loads, and every kind is there.
      const fleetDoc = fs.readFileSync(path.join(ROOT, 'docs/fleet.md'), 'utf8');
      for (const k of pod.settings) expect(fleetDoc, `docs/fleet.md documents ${k}`).toContain(`\`${k}\``);
      const filled = { ...env, ...INSTALLATION };
      const ok = await runCli(['check', '--config', probesDir], { env: filled });
      expect(ok.stderr).toBe('');
      expect(ok.stdout).toMatch(/^ok: \d+ probes in 1 file\(s\)\n$/);
      expect(ok.code).toBe(0);
      const list = await runCli(['list', '--json', '--config', probesDir], { env: filled });
      const probes = JSON.parse(list.stdout) as Obj[];
      expect(probes.filter((p) => p.loaded === false)).toEqual([]);
      expect([...new Set(probes.map((p) => p.kind))].sort()).toEqual(Object.keys(KINDS).sort());
      expect(new Set(probes.map((p) => p.labels.location))).toEqual(new Set([location]));
    },
  );
});

/** Values of an example installation, for the settings base/settings.env leaves empty. */
const INSTALLATION = {
  FLEETPROBE_USER: 'probe-bot',
  FLEETPROBE_CANARY_DEVICE: '7f3c0ffee0123456789abcdef0123456',
  FLEETPROBE_BUILD_FLEET: 'myorg/probe-fleet',
  FLEETPROBE_SAMPLE_FLEET: 'myorg/production',
};

/**
 * What the rendered Deployment's container sees: its environment (literals, the label given by the
 * downward API, the ConfigMaps it takes whole, whose keys are the `settings`), the env vars that
 * come from the Secret, the Secret's files by mounted path, and the probe files it is told to load.
 */
function podView(objs: Obj[]) {
  const deploy = objs.find((o) => o.kind === 'Deployment')!;
  const pod = deploy.spec.template.spec;
  const [c] = pod.containers;
  const configMaps = new Map<string, Record<string, string>>(objs.filter((o) => o.kind === 'ConfigMap').map((o) => [o.metadata.name, o.data]));
  const env: Record<string, string> = {};
  const secretEnv: Record<string, string> = {};
  const settings: string[] = [];
  for (const from of c.envFrom ?? []) {
    expect(configMaps.has(from.configMapRef?.name), `envFrom ${JSON.stringify(from)}`).toBe(true);
    Object.assign(env, configMaps.get(from.configMapRef.name));
    settings.push(...Object.keys(configMaps.get(from.configMapRef.name)!));
  }
  for (const e of c.env ?? []) {
    const label = /^metadata\.labels\['(.+)'\]$/.exec(e.valueFrom?.fieldRef?.fieldPath ?? '');
    if (e.value !== undefined) env[e.name] = e.value;
    else if (label) env[e.name] = deploy.spec.template.metadata.labels[label[1]];
    else if (e.valueFrom?.secretKeyRef) secretEnv[e.name] = e.valueFrom.secretKeyRef.key;
    else if (e.valueFrom?.configMapKeyRef) env[e.name] = configMaps.get(e.valueFrom.configMapKeyRef.name)![e.valueFrom.configMapKeyRef.key];
    else throw new Error(`podView: env ${e.name} comes from somewhere this test does not know`);
  }
  const volumes = Object.fromEntries(pod.volumes.map((v: Obj) => [v.name, v]));
  const secretFiles: Record<string, string> = {};
  let probeFiles: Record<string, string> | undefined;
  const configDir = c.args[c.args.indexOf('--config') + 1];
  for (const m of c.volumeMounts) {
    const v = volumes[m.name];
    for (const item of v.secret?.items ?? []) secretFiles[path.posix.join(m.mountPath, item.path)] = item.key;
    if (v.configMap && m.mountPath === configDir) probeFiles = configMaps.get(v.configMap.name);
  }
  expect(probeFiles, `a ConfigMap mounted at --config ${configDir}`).toBeDefined();
  return { env, settings, secretEnv, secretFiles, probeFiles: probeFiles! };
}

/** Every `{file: ...}` (as the pod's environment resolves it) and `{env: ...}` reference of the probe files. */
function references(files: Record<string, string>, env: Record<string, string>): { files: string[]; envs: string[] } {
  const out = { files: [] as string[], envs: [] as string[] };
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(walk);
    if (!node || typeof node !== 'object') return;
    const keys = Object.keys(node);
    const only = keys.length === 1 ? (node as Record<string, unknown>)[keys[0]] : undefined;
    if (keys[0] === 'file' && typeof only === 'string') out.files.push(interpolate(only, env).value);
    else if (keys[0] === 'env' && typeof only === 'string') out.envs.push(only);
    else Object.values(node).forEach(walk);
  };
  for (const text of Object.values(files)) walk(parse(text));
  return out;
}

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
      'ConfigMap',
      'CronJob',
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
    expectHeapCapUnderLimit(c);
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
    const configMap = (prefix: string) => of('ConfigMap').find((m) => m.metadata.name.startsWith(prefix))!.metadata.name;
    expect(sts.spec.template.spec.volumes.find((v: Obj) => v.name === 'probes').configMap.name).toBe(configMap('fleetprobe-probes-'));
    expect(c.envFrom[0].configMapRef.name).toBe(configMap('fleetprobe-settings-'));
    expect(base.spec.template.spec.containers[0].envFrom).toHaveLength(c.envFrom.length);
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
