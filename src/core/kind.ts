import type { Logger } from 'pino';
import type { z } from 'zod';
import type { Observation, ObservationKey } from './observations.js';
import type { TargetResult } from './result.js';
import type { Reason } from './reasons.js';

/**
 * Everything a probe kind may use during one run. A kind never touches metrics or log format.
 * `P` is the kind's own phase names (defineKind infers them from `phases`), so a phase the kind
 * did not declare, and so would have no series, is a compile error in the kind.
 */
export interface ProbeContext<P extends string = string> {
  /** Aborted at the run's deadline or on shutdown; pass it to every network step. */
  readonly signal: AbortSignal;
  readonly log: Logger;
  /** Absolute deadline of this run (ms since the epoch), for steps that take a timeout rather than a signal. */
  readonly deadline: number;
  /** Milliseconds left before the deadline (never negative). */
  remainingMs(): number;
  /**
   * Times one phase. Phases run one after another; a failure inside `fn` is attributed to `name`.
   * Calling the same phase twice (e.g. across redirects) adds the durations.
   */
  phase<T>(name: P, fn: () => Promise<T> | T): Promise<T>;
  /** Records a value exported with the result (e.g. `ssl_earliest_cert_expiry`, a release id). */
  observe(key: ObservationKey, value: number | string): void;
  /**
   * A line of the target's own output while the run goes on (e.g. a build log line), for
   * `fleetprobe run` to show live; the daemon logs it at debug. `transient` lines (progress bars
   * that replace the previous line) are shown only on a terminal's status line.
   */
  progress(line: string, opts?: { transient?: boolean }): void;
  /**
   * Work that must finish even when the run is over, e.g. cancelling a remote build after the
   * deadline or on shutdown: runProbe waits for it (at most TEARDOWN_GRACE_MS) before it reports
   * the result, so `fleetprobe run` and a draining daemon do not exit with it half done.
   */
  teardown(task: Promise<unknown>): void;
  /**
   * The latest result of another probe this one reads (see ProbeKind.companions): from the daemon's
   * status store, or, under `fleetprobe run`, from running that probe once just before. Undefined
   * when it has no result yet (or the runner offers no companions).
   */
  companion?(name: string): CompanionStatus | undefined;
  /**
   * This probe's memory between runs (e.g. when a drift began), kept by the runner: the daemon
   * keeps it per probe and drops it when a reload changes or removes the probe; `fleetprobe run`
   * starts from `init()`. A kind keeps no per-probe state of its own (a module-level map would
   * outlive a reload and mix up two probes of one name).
   */
  state<T extends object>(init: () => T): T;
  /**
   * True for a run from the command line (`fleetprobe run`): it has no earlier runs and no later
   * ones, so a kind that judges over time (device-status's `maxDrift`) judges what it sees now and
   * says how the daemon would treat it. Set by the runner's caller (RunOptions.oneShot), never guessed.
   */
  readonly oneShot?: boolean;
  /**
   * A fleet-target run's per-device results so far (each call replaces the last), kept with the
   * run's result for `/probes` and `fleetprobe run`; a run cut by its deadline keeps those that ended.
   */
  reportTargets?(targets: readonly TargetResult[]): void;
}

/** Where the runner keeps one probe's state between runs (see ProbeContext.state). */
export interface ProbeState {
  value?: object;
}

/** What a probe learns about a companion probe: its last result and how often it runs. */
export interface CompanionStatus {
  /** The companion's last completed (not aborted) run, if any. */
  last?: { success: boolean; startedAt: number; reason: string | null; phase: string | null; message: string | null };
  /** Start of its last passing run (ms since the epoch). */
  lastSuccessAt?: number;
  /** Its nominal interval (for cron, the longest gap), to judge whether `last` is stale. */
  intervalMs: number;
}

/** What `fleetprobe run` sees while a run goes on: phases as they start, the target's output lines. */
export interface ProgressEvent {
  phase: string | null;
  /** Absent when the event is a phase starting. Redacted, stripped of control characters. */
  line?: string;
  transient?: boolean;
}

/** Static description of a probe as loaded from config. */
export interface ProbeSpec<C = unknown> {
  name: string;
  kind: string;
  description?: string;
  /** Exactly one of intervalMs and cron is set. */
  intervalMs?: number;
  cron?: string;
  timeoutMs: number;
  labels: Record<string, string>;
  /** Where it was defined, for messages. */
  source: { file: string; line?: number };
  /** The kind's own settings, parsed and defaulted by the kind's schema. */
  config: C;
  /** `probe_latency_seconds` bucket bounds from the file's `buckets:` (else the kind's, else the default). */
  buckets?: readonly number[];
  /** Stable digest of everything above, so a reload only restarts probes that changed. */
  digest: string;
}

/**
 * A series a kind adds beyond the common ones, fed from `ctx.observe(observation, number)`:
 * a gauge is set to the value, a counter is increased by it. It carries the probe's labels.
 * With `label`, it has one more label of a fixed, bounded set of values, each fed from
 * `ctx.observe(`${observation}.${value}`, number)` (counters start at 0 for every value).
 */
export interface KindMetric {
  name: string;
  help: string;
  type: 'gauge' | 'counter';
  observation: Observation;
  label?: { name: string; values: readonly string[] };
  /**
   * With a `reason` label: pre-create (at 0) only the probe's declared reasons (see
   * ProbeKind.reasons); another reason's series appears when it is first observed.
   */
  declaredReasonsOnly?: boolean;
  /**
   * Whether a probe of this configuration has the series at all (e.g. held-tunnel series only for
   * a held probe): probes that never feed it do not export it at 0. Absent: every probe of the kind.
   */
  when?(cfg: any): boolean;
}

