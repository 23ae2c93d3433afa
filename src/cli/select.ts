import { EmptySelectionError, UnknownProbeError, UsageError } from '../core/errors.js';
import type { ProbeSpec } from '../core/kind.js';
import type { Args } from './args.js';

/**
 * Which probes `run` and `gate` take: names, or everything (`--all`) narrowed by label selectors
 * (`-l kind=ssh,location=eu-west`, as kubectl's: terms joined by commas must all hold) and kinds
 * (`--kind ssh,tunnel`: any of them). `kind` and `name` work as labels too.
 */
export interface Selection {
  names: string[];
  terms: LabelTerm[];
  kinds: string[];
  /** How the user said it, for messages: `-l kind=ssh --kind http`. */
  text: string;
}

export interface LabelTerm {
  key: string;
  op: '=' | '!=';
  value: string;
}

const TERM_RE = /^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(==|=|!=)\s*([^\s,=!]*)\s*$/;

export function parseSelector(text: string): LabelTerm[] {
  return text.split(',').map((part) => {
    const m = TERM_RE.exec(part);
    if (!m) throw new UsageError(`-l "${text}": "${part.trim()}" is not a label selector term; use name=value or name!=value, joined by commas`);
    return { key: m[1], op: m[2] === '!=' ? '!=' : '=', value: m[3] };
  });
}

/**
 * The selection from the command line. With nothing selected, `run` refuses (it never ran
 * everything by accident before) while `gate`, whose job is the whole location, takes every probe.
 */
export function selectionFrom(args: Args, command: 'run' | 'gate'): Selection {
  const names = args.positionals.slice(1);
  const selectors = args.values.selector ?? [];
  const kinds = (args.values.kind ?? []).flatMap((k) => k.split(',')).map((k) => k.trim());
  if (kinds.some((k) => !k)) throw new UsageError('--kind takes kind names, e.g. --kind ssh,tunnel');
  const filtered = selectors.length > 0 || kinds.length > 0;
  if (names.length && (filtered || args.values.all)) throw new UsageError(`${command} takes probe names or a selection (--all, -l, --kind), not both`);
  if (!names.length && !filtered && !args.values.all && command === 'run')
    throw new UsageError('run needs probe names, --all, -l LABEL=VALUE,... or --kind KIND: fleetprobe run NAME...');
  const parts = [...(args.values.all ? ['--all'] : []), ...selectors.map((s) => `-l ${s}`), ...(kinds.length ? [`--kind ${kinds.join(',')}`] : [])];
  return { names, terms: selectors.flatMap(parseSelector), kinds, text: parts.join(' ') || 'all probes' };
}

function labelOf(spec: ProbeSpec, key: string): string | undefined {
  if (key === 'kind') return spec.kind;
  if (key === 'name') return spec.name;
  return spec.labels[key];
}

/** The selected probes, in configuration order (names: in the order given). */
export function selectProbes(probes: ProbeSpec[], sel: Selection, skippedLabFiles: string[] = []): ProbeSpec[] {
  if (sel.names.length) {
    const byName = new Map(probes.map((p) => [p.name, p]));
    return [...new Set(sel.names)].map((name) => {
      const spec = byName.get(name);
      if (!spec)
        throw new UnknownProbeError(
          name,
          probes.map((p) => p.name),
          skippedLabFiles,
        );
      return spec;
    });
  }
  const chosen = probes.filter(
    (p) =>
      (!sel.kinds.length || sel.kinds.includes(p.kind)) &&
      sel.terms.every((t) => {
        const v = labelOf(p, t.key);
        // As in kubectl, `key!=value` also matches probes without the label.
        return t.op === '=' ? v === t.value : v !== t.value;
      }),
  );
  if (!chosen.length)
    throw new EmptySelectionError(
      sel.text,
      probes.map((p) => p.name),
      knownLabels(probes),
    );
  return chosen;
}

/** `kind=http|ssh`, `location=eu-west|lab`: every label with the values the probes have. */
function knownLabels(probes: ProbeSpec[]): string[] {
  const values = new Map<string, Set<string>>([['kind', new Set()]]);
  for (const p of probes) {
    values.get('kind')!.add(p.kind);
    for (const [k, v] of Object.entries(p.labels)) {
      if (!values.has(k)) values.set(k, new Set());
      values.get(k)!.add(v);
    }
  }
  return [...values].map(([k, vs]) => `${k}=${[...vs].sort().join('|')}`);
}
