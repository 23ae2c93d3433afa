import { nominalIntervalMs } from '../config/schedule.js';
import type { CompanionStatus, ProbeSpec } from '../core/kind.js';
import { resultToJson, type RunResult } from '../core/result.js';
import { formatDuration } from '../core/duration.js';

export interface ProbeStatus {
  spec: ProbeSpec;
  last?: RunResult;
  lastSuccessAt?: number;
  consecutiveFailures: number;
}

/** The last result of each probe, for /probes. Holds no secrets: results are redacted at creation. */
export class StatusStore {
  private items = new Map<string, ProbeStatus>();

  configure(specs: ProbeSpec[]): void {
    const next = new Map<string, ProbeStatus>();
    for (const spec of specs) {
      const old = this.items.get(spec.name);
      next.set(spec.name, old ? { ...old, spec } : { spec, consecutiveFailures: 0 });
    }
    this.items = next;
  }

  /** Records a result and returns the previous one (to log state changes). */
  update(r: RunResult): RunResult | undefined {
    const item = this.items.get(r.name);
    if (!item || r.aborted) return item?.last;
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

  /** What a probe reading `name` as its companion sees (RunOptions.companion); undefined if not configured here. */
  companion(name: string): CompanionStatus | undefined {
    const item = this.items.get(name);
    if (!item) return undefined;
    return { last: item.last, lastSuccessAt: item.lastSuccessAt, intervalMs: nominalIntervalMs(item.spec) };
  }

  toJson() {
    return [...this.items.values()].map(({ spec, last, lastSuccessAt, consecutiveFailures }) => ({
      name: spec.name,
      kind: spec.kind,
      schedule: scheduleOf(spec),
      timeout: formatDuration(spec.timeoutMs),
      labels: spec.labels,
      lastRun: last ? resultToJson(last) : null,
      lastSuccessAt: lastSuccessAt ? new Date(lastSuccessAt).toISOString() : null,
      consecutiveFailures,
    }));
  }
}

export function scheduleOf(spec: ProbeSpec): string {
  return spec.cron ? `cron ${spec.cron}` : `every ${formatDuration(spec.intervalMs!)}`;
}
