import { MATRIX_CASES, MATRIX_TIMEOUT_MS, outcome, type MatrixCase } from './matrix-cases.js';

/**
 * The fault matrix of docs/reliability.md, generated from the test table (matrix-cases.ts).
 * `npm run docs:matrix` writes it; test/reliability/fault-matrix.test.ts fails when the page holds
 * anything else.
 */

/** The page that holds the matrix, relative to the package root. */
export const MATRIX_DOC = 'docs/reliability.md';

export const START = '<!-- fault-matrix:start -->';
export const END = '<!-- fault-matrix:end -->';

const cell = (s: string) => s.replace(/\|/g, '\\|');

export function renderMatrix(cases: MatrixCase[] = MATRIX_CASES): string {
  const rows = cases.map((c) => `| \`${c.kind}\` | ${cell(c.fault)} | ${cell(c.how)} | ${outcome(c.expect)} |`);
  return [
    `Every row is a test (run timeout ${MATRIX_TIMEOUT_MS} ms); "pass" rows are degraded paths that still work and must never fail.`,
    '',
    '| kind | fault | injected by | outcome |',
    '| --- | --- | --- | --- |',
    ...rows,
  ].join('\n');
}

/** The page with its matrix section replaced; throws when the markers are missing. */
export function withMatrix(page: string, table = renderMatrix()): string {
  const start = page.indexOf(START);
  const end = page.indexOf(END);
  if (start < 0 || end < start) throw new Error(`${MATRIX_DOC} has no ${START} … ${END} section`);
  return page.slice(0, start + START.length) + '\n' + table + '\n' + page.slice(end);
}
