import type { Logger } from 'pino';
import { resultToJson, type RunResult } from '../core/result.js';
import type { Metrics } from '../metrics/metrics.js';
import type { StatusStore } from './status.js';

/**
 * Where a finished run goes: metrics, the status store and one log line. Logged at info/warn only
 * for failures and state changes, so a healthy fleet of probes does not flood the log.
 */
export function recordResult(r: RunResult, deps: { metrics: Metrics; status: StatusStore; log: Logger }): void {
  deps.metrics.record(r);
  const prev = deps.status.update(r);
  const changed = !r.aborted && prev !== undefined && prev.success !== r.success;
  // A healthy run logs at debug: skip building its fields when debug is off (most runs).
  if (r.success && !changed && !deps.log.isLevelEnabled('debug')) return;
  const fields = { probe: r.name, kind: r.kind, result: resultToJson(r) };
  if (r.aborted) {
    deps.log.info(fields, `probe ${r.name} aborted by shutdown`);
    return;
  }
  if (!r.success) {
    deps.log.warn({ ...fields, stateChange: changed || undefined }, `probe ${r.name} failed in ${r.phase}: ${r.reason}: ${r.message}`);
  } else if (changed) {
    deps.log.info({ ...fields, stateChange: true }, `probe ${r.name} recovered`);
  } else {
    deps.log.debug(fields, `probe ${r.name} passed in ${r.durationSeconds.toFixed(3)}s`);
  }
}
