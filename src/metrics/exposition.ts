/**
 * The Prometheus text format written from pre-encoded pieces: label escaping, sample values, and
 * the ByteWriter that appends exposition lines to one growing buffer (src/metrics/probe-series.ts
 * renders every probe's series with it).
 */

export function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}
export function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}
function num(v: number): string {
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

export function latin1(text: string): Uint8Array {
  return Buffer.from(text, 'latin1');
}
export function labelBytes(name: string, value: string): Uint8Array {
  return Buffer.from(`${name}="${escapeLabel(value)}"`, 'utf8');
}

/**
 * Appends exposition lines to one growing buffer from pre-encoded pieces: half a million lines
 * built as strings cost about four times as much (each line a new string, then a join and an encode).
 */
export class ByteWriter {
  private b: Buffer;
  private o = 0;
  constructor(size: number) {
    this.b = Buffer.allocUnsafe(Math.max(1024, Math.ceil(size * 1.1)));
  }
  private room(n: number): void {
    if (this.o + n <= this.b.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.b.length * 2, this.o + n));
    this.b.copy(bigger, 0, 0, this.o);
    this.b = bigger;
  }
  /** `NAME{` + labels + (`,` + extra) + `} ` + value + newline. */
  sample(nameOpen: Uint8Array, labels: Uint8Array, extra: Uint8Array | null, value: number): void {
    this.room(nameOpen.length + labels.length + (extra ? extra.length + 1 : 0) + 40);
    const b = this.b;
    let o = this.o;
    b.set(nameOpen, o);
    o += nameOpen.length;
    b.set(labels, o);
    o += labels.length;
    if (extra) {
      b[o++] = 44; // ,
      b.set(extra, o);
      o += extra.length;
    }
    b[o++] = 125; // }
    b[o++] = 32;
    if (value >= 0 && value < 1e15 && Math.floor(value) === value) {
      // Whole numbers (counters, bucket counts, 0/1 gauges) by hand, most significant digit first.
      let div = 1;
      while (div * 10 <= value) div *= 10;
      for (; div >= 1; div /= 10) {
        const d = Math.floor(value / div);
        b[o++] = 48 + d;
        value -= d * div;
      }
    } else {
      const s = num(value);
      for (let i = 0; i < s.length; i++) b[o++] = s.charCodeAt(i);
    }
    b[o++] = 10;
    this.o = o;
  }
  get length(): number {
    return this.o;
  }
  reset(): void {
    this.o = 0;
  }
  done(): Buffer {
    return this.b.subarray(0, this.o);
  }
}
