import fs from 'node:fs';
import path from 'node:path';
import { withMatrix } from '../test/reliability/matrix-docs.js';

/**
 * `npm run docs:matrix`: rewrites the README's fault matrix (between the fault-matrix markers) from
 * the test table in test/reliability/matrix-cases.ts. Run from the package root (npm does).
 */
const file = path.resolve('README.md');
const before = fs.readFileSync(file, 'utf8');
const after = withMatrix(before);
if (after === before) {
  process.stdout.write('README.md: fault matrix already up to date\n');
} else {
  fs.writeFileSync(file, after);
  process.stdout.write('README.md: fault matrix rewritten\n');
}
