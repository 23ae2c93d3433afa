import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Cron } from 'croner';
import { LineCounter, parseDocument, visit, isScalar, type Document } from 'yaml';
import { z } from 'zod';
import { formatDuration } from '../core/duration.js';
import { ConfigError, type ConfigIssue } from '../core/errors.js';
import type { ProbeSpec } from '../core/kind.js';
import { KIND_NAMES, getKind } from '../kinds/index.js';
import { withBaseDir } from './fields.js';
import { interpolate } from './interpolate.js';
import { formatPath, locateLine } from './locate.js';
import { commonProbeFields, fileSchema } from './schema.js';

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

function listFiles(paths: string[], issues: ConfigIssue[]): string[] {
  const files: string[] = [];
  for (const p of paths) {
    let st: fs.Stats;
    try {
      st = fs.statSync(p);
    } catch {
      issues.push({ file: p, path: '', message: 'no such file or directory' });
      continue;
    }
    if (st.isDirectory()) {
      const found = fs.readdirSync(p).filter((f) => /\.ya?ml$/.test(f)).sort().map((f) => path.join(p, f));
      if (found.length === 0) issues.push({ file: p, path: '', message: 'directory holds no .yaml or .yml files' });
      files.push(...found);
    } else files.push(p);
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

function zodIssues(err: z.ZodError, file: string, doc: Document, lc: LineCounter, prefix: PropertyKey[]): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  for (const issue of err.issues) {
    const p = [...prefix, ...issue.path];
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

/** The gap between the next two runs of a cron pattern, to compare with the timeout. */
function cronGapMs(pattern: string): number | undefined {
  const job = new Cron(pattern, { paused: true });
  try {
    const [a, b] = job.nextRuns(2);
    return a && b ? b.getTime() - a.getTime() : undefined;
  } finally {
    job.stop();
  }
}

export function loadConfig(opts: LoadOptions): LoadedConfig {
  const issues: ConfigIssue[] = [];
  const files = listFiles(opts.paths, issues);
  const vars: Record<string, string | undefined> = { ...process.env, ...opts.vars };
  const probes: ProbeSpec[] = [];
  const skippedLabFiles: string[] = [];
  const seen = new Map<string, string>();

  for (const file of files) {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      issues.push({ file, path: '', message: `cannot read: ${(err as NodeJS.ErrnoException).code ?? err}` });
      continue;
    }
    const lc = new LineCounter();
    const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
    if (doc.errors.length) {
      for (const e of doc.errors) issues.push({ file, line: e.linePos?.[0]?.line, path: '', message: `YAML: ${e.message.split('\n')[0]}` });
      continue;
    }
    const isLab = doc.get('lab') === true;
    if (isLab && !opts.lab) {
      skippedLabFiles.push(file);
      continue;
    }
    interpolateDocument(doc, lc, file, vars, issues);
    const raw = doc.toJS() ?? {};
    const parsedFile = fileSchema.safeParse(raw);
    if (!parsedFile.success) {
      issues.push(...zodIssues(parsedFile.error, file, doc, lc, []));
      continue;
    }
    const defaults = parsedFile.data.defaults ?? {};

    parsedFile.data.probes.forEach((rawProbe, index) => {
      const at: PropertyKey[] = ['probes', index];
      const kindName = rawProbe.kind;
      const kind = typeof kindName === 'string' ? getKind(kindName) : undefined;
      if (!kind) {
        issues.push({
          file,
          line: locateLine(doc, lc, [...at, 'kind']),
          path: formatPath([...at, 'kind']),
          message: kindName === undefined ? `is required; one of: ${KIND_NAMES.join(', ')}` : `unknown kind "${String(kindName)}"; one of: ${KIND_NAMES.join(', ')}`,
        });
        return;
      }
      const schema = z.strictObject({ ...commonProbeFields, ...kind.schema.shape });
      const parsed = withBaseDir(path.dirname(path.resolve(file)), () => schema.safeParse(rawProbe));
      if (!parsed.success) {
        issues.push(...zodIssues(parsed.error, file, doc, lc, at));
        return;
      }
      const p = parsed.data as z.output<typeof schema> & Record<string, unknown>;
      const line = locateLine(doc, lc, at);
      const issue = (field: string, message: string) =>
        issues.push({ file, line: locateLine(doc, lc, [...at, field]), path: formatPath([...at, field]), message });

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
        issue(p.timeout !== undefined ? 'timeout' : cron ? 'cron' : 'interval',
          `timeout ${formatDuration(timeoutMs)} must be below the ${cron ? 'gap between cron runs' : 'interval'} (${formatDuration(gapMs)}), so runs never overlap`);
        return;
      }
      const { name, kind: _k, description, enabled, interval: _i, cron: _c, timeout: _t, labels: ownLabels, ...config } = p;
      if (!enabled) return;
      const labelsMerged = { ...defaults.labels, ...ownLabels };
      const digest = createHash('sha256')
        .update(JSON.stringify({ file, raw: rawProbe, intervalMs, cron, timeoutMs, labelsMerged }))
        .digest('hex')
        .slice(0, 16);
      probes.push({
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
      });
    });
  }
  if (issues.length) throw new ConfigError(issues);
  return { probes, files, skippedLabFiles };
}

