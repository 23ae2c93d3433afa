import type { Logger } from 'pino';
import { classifyError, describeError } from './classify.js';
import { excerpt } from './excerpt.js';
import type { CompanionStatus, ProbeContext, ProbeKind, ProbeSpec, ProbeState, ProgressEvent } from './kind.js';
import { redact } from './redact.js';
import type { ErrorCode } from './errors.js';
import type { RunResult, TargetResult } from './result.js';

const MAX_MESSAGE_CHARS = 512;
/** How long a run's teardown tasks (ctx.teardown) may hold the result back after the run ended. */
export const TEARDOWN_GRACE_MS = 10_000;
const MAX_PROGRESS_CHARS = 2000;
/**
 * The tail of a run's output kept with its result (for the run history): the last lines, each cut
 * shorter than a live line, so a failure's record stays a few KiB however much a builder wrote.
 */
export const OUTPUT_TAIL_LINES = 20;
export const OUTPUT_TAIL_LINE_CHARS = 300;

export class RunTimeoutError extends Error {
  override name = 'TimeoutError';
  readonly code: ErrorCode = 'FP_RUN_TIMEOUT';
  constructor(timeoutMs: number) {
    super(`run deadline of ${timeoutMs}ms exceeded`);
  }
}

export class ShutdownError extends Error {
  override name = 'AbortError';
  readonly code: ErrorCode = 'FP_SHUTDOWN';
  constructor() {
    super('aborted by shutdown');
  }
}

const RUN_ENDED = new ShutdownError();

export interface RunOptions {
  /** Aborts the run without counting it as a failure (daemon shutdown, Ctrl-C). */
  shutdown?: AbortSignal;
  log: Logger;
  /** Live output of the run (`fleetprobe run`); without it progress lines are logged at debug. */
  onProgress?: (event: ProgressEvent) => void;
  /** The latest result of another probe, for kinds that read one (ProbeKind.companions). */
  companion?: (name: string) => CompanionStatus | undefined;
  /** This probe's state between runs (ProbeContext.state); without it each run starts afresh. */
  state?: ProbeState;
  /** A single run from the command line (ProbeContext.oneShot). */
  oneShot?: boolean;
}

/**
 * A target's output line made safe for a terminal and a log: secrets redacted, ANSI escapes and
 * other control characters removed (a builder colours its log; a hostile one could move the cursor).
 */
export function cleanProgressLine(text: string): string {
  const plain = text
    .replace(/\u001b\[[0-?]*[ -/]*[@-~]/g, '')
    .replace(/\u001b\][^\u0007\u001b]*(\u0007|\u001b\\)?/g, '')
    .replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029]/g, '')
    .replace(/\t/g, '  ')
    .trimEnd();
  return excerpt(plain, { max: MAX_PROGRESS_CHARS, ellipsisWithin: true, redact: true });
}

export function boundMessage(text: string): string {
  // Every line terminator counts (a lone \r rewrites a terminal line; U+2028/9 break log viewers).
  const oneLine = redact(text)
    .replace(/\s*[\n\r\v\f\u0085\u2028\u2029]\s*/g, ' | ')
    .trim();
  // excerpt never ends on the first half of a surrogate pair (a lone half is not valid UTF-16/JSON-safe text).
  return excerpt(oneLine, { max: MAX_MESSAGE_CHARS, ellipsisWithin: true });
}

/**
 * Runs one probe once. The scheduler and `fleetprobe run` both call this, so an engineer's ad-hoc
 * run is exactly what the daemon does. It never throws: every outcome is a RunResult.
 *
 * The kind's promise is raced against the deadline, so a kind that ignores its signal still cannot
 * hold a run past its timeout; the kind's own teardown then finishes in the background.
 *
 * long: the run's state (phase clock, deadline, observations, output, teardowns) is shared by the context's closures and the result; split, every piece would take it as a parameter.
 */
