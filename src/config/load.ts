import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Cron } from 'croner';
import { LineCounter, visit, isScalar, type Document } from 'yaml';
import { z } from 'zod';
import { formatDuration } from '../core/duration.js';
import { ConfigError, type ConfigIssue } from '../core/errors.js';
import type { ProbeKind, ProbeSpec } from '../core/kind.js';
import { KIND_NAMES, PLATFORM_FIELDS, getKind } from '../kinds/index.js';
import { withBaseDir } from './fields.js';
import { interpolate } from './interpolate.js';
import { formatPath, locateLine } from './locate.js';
import { commonProbeFields, fileSchema } from './schema.js';
import { parseConfigYaml, YAML_TO_JS } from './yaml.js';

export const DEFAULT_INTERVAL_MS = 60_000;
export const DEFAULT_TIMEOUT_MS = 10_000;
// When only an interval is given, the timeout defaults to this share of it, so a run always ends
// before the next one is due.
const DEFAULT_TIMEOUT_SHARE = 0.8;

export interface LoadOptions {
  /** Files or directories (a directory's *.yaml / *.yml files, not recursive, in name order). */
  paths: string[];
  /** Load files marked `lab: true` (only when the embedded lab runs). */
  lab?: boolean;
  /** Variables for ${NAME}, consulted before the environment (the lab's endpoints). */
  vars?: Record<string, string>;
}

export interface LoadedConfig {
  probes: ProbeSpec[];
  files: string[];
  /** Files skipped because they describe the lab and the lab is not running. */
  skippedLabFiles: string[];
}

/** `seen` gets every path and file in the order given, to order the issues by. */
function listFiles(paths: string[], issues: ConfigIssue[], seen: string[]): string[] {
  const files: string[] = [];
  for (const p of paths) {
    let st: fs.Stats;
    try {
      st = fs.statSync(p);
    } catch {
      issues.push({ file: p, path: '', message: 'no such file or directory' });
      seen.push(p);
      continue;
    }
    if (st.isDirectory()) {
      const found = fs
        .readdirSync(p)
        .filter((f) => /\.ya?ml$/.test(f))
        .sort()
        .map((f) => path.join(p, f));
      if (found.length === 0) issues.push({ file: p, path: '', message: 'directory holds no .yaml or .yml files' });
      seen.push(p, ...found);
      files.push(...found);
    } else {
      seen.push(p);
      files.push(p);
    }
  }
  return [...new Set(files)];
}

/** Interpolates ${VAR} in every scalar value, in place, reporting missing variables by line. */
function interpolateDocument(doc: Document, lc: LineCounter, file: string, vars: Record<string, string | undefined>, issues: ConfigIssue[]) {
  visit(doc, {
    Scalar(key, node) {
      if (key === 'key' || typeof node.value !== 'string' || !node.value.includes('${')) return;
      const { value, missing } = interpolate(node.value, vars);
      for (const name of missing) {
        const line = node.range ? lc.linePos(node.range[0]).line : undefined;
        issues.push({ file, line, path: pathOf(doc, node), message: `environment variable ${name} is not set (used as \${${name}})` });
      }
      node.value = value;
    },
  });
}

function pathOf(doc: Document, target: unknown): string {
  const out: PropertyKey[] = [];
  const walk = (node: unknown, acc: PropertyKey[]): boolean => {
    if (node === target) {
      out.push(...acc);
      return true;
    }
    const items = (node as { items?: unknown[] } | null)?.items;
    if (!Array.isArray(items)) return false;
    return items.some((item, i) => {
      if (item && typeof item === 'object' && 'key' in item && 'value' in item) {
        const k = (item as { key: unknown }).key;
        const kv = isScalar(k) ? (k.value as PropertyKey) : String(k);
        return walk((item as { value: unknown }).value, [...acc, kv]);
      }
      return walk(item, [...acc, i]);
    });
  };
  walk(doc.contents, []);
  return formatPath(out);
}

/**
 * Unwraps issues that only say "Invalid input" / "Invalid key in record" around the real cause: a
 * union where one branch got the right type (e.g. a secret reference whose variable is unset), and
 * a record key that failed its own rule (e.g. a reserved label name).
 */
