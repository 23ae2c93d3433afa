import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../src/core/errors.js';
import { ROOT } from '../helpers/cli.js';

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : [];
  });
}

describe('error codes', () => {
  it('every FP_* code in src is in the one catalogue (src/core/errors.ts), and every catalogued code is used', () => {
    const used = new Map<string, string>();
    for (const file of sources(path.join(ROOT, 'src'))) {
      for (const m of fs.readFileSync(file, 'utf8').matchAll(/['"](FP_[A-Z_]+)['"]/g)) used.set(m[1], path.relative(ROOT, file));
    }
    const catalogue = Object.keys(ERROR_CODES);
    const missing = [...used].filter(([code]) => !catalogue.includes(code)).map(([code, file]) => `${code} (${file})`);
    expect(missing).toEqual([]);
    expect(catalogue.filter((code) => !used.has(code))).toEqual([]);
  });
});