export async function runProbe(spec: ProbeSpec, kind: ProbeKind, opts: RunOptions): Promise<RunResult> {
  const startedAt = Date.now();
  const t0 = performance.now();
  const deadline = startedAt + spec.timeoutMs;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new RunTimeoutError(spec.timeoutMs)), spec.timeoutMs);
  const onShutdown = () => controller.abort(new ShutdownError());
  if (opts.shutdown?.aborted) onShutdown();
  else opts.shutdown?.addEventListener('abort', onShutdown, { once: true });

  const phases: Record<string, number> = {};
  const observations: Record<string, number | string> = {};
  const teardowns: Promise<unknown>[] = [];
  const output: string[] = [];
  let targets: TargetResult[] | undefined;
  const emit = (event: ProgressEvent) => {
    try {
      opts.onProgress?.(event);
    } catch {
      /* a broken renderer must not fail the run */
    }
  };
  let current: { name: string; start: number } | null = null;
  // Phases run in sequence, so the failing phase is the last one entered.
  let lastEntered: string | null = null;
  // Made on first use: a pino child costs a few microseconds and most passing runs never log.
  let childLog: Logger | undefined;
  const runLog = () => (childLog ??= opts.log.child({ probe: spec.name, kind: spec.kind }));

  const ctx: ProbeContext = {
    signal: controller.signal,
    get log() {
      return runLog();
    },
    deadline,
    remainingMs: () => Math.max(0, deadline - Date.now()),
    async phase(name, fn) {
      controller.signal.throwIfAborted();
      if (!kind.phases.includes(name)) undeclaredPhase(kind, name, runLog());
      // A phase entered again (its time adds up) is not news to a live display.
      if (name !== lastEntered) emit({ phase: name });
      current = { name, start: performance.now() };
      lastEntered = name;
      phases[name] ??= 0;
      try {
        return await fn();
      } finally {
        // Only close the phase if the run has not already been ended by the deadline.
        if (current?.name === name) {
          phases[name] += (performance.now() - current.start) / 1000;
          current = null;
        }
      }
    },
    observe(key, value) {
      observations[key] = value;
    },
    progress(text, progressOpts) {
      // Each physical line on its own: a builder may send several in one message.
      for (const part of text.split(/\r?\n|\r/)) {
        const line = cleanProgressLine(part);
        if (!line) continue;
        if (!progressOpts?.transient) keepTail(output, line);
        if (opts.onProgress) emit({ phase: (current as { name: string } | null)?.name ?? lastEntered, line, transient: progressOpts?.transient });
        else if (!progressOpts?.transient) runLog().debug({ progress: line }, 'probe output');
      }
    },
    companion: (name) => opts.companion?.(name),
    state: <T extends object>(init: () => T): T => (opts.state ? (opts.state.value ??= init()) : init()) as T,
    oneShot: opts.oneShot ?? false,
    reportTargets(list) {
      targets = list.map((t) => ({ ...t, message: t.message === null ? null : boundMessage(t.message) }));
    },
    teardown(task) {
      // Its failure is the task's own business (it logs); it must never become the run's.
      teardowns.push(task.catch((err) => runLog().warn({ err }, 'a teardown step of the run failed')));
    },
  };

  // A flag, not `failure !== null`: a kind may reject with null or undefined, which is still a failure.
  let failed = false;
  let failure: unknown = null;
  try {
    const aborted = new Promise<never>((_, reject) => {
      const fail = () => reject(controller.signal.reason);
      if (controller.signal.aborted) fail();
      else controller.signal.addEventListener('abort', fail, { once: true });
    });
    const running = Promise.resolve().then(() => kind.run(ctx, spec.config as never, spec as never));
    // The kind's promise may still reject after the race is lost; that rejection is expected.
    running.catch(() => {});
    await Promise.race([running, aborted]);
  } catch (err) {
    failed = true;
    failure = controller.signal.aborted ? controller.signal.reason : err;
  } finally {
    clearTimeout(timer);
    opts.shutdown?.removeEventListener('abort', onShutdown);
    // A run ended mid-phase (error or deadline): charge the time so far to that phase.
    const open = current as { name: string; start: number } | null;
    if (open) {
      phases[open.name] += (performance.now() - open.start) / 1000;
      current = null;
    }
    // The run is over: whatever is still tied to its signal closes now. One shared reason, not a
    // new error (and stack trace) per run; nothing reads it once the result is settled.
    if (!controller.signal.aborted) controller.abort(RUN_ENDED);
  }

  const durationSeconds = (performance.now() - t0) / 1000;
  if (teardowns.length) await settleTeardowns(teardowns, runLog());
  const base = {
    name: spec.name,
    kind: spec.kind,
    durationSeconds,
    phases,
    startedAt,
    observations,
    labels: spec.labels,
    ...(output.length ? { output } : {}),
    ...(targets ? { targets } : {}),
  };
  if (!failed) {
    return { ...base, success: true, aborted: false, reason: null, phase: null, message: null };
  }
  const phase = lastEntered ?? kind.phases[0] ?? null;
  if (failure instanceof ShutdownError) {
    return { ...base, success: false, aborted: true, reason: null, phase, message: 'aborted by shutdown' };
  }
  const reason = failure instanceof RunTimeoutError ? 'timeout' : classifyError(failure);
  if (reason === 'internal') runLog().error({ err: failure }, 'probe kind threw an unclassified error (a bug in fleetprobe)');
  const message =
    failure instanceof RunTimeoutError
      ? `${phase ?? 'run'} did not finish within the run timeout of ${spec.timeoutMs}ms`
      : reason === 'resources'
        ? `fleetprobe itself is out of file descriptors (see process_open_fds and process_max_fds), not the target: ${describeError(failure)}`
        : describeError(failure);
  return { ...base, success: false, aborted: false, reason, phase, message: boundMessage(message) };
}