function unwrap(issue: z.core.$ZodIssue, at: PropertyKey[]): { path: PropertyKey[]; issue: z.core.$ZodIssue }[] {
  const p = [...at, ...issue.path];
  if (issue.code === 'invalid_union' && issue.errors.length) {
    const typed = issue.errors.filter((branch) => !branch.every((i) => i.code === 'invalid_type' && i.path.length === 0));
    if (typed.length === 1) return typed[0].flatMap((i) => unwrap(i, p));
  }
  if ((issue.code === 'invalid_key' || issue.code === 'invalid_element') && issue.issues.length) {
    return issue.issues.flatMap((i) => unwrap(i, p));
  }
  return [{ path: p, issue }];
}

function zodIssues(err: z.ZodError, file: string, doc: Document, lc: LineCounter, prefix: PropertyKey[]): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  for (const { path: p, issue } of err.issues.flatMap((i) => unwrap(i, prefix))) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        out.push({ file, line: locateLine(doc, lc, p, key), path: formatPath([...p, key]), message: 'unknown field' });
      }
      continue;
    }
    out.push({ file, line: locateLine(doc, lc, p), path: formatPath(p), message: humanise(issue) });
  }
  return out;
}

function humanise(issue: z.core.$ZodIssue): string {
  if (issue.code === 'invalid_type' && issue.message.includes('received undefined')) return 'is required';
  return issue.message.replace(/^Invalid input: /, '');
}

/**
 * The shortest gap between runs of a cron pattern, to compare with the timeout. Gaps need not be
 * equal ("*\/45 * * * *" runs at :00 and :45), so look at a window of upcoming runs, not just the
 * next two, or the verdict would depend on the time of day the config is loaded.
 */
const CRON_GAP_RUNS = 64;
function cronGaps(pattern: string): { min: number; max: number } | undefined {
  const job = new Cron(pattern, { paused: true });
  try {
    const runs = job.nextRuns(CRON_GAP_RUNS).map((d) => d.getTime());
    if (runs.length < 2) return undefined;
    const gaps = runs.slice(1).map((t, i) => t - runs[i]);
    return { min: Math.min(...gaps), max: Math.max(...gaps) };
  } finally {
    job.stop();
  }
}
function cronGapMs(pattern: string): number | undefined {
  return cronGaps(pattern)?.min;
}

/**
 * How long a probe may normally go without running: its interval, or for cron the longest gap
 * between runs (a weekday-only pattern idles over the weekend, which is not "stopped").
 */
export function nominalIntervalMs(spec: { intervalMs?: number; cron?: string }): number {
  if (spec.intervalMs !== undefined) return spec.intervalMs;
  return (spec.cron && cronGaps(spec.cron)?.max) || 0;
}

/**
 * A probe that reads another's latest result needs that probe to exist in the loaded (enabled)
 * configuration, to be another probe, to have results of its own (a held probe records one only
 * when its connection opens or breaks, so its last result says little about now), and not to read
 * companions itself (no chains, so `fleetprobe run` never recurses).
 */
function checkCompanions(
  probes: ProbeSpec[],
  withCompanions: { spec: ProbeSpec; refs: { field: string; probe: string }[]; issue: (field: string, message: string) => void }[],
): void {
  const byName = new Map(probes.map((p) => [p.name, p]));
  for (const { spec, refs, issue } of withCompanions) {
    for (const { field, probe } of refs) {
      const other = byName.get(probe);
      const otherKind = other && getKind(other.kind);
      if (probe === spec.name) issue(field, 'names this probe itself; name another probe (e.g. a tunnel probe of the same device)');
      else if (!other || !otherKind) issue(field, `no enabled probe is named "${probe}"`);
      else if (otherKind.holds?.(other.config as never))
        issue(field, `"${probe}" is a held probe (hold): its last result is not refreshed while it stays up; name a scheduled probe`);
      else if (otherKind.companions?.(other.config as never).length)
        issue(field, `"${probe}" reads a companion probe itself; a companion must check the device directly`);
    }
  }
}

// One schema per kind, not per probe: zod compiles each new object schema on its first parse
// (about 0.2 ms), which made most of the load time of a file with thousands of probes.
const makeProbeSchema = (kind: ProbeKind) => z.strictObject({ ...commonProbeFields, ...kind.schema.shape });
const probeSchemas = new WeakMap<ProbeKind, ReturnType<typeof makeProbeSchema>>();
function probeSchema(kind: ProbeKind): ReturnType<typeof makeProbeSchema> {
  let schema = probeSchemas.get(kind);
  if (!schema) probeSchemas.set(kind, (schema = makeProbeSchema(kind)));
  return schema;
}

