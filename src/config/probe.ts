import { createHash } from 'node:crypto';
import path from 'node:path';
import { z } from 'zod';
import type { ConfigIssue } from '../core/errors.js';
import type { ProbeKind, ProbeSpec } from '../core/kind.js';
import { KIND_NAMES, getKind } from '../kinds/index.js';
import type { CompanionLinks } from './companions.js';
import { withBaseDir } from './fields.js';
import { zodIssues } from './issues.js';
import { formatPath, locateLine } from './locate.js';
import type { ParsedFile } from './read.js';
import { deriveSchedule } from './schedule.js';
import { bucketsFor, commonProbeFields, type bucketsSchema } from './schema.js';

/** What every probe of one file shares while it is loaded. */
export interface FileContext extends ParsedFile {
  defaults: { interval?: number; timeout?: number; labels?: Record<string, string> };
  platform: Record<string, unknown>;
  /** The file's `buckets:` (latency histogram bounds), if set. */
  buckets?: z.output<typeof bucketsSchema>;
  /** The file's probes as written, before their kind's schema. */
  probes: Record<string, unknown>[];
  issues: ConfigIssue[];
  /** Drops problems that only repeat a missing ${VAR} (see withoutUnresolved). */
  schemaIssues: (found: ConfigIssue[]) => ConfigIssue[];
  /** Probe names seen so far in the whole configuration, with where: names are global. */
  seen: Map<string, string>;
  companions: CompanionLinks[];
  /**
   * Set for a lenient load (`fleetprobe run`): a probe whose only problems are unresolved
   * references is set aside here, by name, instead of failing the whole load.
   */
  deferred?: DeferredProbe[];
  /** Unresolved ${VAR}s found by interpolation, by probe index, for a lenient load to set aside. */
  unresolvedAt?: Map<number, ConfigIssue[]>;
}