// Under test (vitest sets it) an undeclared phase fails the run, so a test of the kind fails too.
const STRICT_PHASES = process.env.FLEETPROBE_STRICT_PHASES === '1';
const warnedPhases = new Set<string>();

/**
 * A phase the kind did not declare has no series (they are made from `phases` up front): its time
 * and failures would go unseen. The types catch it in a kind's own code; this catches the rest
 * (a helper handed a phase name), once per kind and phase, as the bug in fleetprobe it is.
 */
function undeclaredPhase(kind: ProbeKind, name: string, log: Logger): void {
  const message = `phase "${name}" is not declared by kind ${kind.kind} (phases: ${kind.phases.join(', ')}): a bug in fleetprobe`;
  if (STRICT_PHASES) throw new Error(message);
  if (warnedPhases.has(`${kind.kind}/${name}`)) return;
  warnedPhases.add(`${kind.kind}/${name}`);
  log.warn({ phase: name }, message);
}

function keepTail(tail: string[], line: string): void {
  if (tail.length === OUTPUT_TAIL_LINES) tail.shift();
  tail.push(excerpt(line, { max: OUTPUT_TAIL_LINE_CHARS, ellipsisWithin: true }));
}

/** Waits for the run's teardown tasks, at most TEARDOWN_GRACE_MS; they may add more while running. */
async function settleTeardowns(tasks: Promise<unknown>[], log: Logger): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const grace = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), TEARDOWN_GRACE_MS)));
  try {
    for (let done = 0; done < tasks.length;) {
      const batch = tasks.slice(done);
      done = tasks.length;
      if ((await Promise.race([Promise.all(batch), grace])) === 'late') {
        log.warn({ graceMs: TEARDOWN_GRACE_MS }, 'teardown of the run did not finish within its grace period');
        return;
      }
    }
  } finally {
    clearTimeout(timer);
  }
}
