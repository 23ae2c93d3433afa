import { nominalIntervalMs } from '../config/schedule.js';
import type { CompanionStatus, ProbeSpec } from '../core/kind.js';
import { resultToJson, roundSeconds, type RunResult } from '../core/result.js';
import { formatDuration } from '../core/duration.js';
import { configView } from './config-view.js';
import { RunHistory, type HistoryEntry, type HistorySummary } from './history.js';

export interface ProbeStatus {
  spec: ProbeSpec;
  last?: RunResult;
  lastSuccessAt?: number;
  consecutiveFailures: number;
}

/**
 * The last result of each probe, for /probes, and their run history (history.ts). Holds no secrets:
 * results are redacted at creation.
 */
export class StatusStore {
  private items = new Map<string, ProbeStatus>();

  constructor(readonly history: RunHistory = new RunHistory({ runs: 0, failures: 0 }, () => [])) {}

  configure(specs: ProbeSpec[]): void {
    const next = new Map<string, ProbeStatus>();
    for (const spec of specs) {
      const old = this.items.get(spec.name);
      next.set(spec.name, old ? { ...old, spec } : { spec, consecutiveFailures: 0 });
    }
    this.items = next;
    this.history.configure(specs);
  }

  /** Records a result and returns the previous one (to log state changes). */
  update(r: RunResult): RunResult | undefined {
    const item = this.items.get(r.name);
    if (!item || r.aborted) return item?.last;
    this.history.record(r);
    const prev = item.last;
    item.last = r;
    if (r.success) {
      item.lastSuccessAt = r.startedAt;
      item.consecutiveFailures = 0;
    } else item.consecutiveFailures++;
    return prev;
  }

  get(name: string): ProbeStatus | undefined {
    return this.items.get(name);
  }

  /** Every probe configured, in configuration order. */
  list(): ProbeStatus[] {
    return [...this.items.values()];
  }

  /** What a probe reading `name` as its companion sees (RunOptions.companion); undefined if not configured here. */
  companion(name: string): CompanionStatus | undefined {
    const item = this.items.get(name);
    if (!item) return undefined;
    return { last: item.last, lastSuccessAt: item.lastSuccessAt, intervalMs: nominalIntervalMs(item.spec) };
  }

  /** /probes: every probe (with `failing`, those whose last run failed), newest state first. */
  toJson(opts: { failing?: boolean } = {}) {
    return this.list()
      .filter((item) => !opts.failing || isFailing(item))
      .map((item) => this.itemJson(item));
  }

  /** /probes/NAME: the /probes item, its history and failures kept apart, and its config as loaded. */
  detailJson(name: string) {
    const item = this.items.get(name);
    if (!item) return undefined;
    const { spec, last } = item;
    return {
      ...this.itemJson(item),
      description: spec.description ?? null,
      source: spec.source,
      phases: this.history.phasesOf(spec.kind),
      lastOutput: last?.output ?? [],
      historyLimits: this.history.limits,
      summary: summaryJson(this.history.summary(name)),
      failures: this.history.failures(name).map(entryJson),
      history: this.history.runs(name).map(entryJson),
      config: configView(spec.config),
    };
  }

  private itemJson({ spec, last, lastSuccessAt, consecutiveFailures }: ProbeStatus) {
    const lastFailure = this.history.lastFailure(spec.name);
    return {
      name: spec.name,
      kind: spec.kind,
      schedule: scheduleOf(spec),
      timeout: formatDuration(spec.timeoutMs),
      labels: spec.labels,
      lastRun: last ? resultToJson(last) : null,
      lastSuccessAt: lastSuccessAt ? new Date(lastSuccessAt).toISOString() : null,
      consecutiveFailures,
      lastFailure: lastFailure ? entryJson(lastFailure) : null,
    };
  }
}

/** Failing now: its last run failed. A probe that has not run yet is neither failing nor passing. */
export function isFailing(item: ProbeStatus): boolean {
  return item.last !== undefined && !item.last.success;
}

function summaryJson(s: HistorySummary) {
  const q = (v: number | null) => (v === null ? null : roundSeconds(v));
  return { ...s, p50Seconds: q(s.p50Seconds), p95Seconds: q(s.p95Seconds) };
}

/** One run of the history or one failure, as /probes/NAME serves it. */
function entryJson(e: HistoryEntry & { message?: string | null; output?: readonly string[] }) {
  return {
    startedAt: new Date(e.startedAt).toISOString(),
    durationSeconds: roundSeconds(e.durationSeconds),
    success: e.success,
    reason: e.reason,
    phase: e.phase,
    phases: Object.fromEntries(Object.entries(e.phases).map(([k, v]) => [k, roundSeconds(v)])),
    message: e.message,
    output: e.output,
  };
}

export function scheduleOf(spec: ProbeSpec): string {
  return spec.cron ? `cron ${spec.cron}` : `every ${formatDuration(spec.intervalMs!)}`;
}
