import { describe, expect, it } from 'vitest';
import { REASON_DESCRIPTIONS } from '../../src/core/reasons.js';
import { KIND_NAMES, KINDS, PLATFORM_FIELDS } from '../../src/kinds/index.js';
import { LAB_FAULTS } from '../../src/lab/faults.js';
import { Metrics } from '../../src/metrics/metrics.js';
import { docTable, marked, readDoc } from '../helpers/doc-tables.js';
import { MATRIX_DOC } from '../reliability/matrix-docs.js';

/**
 * The tables of the README and docs/ stay equal to the code: each is written once, between
 * <!-- NAME:start --> and <!-- NAME:end --> markers in the page that holds it.
 */

const read = readDoc;
const table = docTable;

const sorted = (names: Iterable<string>) => [...names].sort();

describe('the docs stay equal to the code', () => {
  it('failure reasons (README.md)', () => {
    expect(Object.fromEntries(table('README.md', 'reasons').map(([r, d]) => [r, d]))).toEqual(REASON_DESCRIPTIONS);
  });

  it('metric names and types (docs/metrics.md)', async () => {
    const metrics = new Metrics('test', KINDS);
    const ours = (await metrics.registry.getMetricsAsJSON())
      .filter((m) => m.name.startsWith('probe_') || m.name.startsWith('fleetprobe_'))
      .map((m) => [m.name, String(m.type)]);
    const documented = table('docs/metrics.md', 'metrics').map(([name, type]) => [name, type]);
    expect(documented.sort()).toEqual(ours.sort());
  });

  it('lab faults (docs/lab.md)', () => {
    expect(Object.fromEntries(table('docs/lab.md', 'faults').map(([f, d]) => [f, d]))).toEqual(LAB_FAULTS);
  });

  it('every kind has a section in docs/configuration.md, and no section names a kind that is gone', () => {
    const sections = [...read('docs/configuration.md').matchAll(/^## Kind `([^`]+)`$/gm)].map((m) => m[1]);
    expect(sorted(sections)).toEqual(sorted(KIND_NAMES));
  });

  it('the README has an example probe of every kind', () => {
    const examples = [...read('README.md').matchAll(/^\s+kind: ([\w-]+)\s*(?:#.*)?$/gm)].map((m) => m[1]);
    expect(sorted(new Set(examples))).toEqual(sorted(KIND_NAMES));
  });

  it('the platform fields (docs/configuration.md)', () => {
    const documented = [...marked('docs/configuration.md', 'platform-fields').matchAll(/`([^`]+)`/g)].map((m) => m[1]);
    expect(documented).toEqual(PLATFORM_FIELDS);
  });

  it(`the fault matrix (${MATRIX_DOC}) covers every kind`, () => {
    // That the matrix is exactly the test table is test/reliability/fault-matrix.test.ts's check.
    const kinds = table(MATRIX_DOC, 'fault-matrix').map(([kind]) => kind);
    expect(sorted(new Set(kinds))).toEqual(sorted(KIND_NAMES));
  });
});