/**
 * Reasons any kind can fail with, whatever it does: the network layer's (no name, no connection,
 * the run deadline). A kind's `reasons` add to these; their series exist from the start.
 */
export const SHARED_REASONS = ['dns', 'connect', 'timeout'] as const satisfies readonly Reason[];
/**
 * fleetprobe's own trouble, in any kind: out of file descriptors, a bug. Expected of every kind
 * (never logged as a gap in a declaration), but their series appear only when they happen: they
 * say nothing about the target, and the bug or the shortage has its own log line.
 */
export const PROBER_REASONS = ['resources', 'internal'] as const satisfies readonly Reason[];

export interface ProbeKind<S extends z.ZodObject = z.ZodObject, P extends string = string> {
  readonly kind: string;
  readonly description: string;
  /** Extra series of this kind (documented in the README's metrics table like the common ones). */
  readonly metrics?: readonly KindMetric[];
  /** Declared up front so every phase series exists before the first run. */
  readonly phases: readonly P[];
  /**
   * The failure reasons this kind can produce beyond SHARED_REASONS: only these (and a companion's
   * reasons) get a `probe_failures_total` series at 0 up front. Another reason still gets its series
   * when it happens, and the daemon logs it as a bug in this list (the fault matrix test checks it).
   */
  readonly reasons: readonly Reason[];
  /**
   * Default `probe_latency_seconds` bucket bounds for this kind (a file's `buckets:` overrides):
   * chosen for the latencies its runs really take, with the alert rules' objectives among them.
   */
  readonly buckets?: readonly number[];
  /**
   * The phases a probe of this config can enter, when a mode adds some (fleet targets' `discover`
   * and `targets`): only these get phase series. Absent: `phases`.
   */
  readonly phasesFor?: (cfg: any) => readonly string[];
  /** Reasons a probe of this config can produce beyond `reasons` (a mode's own, e.g. the API's for fleet targets). */
  readonly reasonsFor?: (cfg: any) => readonly Reason[];
  /** The kind's own fields of a probe definition (common fields are added by the loader). */
  readonly schema: S;
  /**
   * Fields of this kind that may come from the file's `platform` block (shared endpoints and
   * credentials such as `sshProxy`, `user`, `token`), so one block serves every probe of a file.
   */
  readonly platformFields?: readonly string[];
  /** Default interval/timeout when the probe and the defaults block say nothing (slow kinds differ). */
  readonly defaults?: { intervalMs?: number; timeoutMs?: number };
  /**
   * Rules across fields, checked at load after the schema (the loader merges only the schema's
   * shape, so object-level refinements would be lost). Each problem names the field it is about.
   */
  check?(cfg: z.output<S>): { field: string; message: string; unresolved?: boolean }[];
  /**
   * Other probes whose latest results this probe reads through ctx.companion(). The loader checks
   * that each exists, is not the probe itself, is scheduled (not held) and reads no companions itself.
   */
  companions?(cfg: z.output<S>): { field: string; probe: string }[];
  /** Resolves = pass, throws = fail. Must close everything it opened on every path. */
  run(ctx: ProbeContext<P>, cfg: z.output<S>, spec: ProbeSpec<z.output<S>>): Promise<void>;
  /**
   * Long-lived mode. When `holds(cfg)` is true the daemon does not schedule `run`: it starts
   * `hold` once and lets it run until the probe is removed or changed by a reload, or the daemon
   * stops (h.signal aborts). `fleetprobe run` always does one ordinary `run`.
   */
  holds?(cfg: z.output<S>): boolean;
  hold?(h: HoldContext<P>, cfg: z.output<S>, spec: ProbeSpec<z.output<S>>): Promise<void>;
}

/**
 * What a held probe gets from the daemon. Everything it reports goes through the same path as a
 * scheduled run's result (metrics, /probes, the log), so a held probe's `probe_success` is 0 while
 * it is down and its failures carry a reason and phase like any other.
 */
export interface HoldContext<P extends string = string> {
  /** Aborted when the probe stops being held (reload, removal, shutdown). */
  readonly signal: AbortSignal;
  readonly log: Logger;
  /**
   * One attempt to open the held connection: an ordinary run (the probe's timeout, phases,
   * classification), recorded as such. Resolves with fn's value on a pass, undefined otherwise.
   * runProbe closes whatever is tied to ctx.signal when the attempt ends, even on a pass: a
   * connection meant to outlive the attempt must be tied to `h.signal` instead.
   */
  attempt<T>(fn: (ctx: ProbeContext<P>) => Promise<T>): Promise<T | undefined>;
  /** The held connection broke after it was up: recorded as a failed run in `phase`. */
  interrupted(err: unknown, info: { phase: P; durationSeconds: number; observations?: Record<string, number> }): void;
  /** Feeds the kind's metrics (KindMetric observations) without counting a run. */
  observe(observations: Partial<Record<ObservationKey, number>>): void;
  /**
   * A check on the held connection passed just now (a keepalive): the probe's last-run and
   * last-success times move to now without counting a run. Alerts that ask whether a probe still
   * runs (ProbeNotRunning: its last run against its interval) then see a held probe as running.
   */
  checked(): void;
}

/** A kind, its phase names inferred from `phases` (see ProbeContext). */
export function defineKind<S extends z.ZodObject, const P extends string>(k: ProbeKind<S, P>): ProbeKind<S, P> {
  return k;
}
