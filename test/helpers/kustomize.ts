import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parse, parseAllDocuments } from 'yaml';

export type Obj = Record<string, any>;

/** kubectl with a kustomize that knows `labels` (v4.1+, kubectl 1.22+); Debian's kubectl 1.20 does not. */
function modernKubectl(): string | undefined {
  const r = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' });
  const m = /Kustomize Version: v(\d+)\.(\d+)/.exec(r.stdout ?? '');
  return m && (Number(m[1]) > 4 || (Number(m[1]) === 4 && Number(m[2]) >= 1)) ? 'kubectl' : undefined;
}

export const kubectl = modernKubectl();

/**
 * The pod templates of a workload, where kustomize's label, name-reference and image transformers
 * reach: spec.template (Deployment, Job) and spec.jobTemplate.spec.template (CronJob).
 */
export function podTemplates(o: Obj): Obj[] {
  return [o.spec?.template, o.spec?.jobTemplate?.spec?.template].filter(Boolean);
}

/**
 * A render equivalent to `kubectl kustomize` for the fields these kustomizations use, for machines
 * without a recent kubectl. It refuses any other field, so it cannot silently drift from kustomize.
 * Where `labels: includeTemplates` reaches follows kustomize's metadataLabelsFieldSpecs (templates
 * of Deployments and Jobs, a CronJob's jobTemplate and its pod template).
 */
export function miniKustomize(dir: string): Obj[] {
  const k = parse(fs.readFileSync(path.join(dir, 'kustomization.yaml'), 'utf8')) as Obj;
  for (const key of Object.keys(k))
    if (!['resources', 'namespace', 'labels', 'configMapGenerator', 'images'].includes(key))
      throw new Error(`miniKustomize: unsupported field ${key} in ${dir}`);
  const objs: Obj[] = [];
  for (const r of k.resources ?? []) {
    const p = path.join(dir, r);
    if (fs.statSync(p).isDirectory()) objs.push(...miniKustomize(p));
    // YAML 1.1, as kustomize and kubectl read it: `defaultMode: 0440` is octal there (288), not 440.
    else objs.push(...parseAllDocuments(fs.readFileSync(p, 'utf8'), { version: '1.1' }).map((d) => d.toJSON()));
  }
  const renames: Record<string, string> = {};
  for (const g of k.configMapGenerator ?? []) {
    for (const key of Object.keys(g))
      if (!['name', 'files', 'envs'].includes(key)) throw new Error(`miniKustomize: unsupported generator field ${key} in ${dir}`);
    const data: Record<string, string> = {};
    for (const f of g.files ?? []) data[path.basename(f)] = fs.readFileSync(path.join(dir, f), 'utf8');
    // An env file as kustomize reads it: KEY=value lines taken verbatim; blank and # lines skipped.
    for (const f of g.envs ?? [])
      for (const line of fs.readFileSync(path.join(dir, f), 'utf8').split('\n')) {
        if (!line.trim() || line.trimStart().startsWith('#')) continue;
        const eq = line.indexOf('=');
        if (eq < 1) throw new Error(`miniKustomize: ${f}: not KEY=value: ${line}`);
        data[line.slice(0, eq)] = line.slice(eq + 1);
      }
    const name = `${g.name}-${createHash('sha256').update(JSON.stringify(data)).digest('hex').slice(0, 10)}`;
    renames[g.name] = name;
    objs.push({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name }, data });
  }
  for (const o of objs) {
    if (k.namespace && o.kind !== 'Namespace') o.metadata.namespace = k.namespace;
    for (const l of k.labels ?? []) {
      o.metadata.labels = { ...o.metadata.labels, ...l.pairs };
      if (!l.includeTemplates) continue;
      if (o.kind === 'CronJob')
        o.spec.jobTemplate.metadata = { ...o.spec.jobTemplate.metadata, labels: { ...o.spec.jobTemplate.metadata?.labels, ...l.pairs } };
      for (const t of podTemplates(o)) t.metadata = { ...t.metadata, labels: { ...t.metadata?.labels, ...l.pairs } };
    }
    for (const t of podTemplates(o)) {
      for (const v of t.spec.volumes ?? []) if (v.configMap && renames[v.configMap.name]) v.configMap.name = renames[v.configMap.name];
      for (const c of t.spec.containers ?? []) {
        for (const e of c.envFrom ?? []) if (e.configMapRef && renames[e.configMapRef.name]) e.configMapRef.name = renames[e.configMapRef.name];
        for (const e of c.env ?? []) {
          const ref = e.valueFrom?.configMapKeyRef;
          if (ref && renames[ref.name]) ref.name = renames[ref.name];
        }
        for (const img of k.images ?? []) if (c.image.split(':')[0] === img.name) c.image = `${img.newName ?? img.name}:${img.newTag}`;
      }
    }
  }
  return objs;
}

/** `kubectl kustomize DIR` when there is a recent kubectl, else the equivalent render above. */
export function render(dir: string): Obj[] {
  if (!kubectl) return miniKustomize(dir);
  const r = spawnSync(kubectl, ['kustomize', dir], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`kubectl kustomize ${dir} failed: ${r.stderr}`);
  return parseAllDocuments(r.stdout).map((d) => d.toJSON());
}
