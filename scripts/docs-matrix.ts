import fs from 'node:fs';
import path from 'node:path';
import { MATRIX_DOC, withMatrix } from '../test/reliability/matrix-docs.js';

/**
 * `npm run docs:matrix`: rewrites the fault matrix of docs/reliability.md (between the fault-matrix
 * markers) from the test table in test/reliability/matrix-cases.ts. Run from the package root (npm does).
 */
const file = path.resolve(MATRIX_DOC);
const before = fs.readFileSync(file, 'utf8');
const after = withMatrix(before);
if (after === before) {
  process.stdout.write(`${MATRIX_DOC}: fault matrix already up to date\n`);
} else {
  fs.writeFileSync(file, after);
  process.stdout.write(`${MATRIX_DOC}: fault matrix rewritten\n`);
}