/** A probe left out of a lenient load: its references do not resolve here (see LoadOptions.lenient). */
export interface DeferredProbe {
  name: string;
  issues: ConfigIssue[];
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

/** The probe's kind, or an issue on its `kind` field. */
function kindOf(f: FileContext, rawProbe: Record<string, unknown>, at: PropertyKey[]): ProbeKind | undefined {
  const name = rawProbe.kind;
  const kind = typeof name === 'string' ? getKind(name) : undefined;
  if (!kind) {
    f.issues.push({
      file: f.file,
      line: locateLine(f.doc, f.lc, [...at, 'kind']),
      path: formatPath([...at, 'kind']),
      message: name === undefined ? `is required; one of: ${KIND_NAMES.join(', ')}` : `unknown kind "${String(name)}"; one of: ${KIND_NAMES.join(', ')}`,
    });
  }
  return kind;
}

/**
 * Step 4 of loading: fields the probe leaves out come from the file's platform block. Returns the
 * merged input and which fields came from the platform, so problems in them are reported where
 * they were written (platform.x), not on the probe.
 */
export function mergePlatform(rawProbe: Record<string, unknown>, platform: Record<string, unknown>, kind: ProbeKind) {
  const fromPlatform = (kind.platformFields ?? []).filter((f) => rawProbe[f] === undefined && platform[f] !== undefined);
  const input = { ...rawProbe, ...Object.fromEntries(fromPlatform.map((f) => [f, platform[f]])) };
  return { input, fromPlatform };
}

/** Step 5: the kind's schema (relative paths resolve against the file's folder), then its own checks. */
function validate(f: FileContext, kind: ProbeKind, input: Record<string, unknown>, fromPlatform: string[], at: PropertyKey[]) {
  const schema = probeSchema(kind);
  const parsed = withBaseDir(path.dirname(path.resolve(f.file)), () => schema.safeParse(input));
  if (!parsed.success) {
    const injected = parsed.error.issues.filter((i) => fromPlatform.includes(String(i.path[0])));
    const own = parsed.error.issues.filter((i) => !injected.includes(i));
    const known = Object.keys(schema.shape);
    if (injected.length) f.issues.push(...f.schemaIssues(zodIssues(injected, f.file, f.doc, f.lc, ['platform'], known)));
    if (own.length) f.issues.push(...f.schemaIssues(zodIssues(own, f.file, f.doc, f.lc, at, known)));
    return undefined;
  }
  const p = parsed.data as z.output<typeof schema> & Record<string, unknown>;
  const problems = kind.check?.(p as never) ?? [];
  for (const problem of problems) issueOn(f, at, problem.field, problem.message, problem.unresolved);
  return problems.length ? undefined : p;
}

function issueOn(f: FileContext, at: PropertyKey[], field: string, message: string, unresolved?: boolean): void {
  f.issues.push({
    file: f.file,
    line: locateLine(f.doc, f.lc, [...at, field]),
    path: formatPath([...at, field]),
    message,
    ...(unresolved ? { unresolved } : {}),
  });
}

/**
 * Steps 4 to 6 for one probe of a file: its spec, or undefined (disabled, or with issues recorded).
 * In a lenient load, a probe whose every problem is an unresolved reference is deferred instead.
 */
export function loadProbe(f: FileContext, rawProbe: Record<string, unknown>, index: number): ProbeSpec | undefined {
  if (!f.deferred) return loadOne(f, rawProbe, index);
  const own: ConfigIssue[] = [...(f.unresolvedAt?.get(index) ?? [])];
  // Companion problems are found later, once every probe is known: they go to the load's own list.
  const spec = loadOne({ ...f, issues: own }, rawProbe, index, f);
  if (own.length === 0) return spec;
  if (own.every((i) => i.unresolved)) {
    f.deferred.push({ name: typeof rawProbe.name === 'string' ? rawProbe.name : `probes[${index}]`, issues: own });
  } else {
    f.issues.push(...own);
  }
  return undefined;
}

function loadOne(f: FileContext, rawProbe: Record<string, unknown>, index: number, later: FileContext = f): ProbeSpec | undefined {
  const at: PropertyKey[] = ['probes', index];
  const kind = kindOf(f, rawProbe, at);
  if (!kind) return undefined;
  const { input, fromPlatform } = mergePlatform(rawProbe, f.platform, kind);
  const p = validate(f, kind, input, fromPlatform, at);
  if (!p) return undefined;
  const issue = (field: string, message: string) => issueOn(f, at, field, message);
  const line = locateLine(f.doc, f.lc, at);

  const prev = f.seen.get(p.name);
  if (prev) return void issue('name', `duplicate probe name "${p.name}" (also defined at ${prev})`);
  f.seen.set(p.name, `${f.file}:${line}`);

  const defaultsLine = f.defaults.timeout !== undefined ? locateLine(f.doc, f.lc, ['defaults', 'timeout']) : undefined;
  const defaultsTimeoutAt = `defaults.timeout${defaultsLine ? ` at ${f.file}:${defaultsLine}` : ''}`;
  const schedule = deriveSchedule({ probe: p, defaults: f.defaults, kindDefaults: kind.defaults, defaultsTimeoutAt });
  if ('field' in schedule) return void issue(schedule.field, schedule.message);
  const { intervalMs, cron, timeoutMs } = schedule;
  // A held probe checks its connection every interval, and alerts compare its last check with it.
  if (cron !== undefined && kind.holds?.(p as never))
    return void issue('hold', 'a held probe checks its connection every `interval`: set an interval, not cron');

  const { name, kind: _k, description, enabled, interval: _i, cron: _c, timeout: _t, labels: ownLabels, ...config } = p;
  if (!enabled) return undefined;
  const labelsMerged = { ...f.defaults.labels, ...ownLabels };
  // What makes a probe "the same" across reloads: a changed digest restarts its held task.
  const digest = createHash('sha256')
    .update(JSON.stringify({ file: f.file, raw: input, intervalMs, cron, timeoutMs, labelsMerged }))
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
    source: { file: f.file, line },
    config,
    digest,
  };
  const buckets = bucketsFor(f.buckets, kind.kind);
  if (buckets) spec.buckets = buckets;
  const refs = kind.companions?.(config as never) ?? [];
  if (refs.length) f.companions.push({ spec, refs, issue: (field, message) => issueOn(later, at, field, message) });
  return spec;
}
