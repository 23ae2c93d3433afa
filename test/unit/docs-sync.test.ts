import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REASON_DESCRIPTIONS } from '../../src/core/reasons.js';
import { KINDS } from '../../src/kinds/index.js';
import { LAB_FAULTS } from '../../src/lab/faults.js';
import { Metrics } from '../../src/metrics/metrics.js';
import { ROOT } from '../helpers/cli.js';

const README = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');

/** The rows of the Markdown table between <!-- NAME:start --> and <!-- NAME:end -->, header removed. */
function table(name: string): string[][] {
  const m = new RegExp(`<!-- ${name}:start -->\\n([\\s\\S]*?)<!-- ${name}:end -->`).exec(README);
  if (!m) throw new Error(`README has no ${name} table`);
  return m[1]
    .trim()
    .split('\n')
    .slice(2)
    .map((row) =>
      row
        .split('|')
        .slice(1, -1)
        .map((c) => c.trim().replace(/^`|`$/g, '')),
    );
}

describe('README stays equal to the code', () => {
  it('failure reasons', () => {
    expect(Object.fromEntries(table('reasons').map(([r, d]) => [r, d]))).toEqual(REASON_DESCRIPTIONS);
  });

  it('metric names and types', async () => {
    const metrics = new Metrics('test', KINDS);
    const ours = (await metrics.registry.getMetricsAsJSON())
      .filter((m) => m.name.startsWith('probe_') || m.name.startsWith('fleetprobe_'))
      .map((m) => [m.name, String(m.type)]);
    const documented = table('metrics').map(([name, type]) => [name, type]);
    expect(documented.sort()).toEqual(ours.sort());
  });

  it('lab faults', () => {
    expect(Object.fromEntries(table('faults').map(([f, d]) => [f, d]))).toEqual(LAB_FAULTS);
  });
});
