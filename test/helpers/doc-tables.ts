import fs from 'node:fs';
import path from 'node:path';
import { ROOT } from './cli.js';

/**
 * The tables of the README and docs/ that tests keep equal to the code: each is written once,
 * between <!-- NAME:start --> and <!-- NAME:end --> markers in the page that holds it.
 */

export const readDoc = (file: string) => fs.readFileSync(path.join(ROOT, file), 'utf8');

/** What lies between <!-- NAME:start --> and <!-- NAME:end --> in `file`. */
export function marked(file: string, name: string): string {
  const m = new RegExp(`<!-- ${name}:start -->([\\s\\S]*?)<!-- ${name}:end -->`).exec(readDoc(file));
  if (!m) throw new Error(`${file} has no <!-- ${name}:start --> … <!-- ${name}:end --> section`);
  return m[1];
}

/** The rows of the Markdown table in `file` between the NAME markers, header removed, cells unquoted. */
export function docTable(file: string, name: string): string[][] {
  return marked(file, name)
    .split('\n')
    .filter((line) => line.startsWith('|'))
    .slice(2)
    .map((row) =>
      row
        .split('|')
        .slice(1, -1)
        .map((c) => c.trim().replace(/^`|`$/g, '')),
    );
}
