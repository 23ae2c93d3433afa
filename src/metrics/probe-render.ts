/**
 * Assembles the probes' part of /metrics from the last exposition: a probe whose values did not
 * change since the last render has its lines there already, so runs of such probes are copied
 * from the last buffer in one piece each, and only the probes that ran since are copied from their
 * freshly formatted lines. The text format wants each family's samples together, so a probe's
 * lines are spread over every family of the exposition: copying them probe by probe meant some
 * 130,000 small copies a scrape at 11,500 probes; runs of unchanged probes make it about a third
 * of that, and no probe keeps its own copy of its lines once they are in the last exposition.
 */

/** One probe as the assembler sees it. */
export interface Rendered {
  /** Its lines of each family, formatted since it last changed; dropped once in an exposition. */
  lines?: Uint8Array[];
  /** Their bytes in all (still right once `lines` is dropped: they are unchanged). */
  size?: number;
  /**
   * Where its lines of each family are in the last exposition: start and length, family by family.
   * A plain array of small integers: a typed array this size would be an ArrayBuffer of its own per probe.
   */
  pos?: number[];
  /** The render `pos` refers to, 0 when its values changed since (its lines must come from `lines`). */
  gen: number;
  /** Counts changes, so a render knows whether one came while it ran. */
  version: number;
}

export interface Family {
  head: Buffer;
}

/** Probes gone through between two looks at the clock. */
const CHUNK = 500;
/**
 * Work between two turns given to the event loop: runs due meanwhile start at most this late. A
 * turn given away is not only the yield's cost but whatever else then runs (runs completing and
 * starting), all of it inside the render's time, so turns are given by the clock, not every chunk.
 */
const SLICE_MS = 8;

export class Assembler {
  /** `sliceMs`: work between two turns given to the event loop (tests give 0: a turn every chunk). */
  constructor(private readonly sliceMs = SLICE_MS) {}

  /** The last exposition made, which the next one copies from; never written while it is the last. */
  private last?: Buffer;
  private lastGen = 0;
  private gen = 0;
  /** The last exposition was handed back (recycle): once another is the last, it may be filled again. */
  private lastReturned = false;
  private spare?: Buffer;
  /** The buffers renders returned views of, by their memory (only these may be recycled). */
  private issued = new WeakMap<ArrayBufferLike, Buffer>();

  /** A probe's values changed: its lines in the last exposition are stale. */
  static changed(e: Rendered): void {
    e.lines = undefined;
    e.gen = 0;
    e.version++;
  }

  /** Gives back a buffer a render returned once nothing reads it any more, for a later render to fill. */
  recycle(body: Buffer): void {
    const whole = this.issued.get(body.buffer);
    if (!whole) return;
    this.issued.delete(body.buffer);
    if (whole === this.last) this.lastReturned = true;
    else this.offer(whole);
  }

  private offer(whole: Buffer): void {
    if (!this.spare || whole.length > this.spare.length) this.spare = whole;
  }

  /**
   * `prefix`, then every family's head and every probe's lines of it, families separated by a
   * blank line. Yields every few hundred probes, by the clock. `format` gives a probe's lines when
   * it changed since the last render. Each probe is taken as it is when the first pass reaches it
   * (the first few hundred when the render begins, the others a turn or more later): a change after
   * that is in the next render, so all of a probe's samples come from one moment. Renders must not
   * overlap: each reads the last one's buffer.
   */
  // long: two passes (snapshot and sizes, then family by family) that share their running state.
  *steps(prefix: string, families: readonly Family[], entries: readonly Rendered[], format: (e: Rendered) => Uint8Array[]): Generator<void, Buffer> {
    const last = this.last;
    const lastGen = this.lastGen;
    // Positions are rewritten as this goes: a render that never finishes (an error) must leave
    // the next one copying nothing from `last`.
    this.lastGen = -1;
    const F = families.length;
    const fresh: (Uint8Array[] | undefined)[] = new Array(entries.length);
    const versions = new Int32Array(entries.length);
    let size = Buffer.byteLength(prefix) + families.reduce((a, f) => a + f.head.length + 1, 0);
    let slice = performance.now();
    for (let k = 0; k < entries.length; k++) {
      const e = entries[k];
      versions[k] = e.version;
      if (!(last && e.gen === lastGen && e.pos)) fresh[k] = e.lines ?? format(e);
      size += e.size!;
      if (k % CHUNK === CHUNK - 1 && performance.now() - slice >= this.sliceMs) {
        yield;
        slice = performance.now();
      }
    }
    // A recycled buffer saves the page faults of a fresh one of tens of MB (a third of the copy's cost).
    let out = this.spare;
    this.spare = undefined;
    // Room to grow, so a recycled buffer serves the next renders too.
    if (!out || out.length < size) out = Buffer.allocUnsafeSlow(Math.ceil(size * 1.05));
    let o = out.write(prefix, 0, 'utf8');
    for (let i = 0; i < F; i++) {
      if (i > 0) out[o++] = 10;
      out.set(families[i].head, o);
      o += families[i].head.length;
      // A run of unchanged probes waiting to be copied: last[from, to) goes to out at `at`.
      let from = -1;
      let to = -1;
      let at = 0;
      for (let k = 0; k < entries.length; k++) {
        // A turn for the event loop mid-family too (a family of 11,500 probes is 2-25 ms): the
        // pending run stays pending, its source `last` does not change while a render runs.
        if (k % CHUNK === 0 && k > 0 && performance.now() - slice >= this.sliceMs) {
          yield;
          slice = performance.now();
        }
        const e = entries[k];
        const part = fresh[k];
        const pos = (e.pos ??= new Array<number>(2 * F).fill(0));
        if (part === undefined) {
          const start = pos[2 * i];
          const len = pos[2 * i + 1];
          pos[2 * i] = o;
          if (len === 0) continue;
          if (start !== to) {
            if (to > from) last!.copy(out, at, from, to);
            from = to = start;
            at = o;
          }
          to += len;
          o += len;
        } else {
          const p = part[i];
          pos[2 * i] = o;
          pos[2 * i + 1] = p.length;
          if (p.length === 0) continue;
          if (to > from) last!.copy(out, at, from, to);
          from = to = -1;
          out.set(p, o);
          o += p.length;
        }
      }
      if (to > from) last!.copy(out, at, from, to);
      if (performance.now() - slice >= this.sliceMs) {
        yield;
        slice = performance.now();
      }
    }
    const gen = ++this.gen;
    for (let k = 0; k < entries.length; k++) {
      const e = entries[k];
      // Changed while this ran: its place in `out` holds its old lines; it stays stale.
      if (e.version !== versions[k]) continue;
      e.gen = gen;
      e.lines = undefined;
    }
    const old = this.last;
    const oldReturned = this.lastReturned;
    this.last = out;
    this.lastGen = gen;
    this.lastReturned = false;
    if (old && oldReturned && old !== out) this.offer(old);
    this.issued.set(out.buffer, out);
    return out.subarray(0, o);
  }
}
