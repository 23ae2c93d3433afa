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
  /** Its place in the last render's order (where the render's table has its lines' places). */
  idx: number;
  /** The render `idx` refers to, 0 when its values changed since (its lines must come from `lines`). */
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
  /**
   * Where each probe's lines of each family are in `last`, family by family (for family i, probe
   * k: start at 2(i n + k), length after it): one table that the family loops walk in order,
   * rather than a small array on each probe, which cost a cache miss per probe and family.
   */
  private lastPos = new Int32Array(0);
  private lastN = 0;
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
  *steps(prefix: string, families: readonly Family[], entries: readonly Rendered[], format: (e: Rendered) => Uint8Array[]): Generator<void, Buffer> {
    const last = this.last;
    const lastGen = this.lastGen;
    // Positions are rewritten as this goes: a render that never finishes (an error) must leave
    // the next one copying nothing from `last`.
    this.lastGen = -1;
    const lastPos = this.lastPos;
    const lastN = this.lastN;
    const F = families.length;
    const n = entries.length;
    // Where each probe's unchanged lines are in `last` (its index there), or -1: from `fresh`.
    const src = new Int32Array(n);
    const fresh: (Uint8Array[] | undefined)[] = new Array(n);
    const versions = new Int32Array(n);
    let size = Buffer.byteLength(prefix) + families.reduce((a, f) => a + f.head.length + 1, 0);
    let slice = performance.now();
    for (let k = 0; k < n; k += CHUNK) {
      size += snapshot(entries, k, Math.min(n, k + CHUNK), last ? lastGen : NaN, src, fresh, versions, format);
      if (performance.now() - slice >= this.sliceMs) {
        yield;
        slice = performance.now();
      }
    }
    // A recycled buffer saves the page faults of a fresh one of tens of MB (a third of the copy's cost).
    let out = this.spare;
    this.spare = undefined;
    // Room to grow, so a recycled buffer serves the next renders too.
    if (!out || out.length < size) out = Buffer.allocUnsafeSlow(Math.ceil(size * 1.05));
    const pos = new Int32Array(2 * F * n);
    const p: Pass = { src, fresh, last, lastPos, lastN, out, pos, n };
    const c: Cursor = { o: out.write(prefix, 0, 'utf8'), from: -1, to: -1, at: 0 };
    for (let i = 0; i < F; i++) {
      if (i > 0) out[c.o++] = 10;
      out.set(families[i].head, c.o);
      c.o += families[i].head.length;
      c.from = c.to = -1;
      for (let k = 0; k < n; k += CHUNK) {
        // A turn for the event loop mid-family too (a family of 11,500 probes is 2-25 ms): the
        // pending run stays pending, its source `last` does not change while a render runs.
        copyChunk(p, c, i, k, Math.min(n, k + CHUNK));
        if (performance.now() - slice >= this.sliceMs) {
          yield;
          slice = performance.now();
        }
      }
      if (c.to > c.from) last!.copy(out, c.at, c.from, c.to);
    }
    const o = c.o;
    const gen = ++this.gen;
    for (let k = 0; k < entries.length; k++) {
      const e = entries[k];
      // Changed while this ran: its place in `out` holds its old lines; it stays stale.
      if (e.version !== versions[k]) continue;
      e.gen = gen;
      e.idx = k;
      e.lines = undefined;
    }
    const old = this.last;
    const oldReturned = this.lastReturned;
    this.last = out;
    this.lastPos = pos;
    this.lastN = n;
    this.lastGen = gen;
    this.lastReturned = false;
    if (old && oldReturned && old !== out) this.offer(old);
    this.issued.set(out.buffer, out);
    return out.subarray(0, o);
  }
}

/** What the family loops of one render read and fill. */
interface Pass {
  /** Each probe's index in the last render, or -1: its lines are in `fresh`. */
  src: Int32Array;
  fresh: readonly (Uint8Array[] | undefined)[];
  last: Buffer | undefined;
  /** The last render's places (family-major, see Assembler.lastPos) over its `lastN` probes. */
  lastPos: Int32Array;
  lastN: number;
  out: Buffer;
  /** This render's places, filled as it goes, over its `n` probes. */
  pos: Int32Array;
  n: number;
}

/** Where a render writes, and the run of unchanged probes waiting to be copied: last[from, to) to out at `at`. */
interface Cursor {
  o: number;
  from: number;
  to: number;
  at: number;
}

// The two loops below are plain functions called chunk by chunk, not the generator's own loops:
// V8 optimizes a function called hundreds of times a render at once, but a generator only after
// several renders (its loops are not optimized while it runs), which made the first minute's
// renders 2-3 times as slow.

/**
 * Entries [k0, k1) as this render takes them: their version, and where their lines come from:
 * their place in the render of generation `lastGen` (NaN: there is none) if unchanged since, else
 * their lines. Returns their size in bytes.
 */
function snapshot(
  entries: readonly Rendered[],
  k0: number,
  k1: number,
  lastGen: number,
  src: Int32Array,
  fresh: (Uint8Array[] | undefined)[],
  versions: Int32Array,
  format: (e: Rendered) => Uint8Array[],
): number {
  let size = 0;
  for (let k = k0; k < k1; k++) {
    const e = entries[k];
    versions[k] = e.version;
    if (e.gen === lastGen) src[k] = e.idx;
    else {
      src[k] = -1;
      fresh[k] = e.lines ?? format(e);
    }
    size += e.size!;
  }
  return size;
}

/**
 * Family `i` of entries [k0, k1) into `out` at the cursor, their places noted in `pos`: an
 * unchanged probe's lines extend the run waiting to be copied from `last`, a changed probe's are
 * copied from its lines.
 */
function copyChunk(p: Pass, c: Cursor, i: number, k0: number, k1: number): void {
  const { src, fresh, last, lastPos, out, pos } = p;
  const lastBase = 2 * i * p.lastN;
  const base = 2 * i * p.n;
  let { o, from: runFrom, to, at } = c;
  for (let k = k0; k < k1; k++) {
    const j = src[k];
    const at2 = base + 2 * k;
    if (j >= 0) {
      const start = lastPos[lastBase + 2 * j];
      const len = lastPos[lastBase + 2 * j + 1];
      pos[at2] = o;
      pos[at2 + 1] = len;
      if (len === 0) continue;
      if (start !== to) {
        if (to > runFrom) last!.copy(out, at, runFrom, to);
        runFrom = to = start;
        at = o;
      }
      to += len;
      o += len;
    } else {
      const part = fresh[k]![i];
      pos[at2] = o;
      pos[at2 + 1] = part.length;
      if (part.length === 0) continue;
      if (to > runFrom) last!.copy(out, at, runFrom, to);
      runFrom = to = -1;
      out.set(part, o);
      o += part.length;
    }
  }
  c.o = o;
  c.from = runFrom;
  c.to = to;
  c.at = at;
}
