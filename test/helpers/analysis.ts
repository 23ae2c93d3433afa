import path from 'node:path';
import { ROOT } from './cli.js';
import { render, type Obj } from './kustomize.js';

/**
 * The shipped Argo Rollouts AnalysisTemplate (deploy/kubernetes/rollouts), read the way Argo
 * Rollouts reads it: every `{{args.NAME}}` in a metric is replaced by the argument's value (the
 * template's default unless the Rollout passes one), the Prometheus query returns a vector, and
 * successCondition sees its values as `result`.
 */

export const ROLLOUTS_DIR = path.join(ROOT, 'deploy/kubernetes/rollouts');

export interface Condition {
  op: '==' | '!=' | '<' | '<=' | '>' | '>=';
  value: number;
  /** Argo's verdict on a measurement: the condition holds for result[0] (an empty result is an error, not a success). */
  holds(result: number[]): boolean;
  /** The same test in PromQL on a one-sample query: 1 when it holds, 0 when not. */
  promql(query: string): string;
}

export interface AnalysisMetric {
  name: string;
  query: string;
  condition: Condition;
  spec: Obj;
}

/**
 * successCondition as the tests understand it: `result[0] OP NUMBER`. Argo evaluates any
 * expr-lang expression; a template using another form fails here until the tests learn it.
 */
export function parseCondition(text: string): Condition {
  const m = /^result\[0\] (==|!=|<=|>=|<|>) (-?\d+(?:\.\d+)?)$/.exec(text.trim());
  if (!m) throw new Error(`successCondition "${text}": the tests only evaluate "result[0] OP NUMBER"`);
  const op = m[1] as Condition['op'];
  const value = Number(m[2]);
  const compare = (x: number) =>
    op === '==' ? x === value : op === '!=' ? x !== value : op === '<' ? x < value : op === '<=' ? x <= value : op === '>' ? x > value : x >= value;
  return { op, value, holds: (result) => result.length > 0 && compare(result[0]), promql: (q) => `(${q.trim()}) ${op} bool ${value}` };
}

/** Argo's substitution of `{{args.NAME}}`; an argument with no value is an error, as in Argo. */
export function resolveArgs(text: string, args: Record<string, string | undefined>): string {
  return text.replace(/\{\{\s*args\.([\w-]+)\s*\}\}/g, (_, name: string) => {
    const v = args[name];
    if (v === undefined) throw new Error(`{{args.${name}}} has no value (not declared, or declared without a default)`);
    return v;
  });
}

export function analysisTemplate(): Obj {
  const objs = render(ROLLOUTS_DIR);
  if (objs.length !== 1 || objs[0].kind !== 'AnalysisTemplate')
    throw new Error(`${ROLLOUTS_DIR} should render one AnalysisTemplate, got ${objs.map((o) => o.kind).join(', ')}`);
  return objs[0];
}

/** The template's metrics with the arguments resolved: its defaults, overridden by `args` (what a Rollout passes). */
export function analysisMetrics(template: Obj, args: Record<string, string> = {}): AnalysisMetric[] {
  const values: Record<string, string | undefined> = Object.fromEntries((template.spec.args as Obj[]).map((a) => [a.name, a.value as string | undefined]));
  for (const [k, v] of Object.entries(args)) {
    if (!(k in values)) throw new Error(`the template has no argument "${k}"`);
    values[k] = v;
  }
  return (template.spec.metrics as Obj[]).map((m) => {
    const spec = JSON.parse(resolveArgs(JSON.stringify(m), values)) as Obj;
    return { name: spec.name as string, query: spec.provider.prometheus.query as string, condition: parseCondition(spec.successCondition as string), spec };
  });
}
