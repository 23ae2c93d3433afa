import pc from 'picocolors';
import type { ProgressEvent } from '../core/kind.js';

/**
 * What `fleetprobe run` shows while a run goes on (a build streams its log for minutes): the
 * target's output lines as they come, and on a terminal a status line under them with a spinner,
 * the current phase, the time so far and the latest transient line (a progress bar the builder
 * redraws). Not a terminal: plain lines only, nothing redrawn, so a log file or CI output reads clean.
 */

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
const TICK_MS = 100;

export interface ProgressOutput {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export class LiveProgress {
  private phase: string | null = null;
  private status = '';
  private frame = 0;
  private drawn = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly started = performance.now();
  private readonly c: ReturnType<typeof pc.createColors>;

  constructor(
    private readonly out: ProgressOutput,
    private readonly tty = Boolean(out.isTTY),
  ) {
    this.c = pc.createColors(tty);
    if (tty) {
      this.timer = setInterval(() => this.draw(), TICK_MS);
      this.timer.unref();
    }
  }

  /** The RunOptions.onProgress callback. */
  readonly onProgress = (e: ProgressEvent): void => {
    if (e.phase) this.phase = e.phase;
    if (e.line === undefined) return this.draw();
    if (e.transient) {
      this.status = e.line;
      return this.draw();
    }
    this.status = '';
    if (!this.tty) {
      this.out.write(e.line + '\n');
      return;
    }
    this.clear();
    this.out.write(this.c.dim('│ ') + e.line + '\n');
    this.draw();
  };

  /** Removes the status line and stops redrawing; the caller prints the timeline next. */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.clear();
  }

  private clear(): void {
    if (this.drawn) this.out.write('\r\u001b[K');
    this.drawn = false;
  }

  private draw(): void {
    if (!this.tty || !this.timer) return;
    const elapsed = ((performance.now() - this.started) / 1000).toFixed(1);
    const head = `${FRAMES[this.frame++ % FRAMES.length]} ${this.phase ?? 'starting'} ${elapsed}s`;
    const width = Math.max(20, (this.out.columns ?? 80) - 1);
    const room = width - head.length - 2;
    const tail = this.status && room > 3 ? '  ' + (this.status.length > room ? this.status.slice(0, room - 1) + '…' : this.status) : '';
    this.out.write('\r\u001b[K' + this.c.cyan(head) + this.c.dim(tail));
    this.drawn = true;
  }
}
