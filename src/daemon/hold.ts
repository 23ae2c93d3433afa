import type { Logger } from 'pino';
import { classifyError, describeError } from '../core/classify.js';
import type { HoldContext, ProbeContext, ProbeKind, ProbeSpec, ProbeState } from '../core/kind.js';
import type { RunResult } from '../core/result.js';
import { boundMessage, runProbe } from '../core/run.js';

/**
 * Held probes (a tunnel kept open for hours) do not fit the scheduler's one-shot runs: each gets
 * one long-lived task instead, started here, restarted when a reload changes it, stopped when it is
 * removed or the daemon stops. Their results go through the same `record` as scheduled runs.
 */

export interface HeldProbesOptions {
  kinds: Record<string, ProbeKind>;
  log: Logger;
  /** Where results go (metrics, status store, log): the scheduler's path. */
  record(result: RunResult): void;
  /** Kind metrics outside a run. */
  observe(spec: ProbeSpec, observations: Readonly<Record<string, number | string | undefined>>): void;
  /** A passed check on the held connection at `at` (ms since the epoch): not a run, but the probe runs. */
  checked(spec: ProbeSpec, at: number): void;
}

interface Task {
  digest: string;
  controller: AbortController;
  done: Promise<void>;
}

/** Whether this probe is held rather than scheduled. */
export function isHeld(spec: ProbeSpec, kinds: Record<string, ProbeKind>): boolean {
  const kind = kinds[spec.kind];
  return Boolean(kind?.hold && kind.holds?.(spec.config as never));
}

export class HeldProbes {
  private tasks = new Map<string, Task>();
  private stopped = false;

  constructor(private readonly opts: HeldProbesOptions) {}

  /** Applies the held probes of a (re)loaded configuration: unchanged ones keep their connection. */
  update(specs: ProbeSpec[]): void {
    if (this.stopped) return;
    const next = new Map(specs.map((s) => [s.name, s]));
    for (const [name, task] of this.tasks) {
      if (next.get(name)?.digest !== task.digest) {
        task.controller.abort();
        this.tasks.delete(name);
      }
    }
    for (const spec of specs) if (!this.tasks.has(spec.name)) this.start(spec);
  }

  private start(spec: ProbeSpec): void {
    const kind = this.opts.kinds[spec.kind];
    const controller = new AbortController();
    const log = this.opts.log.child({ probe: spec.name, kind: spec.kind, held: true });
    const { signal } = controller;
    const state: ProbeState = {};
    const h: HoldContext = {
      signal,
      log,
      attempt: async <T>(fn: (ctx: ProbeContext) => Promise<T>) => {
        let value: T | undefined;
        const once: ProbeKind = { ...kind, run: async (ctx) => void (value = await fn(ctx)) };
        // The hold's attempts share one state (ProbeContext.state); a changed probe is a new task.
        const result = await runProbe(spec, once, { shutdown: signal, log: this.opts.log, state });
        // A stop while connecting is not a result of the probe.
        if (!result.aborted) this.opts.record(result);
        return result.success ? value : undefined;
      },
      interrupted: (err, info) => {
        if (signal.aborted) return;
        const reason = classifyError(err);
        this.opts.record({
          name: spec.name,
          kind: spec.kind,
          success: false,
          aborted: false,
          reason,
          phase: info.phase,
          message: boundMessage(describeError(err)),
          durationSeconds: info.durationSeconds,
          phases: { [info.phase]: info.durationSeconds },
          startedAt: Date.now() - info.durationSeconds * 1000,
          observations: info.observations ?? {},
          labels: spec.labels,
        });
      },
      observe: (observations) => {
        if (!signal.aborted) this.opts.observe(spec, observations);
      },
      checked: () => {
        if (!signal.aborted) this.opts.checked(spec, Date.now());
      },
    };
    const done = Promise.resolve()
      .then(() => kind.hold!(h, spec.config as never, spec as never))
      .catch((err) => log.error({ err }, 'held probe crashed (a bug in fleetprobe)'));
    this.tasks.set(spec.name, { digest: spec.digest, controller, done });
    log.info(`holding probe ${spec.name}`);
  }

  /** Stops every held probe; resolves true when all have closed within `graceMs`. */
  async stop(graceMs: number): Promise<boolean> {
    this.stopped = true;
    const all = [...this.tasks.values()];
    this.tasks.clear();
    for (const t of all) t.controller.abort();
    if (all.length === 0) return true;
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), graceMs)));
    const ok = await Promise.race([Promise.allSettled(all.map((t) => t.done)).then(() => true), grace]);
    clearTimeout(timer);
    return ok;
  }
}
