import type { Reason } from './reasons.js';

/**
 * Every error code fleetprobe gives, in one catalogue. Callers and tests match on `code`, never on
 * message text. Foreign errors are normalised where they enter (see classify.ts) and kept as
 * `cause`. FP_ERR_* reach the user; the others are internal signals (a deadline, a shutdown, a
 * socket we closed ourselves) that classify.ts turns into a reason and never shows as a code.
 */
export const ERROR_CODES = {
  FP_ERR_CONFIG: 'the configuration is invalid',
  FP_ERR_USAGE: 'the command line is invalid',
  FP_ERR_UNKNOWN_PROBE: 'no probe has that name',
  FP_ERR_EMPTY_SELECTION: 'no probe matches the selection (-l, --kind)',
  FP_ERR_REPORT_FILE: 'a report file (--junit) cannot be written',
  FP_ERR_PROBE: 'a probe run failed',
  FP_ERR_LAB: 'the embedded lab could not start or was asked for something it does not have',
  FP_ERR_LISTEN: 'the HTTP server could not listen on the requested address',
  FP_ERR_NO_PROBES: '`fleetprobe daemon` found no probes to run (no probe files, or none with probes)',
  FP_ERR_DAEMON: '`fleetprobe status` could not read the daemon (unreachable, no answer in time, or not its JSON)',
  FP_RUN_TIMEOUT: "(internal) a run's deadline passed",
  FP_SHUTDOWN: '(internal) the run was aborted by a shutdown, or had already ended',
  FP_CLOSED_BY_PROBE: '(internal) fleetprobe closed the connection itself (abort or teardown)',
  FP_EXCHANGE_OVER: '(internal) an HTTP exchange is over and its client is being closed',
} as const;
export type ErrorCode = keyof typeof ERROR_CODES;

export class FleetprobeError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** One problem in a config file, located as precisely as we can. */
export interface ConfigIssue {
  file: string;
  line?: number;
  /** The column of the offending token (YAML syntax errors), 1-based. */
  column?: number;
  path: string;
  message: string;
  /**
   * A reference that did not resolve here and now (an unset variable, a secret file that cannot be
   * read), not a mistake in the file: `fleetprobe run` tolerates it in the probes it does not run.
   */
  unresolved?: boolean;
}

export function formatConfigIssue(i: ConfigIssue): string {
  const where = i.line ? `${i.file}:${i.line}${i.column ? ':' + i.column : ''}` : i.file;
  return i.path ? `${where}: ${i.path}: ${i.message}` : `${where}: ${i.message}`;
}

/** All the problems found in a configuration at once, so a user fixes them in one pass. */
export class ConfigError extends FleetprobeError {
  readonly issues: ConfigIssue[];
  constructor(issues: ConfigIssue[]) {
    super(
      'FP_ERR_CONFIG',
      `invalid configuration (${issues.length} problem${issues.length === 1 ? '' : 's'}):\n` + issues.map((i) => '  ' + formatConfigIssue(i)).join('\n'),
    );
    this.issues = issues;
  }
}

export class UsageError extends FleetprobeError {
  constructor(message: string) {
    super('FP_ERR_USAGE', message);
  }
}

export class UnknownProbeError extends FleetprobeError {
  readonly known: string[];
  /** skippedLabFiles: files left out for want of --lab, where the probe may well be. */
  constructor(name: string, known: string[], skippedLabFiles: string[] = []) {
    const skipped = skippedLabFiles.length ? `; skipped ${skippedLabFiles.join(', ')} (lab: true): add --lab to load its probes` : '';
    super('FP_ERR_UNKNOWN_PROBE', `no probe named "${name}"; known probes: ${known.length ? known.join(', ') : '(none)'}${skipped}`);
    this.known = known;
  }
}

/** A selection (`-l`, `--kind`) that matches no probe: the message lists what there is to select. */
export class EmptySelectionError extends FleetprobeError {
  constructor(selection: string, knownNames: string[], knownLabels: string[]) {
    super(
      'FP_ERR_EMPTY_SELECTION',
      `no probe matches ${selection}\n  known probes: ${knownNames.join(', ') || '(none)'}\n  known labels: ${knownLabels.join(', ') || '(none)'}`,
    );
  }
}

/** A report file that cannot be written; raised before any probe runs. */
export class ReportFileError extends FleetprobeError {
  constructor(option: string, file: string, cause: unknown) {
    super('FP_ERR_REPORT_FILE', `${option} ${file}: cannot write the report there (${(cause as Error)?.message ?? cause})`, { cause });
  }
}

/**
 * What a probe kind throws when the target answered but not as it should. The reason is decided by
 * the kind, which knows the protocol; everything else thrown is classified by classifyError().
 */
export class ProbeError extends FleetprobeError {
  readonly reason: Reason;
  constructor(reason: Reason, message: string, options?: { cause?: unknown }) {
    super('FP_ERR_PROBE', message, options);
    this.reason = reason;
  }
}

export class LabError extends FleetprobeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('FP_ERR_LAB', message, options);
  }
}
