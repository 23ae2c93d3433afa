import { describe, expect, it } from 'vitest';
import { Assembler, type Rendered } from '../../src/metrics/probe-render.js';

/** A probe as the assembler sees it, with one value that its lines of every family carry. */
interface P extends Rendered {
  name: string;
  value: number;
}
const FAMILIES = ['a', 'b', 'c'].map((f) => ({ name: f, head: Buffer.from(`# TYPE ${f} gauge\n`) }));
const linesOf = (p: P) => FAMILIES.map((f) => Buffer.from(`${f.name}{probe="${p.name}"} ${p.value}\n`));
const expected = (probes: P[]) => FAMILIES.map((f, i) => f.head.toString() + probes.map((p) => linesOf(p)[i].toString()).join('')).join('\n');

function render(a: Assembler, probes: P[], format: (p: P) => Uint8Array[] = linesOf): string {
  const steps = a.steps('', FAMILIES, probes, (e) => {
    const lines = format(e as P);
    e.size = lines.reduce((n, l) => n + l.length, 0);
    return lines;
  });
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value.toString();
  }
}

function change(p: P, value: number): void {
  Assembler.changed(p);
  p.value = value;
}

describe('Assembler', () => {
  const probes = (): P[] => Array.from({ length: 10 }, (_, i) => ({ name: `p${i}`, value: i, idx: 0, gen: 0, version: 0 }));

  it('copies unchanged probes from the last exposition and the changed ones from their new lines', () => {
    const a = new Assembler(0);
    const ps = probes();
    expect(render(a, ps)).toBe(expected(ps));
    change(ps[3], 1234567);
    change(ps[9], 5);
    let formatted = 0;
    expect(render(a, ps, (p) => (formatted++, linesOf(p)))).toBe(expected(ps));
    expect(formatted).toBe(2);
  });

  it('a render that fails half-way leaves the next one copying nothing from a stale place', () => {
    const a = new Assembler(0);
    const ps = probes();
    render(a, ps);
    // p3 grows, and its lines of the last family are missing: the render throws at that family,
    // after it moved every probe's place of the first two into a buffer nobody will see.
    change(ps[3], 1234567);
    expect(() => render(a, ps, (p) => linesOf(p).slice(0, p === ps[3] ? 2 : 3))).toThrow();
    expect(render(a, ps)).toBe(expected(ps));
  });
});
