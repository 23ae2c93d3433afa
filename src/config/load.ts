import { ConfigError, type ConfigIssue } from '../core/errors.js';
import type { ProbeSpec } from '../core/kind.js';
import { PLATFORM_FIELDS } from '../kinds/index.js';
import { linkCompanions, type CompanionLinks } from './companions.js';
import { interpolateDocument, withoutUnresolved } from './interpolate.js';
import { orderIssues, zodIssues } from './issues.js';
import { formatPath, locateLine } from './locate.js';
import { loadProbe, type DeferredProbe, type FileContext } from './probe.js';
import { listFiles, readFile, type ParsedFile } from './read.js';
import { fileSchema } from './schema.js';
import { YAML_TO_JS } from './yaml.js';

/**
 * Loading a configuration is a pipeline of named steps, each in its own file:
 *   1. list the files (read.ts)            2. read and parse each (read.ts)
 *   3. interpolate ${VAR} (interpolate.ts) 4. merge the platform block (probe.ts)
 *   5. validate per kind (probe.ts)        6. derive the schedule (schedule.ts)
 *   7. link companions (companions.ts)     8. order the issues (issues.ts)
 * Every problem of every file is collected, then thrown as one ConfigError.
 */

export interface LoadOptions {
  /** Files or directories (a directory's *.yaml / *.yml files, not recursive, in name order). */
  paths: string[];
  /** Load files marked `lab: true` (only when the embedded lab runs). */
  lab?: boolean;
  /** Variables for ${NAME}, consulted before the environment (the lab's endpoints). */
  vars?: Record<string, string>;
  /**
   * `fleetprobe run`: a probe whose only problems are references that do not resolve here (an
   * unset variable or secret) is left out and listed in `deferred`, instead of failing the load.
   * Every other problem still fails it. The daemon and `check` load strictly.
   */
  lenient?: boolean;
}

export interface LoadedConfig {
  probes: ProbeSpec[];
  files: string[];
  /** Files skipped because they describe the lab and the lab is not running. */
  skippedLabFiles: string[];
  /** With `lenient`: the probes left out for unresolved references, with their problems. */
  deferred: DeferredProbe[];
}

/** The file-level part of a parsed file: its schema, and its platform block's field names. */
function fileContext(parsed: ParsedFile, base: Pick<FileContext, 'issues' | 'seen' | 'companions' | 'schemaIssues'>): FileContext | undefined {
  const { file, doc, lc } = parsed;
  const parsedFile = fileSchema.safeParse(doc.toJS(YAML_TO_JS) ?? {});
  if (!parsedFile.success) {
    base.issues.push(...base.schemaIssues(zodIssues(parsedFile.error.issues, file, doc, lc, [])));
    return undefined;
  }
  const platform = parsedFile.data.platform ?? {};
  for (const key of Object.keys(platform)) {
    if (!PLATFORM_FIELDS.includes(key)) {
      base.issues.push({
        file,
        line: locateLine(doc, lc, ['platform'], key),
        path: formatPath(['platform', key]),
        message: `unknown platform field; known: ${PLATFORM_FIELDS.join(', ') || '(none)'}`,
      });
    }
  }
  return { ...parsed, ...base, defaults: parsedFile.data.defaults ?? {}, platform, buckets: parsedFile.data.buckets, probes: parsedFile.data.probes };
}

export function loadConfig(opts: LoadOptions): LoadedConfig {
  const issues: ConfigIssue[] = [];
  const fileOrder: string[] = [];
  const files = listFiles(opts.paths, issues, fileOrder);
  const vars: Record<string, string | undefined> = { ...process.env, ...opts.vars };
  const probes: ProbeSpec[] = [];
  const skippedLabFiles: string[] = [];
  const seen = new Map<string, string>();
  const companions: CompanionLinks[] = [];
  const deferred: DeferredProbe[] = [];

  for (const file of files) {
    const parsed = readFile(file, issues);
    if (!parsed) continue;
    if (parsed.doc.get('lab') === true && !opts.lab) {
      skippedLabFiles.push(file);
      continue;
    }
    const unresolved = interpolateDocument(parsed.doc, parsed.lc, file, vars);
    const { global, byProbe } = opts.lenient ? splitByProbe(unresolved) : { global: unresolved, byProbe: undefined };
    issues.push(...global);
    const f = fileContext(parsed, { issues, seen, companions, schemaIssues: withoutUnresolved(unresolved) });
    if (!f) continue;
    if (opts.lenient) Object.assign(f, { deferred, unresolvedAt: byProbe });
    f.probes.forEach((rawProbe, index) => {
      const spec = loadProbe(f, rawProbe, index);
      if (spec) probes.push(spec);
    });
  }
  // A companion that was deferred is the runner's to check (it runs the companion, or refuses).
  linkCompanions(probes, companions, new Set(deferred.map((d) => d.name)));
  if (issues.length) throw new ConfigError(orderIssues(issues, fileOrder));
  return { probes, files, skippedLabFiles, deferred };
}

/** Interpolation problems inside `probes[i]` belong to that probe; any other (platform, defaults) to the file. */
function splitByProbe(found: ConfigIssue[]): { global: ConfigIssue[]; byProbe: Map<number, ConfigIssue[]> } {
  const global: ConfigIssue[] = [];
  const byProbe = new Map<number, ConfigIssue[]>();
  for (const issue of found) {
    const m = /^probes\[(\d+)\]/.exec(issue.path);
    if (!m) global.push(issue);
    else byProbe.set(Number(m[1]), [...(byProbe.get(Number(m[1])) ?? []), issue]);
  }
  return { global, byProbe };
}