export function loadConfig(opts: LoadOptions): LoadedConfig {
  const issues: ConfigIssue[] = [];
  const inOrder: string[] = [];
  const files = listFiles(opts.paths, issues, inOrder);
  const vars: Record<string, string | undefined> = { ...process.env, ...opts.vars };
  const probes: ProbeSpec[] = [];
  const skippedLabFiles: string[] = [];
  const seen = new Map<string, string>();
  // Probes that read other probes' results (ProbeKind.companions), checked once every probe is known.
  const withCompanions: { spec: ProbeSpec; refs: { field: string; probe: string }[]; issue: (field: string, message: string) => void }[] = [];

  for (const file of files) {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      issues.push({ file, path: '', message: `cannot read: ${(err as NodeJS.ErrnoException).code ?? err}` });
      continue;
    }
    const lc = new LineCounter();
    const doc = parseConfigYaml(text, lc);
    if (doc.errors.length) {
      // The first syntax error is the real one; the rest are usually the parser losing its footing.
      const e = doc.errors[0];
      const hint = /flow-map|flow-seq/.test(e.message) && text.includes('${') ? ' (inside { } or [ ], quote values that use ${VAR}: "${VAR}")' : '';
      issues.push({ file, line: e.linePos?.[0]?.line ?? lc.linePos(e.pos[0]).line, path: '', message: `YAML: ${e.message.split('\n')[0]}${hint}` });
      continue;
    }
    const isLab = doc.get('lab') === true;
    if (isLab && !opts.lab) {
      skippedLabFiles.push(file);
      continue;
    }
    const before = issues.length;
    interpolateDocument(doc, lc, file, vars, issues);
    // A field whose variable is missing still holds "${NAME}"; its schema error would only repeat that.
    const unresolved = new Set(issues.slice(before).map((i) => i.path));
    // Nor would a problem reported on a field that holds one, e.g. `token` for `token: {file: "${X}"}`.
    const holdsUnresolved = (p: string) => [...unresolved].some((u) => u === p || u.startsWith(p + '.') || u.startsWith(p + '['));
    const schemaIssues = (found: ConfigIssue[]) => found.filter((i) => !holdsUnresolved(i.path));
    const raw = doc.toJS(YAML_TO_JS) ?? {};
    const parsedFile = fileSchema.safeParse(raw);
    if (!parsedFile.success) {
      issues.push(...schemaIssues(zodIssues(parsedFile.error, file, doc, lc, [])));
      continue;
    }
    const defaults = parsedFile.data.defaults ?? {};
    const platform = parsedFile.data.platform ?? {};
    for (const key of Object.keys(platform)) {
      if (!PLATFORM_FIELDS.includes(key)) {
        issues.push({
          file,
          line: locateLine(doc, lc, ['platform'], key),
          path: formatPath(['platform', key]),
          message: `unknown platform field; known: ${PLATFORM_FIELDS.join(', ') || '(none)'}`,
        });
      }
    }

    parsedFile.data.probes.forEach((rawProbe, index) => {
      const at: PropertyKey[] = ['probes', index];
      const kindName = rawProbe.kind;
      const kind = typeof kindName === 'string' ? getKind(kindName) : undefined;
      if (!kind) {
        issues.push({
          file,
          line: locateLine(doc, lc, [...at, 'kind']),
          path: formatPath([...at, 'kind']),
          message:
            kindName === undefined ? `is required; one of: ${KIND_NAMES.join(', ')}` : `unknown kind "${String(kindName)}"; one of: ${KIND_NAMES.join(', ')}`,
        });
        return;
      }
      // Fields the probe leaves out come from the file's platform block; problems in them are
      // reported where they were written (platform.x), not on the probe.
      const fromPlatform = (kind.platformFields ?? []).filter((f) => rawProbe[f] === undefined && platform[f] !== undefined);
      const input = { ...rawProbe, ...Object.fromEntries(fromPlatform.map((f) => [f, platform[f]])) };
      const schema = probeSchema(kind);
      const parsed = withBaseDir(path.dirname(path.resolve(file)), () => schema.safeParse(input));
      if (!parsed.success) {
        const injected = parsed.error.issues.filter((i) => fromPlatform.includes(String(i.path[0])));
        const own = parsed.error.issues.filter((i) => !injected.includes(i));
        if (injected.length) issues.push(...schemaIssues(zodIssues(new z.ZodError(injected), file, doc, lc, ['platform'])));
        if (own.length) issues.push(...schemaIssues(zodIssues(new z.ZodError(own), file, doc, lc, at)));
        return;
      }
      const p = parsed.data as z.output<typeof schema> & Record<string, unknown>;
      const line = locateLine(doc, lc, at);
      const issue = (field: string, message: string) =>
        issues.push({ file, line: locateLine(doc, lc, [...at, field]), path: formatPath([...at, field]), message });

      const problems = kind.check?.(p as never) ?? [];
      for (const problem of problems) issue(problem.field, problem.message);
      if (problems.length) return;

      const prev = seen.get(p.name);
      if (prev) {
        issue('name', `duplicate probe name "${p.name}" (also defined at ${prev})`);
        return;
      }
      seen.set(p.name, `${file}:${line}`);

      // Schedule: an explicit interval or cron on the probe wins over the defaults block.
      let intervalMs: number | undefined;
      let cron: string | undefined;
      if (p.interval !== undefined && p.cron !== undefined) {
        issue('cron', 'set either interval or cron, not both');
        return;
      }
      let gapMs: number;
      if (p.cron !== undefined) {
        try {
          gapMs = cronGapMs(p.cron) ?? Infinity;
        } catch (err) {
          issue('cron', `invalid cron pattern "${p.cron}": ${(err as Error).message}`);
          return;
        }
        cron = p.cron;
      } else {
        intervalMs = p.interval ?? defaults.interval ?? kind.defaults?.intervalMs ?? DEFAULT_INTERVAL_MS;
        if (intervalMs < 1000) {
          issue('interval', `interval ${formatDuration(intervalMs)} is below the minimum of 1s`);
          return;
        }
        gapMs = intervalMs;
      }
      const explicitTimeout = p.timeout ?? defaults.timeout;
      const timeoutMs = explicitTimeout ?? Math.min(kind.defaults?.timeoutMs ?? DEFAULT_TIMEOUT_MS, Math.floor(gapMs * DEFAULT_TIMEOUT_SHARE));
      if (timeoutMs <= 0) {
        issue('timeout', 'timeout must be above 0');
        return;
      }
      if (timeoutMs >= gapMs) {
        issue(
          p.timeout !== undefined ? 'timeout' : cron ? 'cron' : 'interval',
          `timeout ${formatDuration(timeoutMs)} must be below the ${cron ? 'gap between cron runs' : 'interval'} (${formatDuration(gapMs)}), so runs never overlap`,
        );
        return;
      }
      const { name, kind: _k, description, enabled, interval: _i, cron: _c, timeout: _t, labels: ownLabels, ...config } = p;
      if (!enabled) return;
      const labelsMerged = { ...defaults.labels, ...ownLabels };
      const digest = createHash('sha256')
        .update(JSON.stringify({ file, raw: input, intervalMs, cron, timeoutMs, labelsMerged }))
        .digest('hex')
        .slice(0, 16);
      const spec: ProbeSpec = {
        name,
        kind: kind.kind,
        description,
        intervalMs,
        cron,
        timeoutMs,
        labels: labelsMerged,
        source: { file, line },
        config,
        digest,
      };
      probes.push(spec);
      const refs = kind.companions?.(config as never) ?? [];
      if (refs.length) withCompanions.push({ spec, refs, issue });
    });
  }
  checkCompanions(probes, withCompanions);
  if (issues.length) {
    // A bad platform field is met once per probe that uses it: report it once.
    const unique = new Map(issues.map((i) => [`${i.file}:${i.line}:${i.path}:${i.message}`, i]));
    issues.splice(0, issues.length, ...unique.values());
    // In file order, then line order, so the list reads like the files do.
    const order = new Map<string, number>();
    for (const f of [...inOrder, ...issues.map((i) => i.file)]) if (!order.has(f)) order.set(f, order.size);
    issues.sort((a, b) => order.get(a.file)! - order.get(b.file)! || (a.line ?? 0) - (b.line ?? 0));
    throw new ConfigError(issues);
  }
  return { probes, files, skippedLabFiles };
}
