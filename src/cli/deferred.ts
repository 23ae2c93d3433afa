import type { DeferredProbe } from '../config/probe.js';
import { ConfigError, formatConfigIssue } from '../core/errors.js';

/**
 * `run` loads leniently: it needs the references (secrets, ${VAR}s) of the probes it runs and of
 * their companions, not every probe's. At 3 a.m. one unset secret elsewhere in the directory must
 * not stop the one probe on-call needs.
 */

/** Refuses (exit 2, the problems in full) when a probe about to run has unresolved references. */
export function requireResolved(names: string[], deferred: DeferredProbe[]): void {
  const blocking = deferred.filter((d) => names.includes(d.name));
  if (blocking.length) throw new ConfigError(blocking.flatMap((d) => d.issues));
}

/** One line on stderr about the probes left out, so nothing is silently skipped. */
export function warnDeferred(deferred: DeferredProbe[]): void {
  if (!deferred.length) return;
  const what = deferred.map((d) => `${d.name} (${d.issues[0].message}${d.issues.length > 1 ? `, +${d.issues.length - 1} more` : ''})`);
  process.stderr.write(
    `fleetprobe: warning: ${deferred.length} other probe${deferred.length === 1 ? ' has' : 's have'} unresolved references and ${deferred.length === 1 ? 'was' : 'were'} not loaded: ${what.join('; ')}; "fleetprobe check" shows where\n`,
  );
}

/** For `list`: each probe left out, with where its references are. */
export function describeDeferred(d: DeferredProbe): string[] {
  return d.issues.map(formatConfigIssue);
}
