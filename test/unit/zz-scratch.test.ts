import fs from 'node:fs';
import path from 'node:path';
import { test } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { ConfigError, formatConfigIssue } from '../../src/core/errors.js';
test('scratch', () => {
  const dir = 'test/fixtures/config/invalid';
  const targets = [...fs.readdirSync(dir).map((f) => path.join(dir, f)), 'test/fixtures/config/dup', 'nope/none.yaml'];
  for (const t of targets) {
    try { loadConfig({ paths: [t] }); console.log(t, 'OK'); }
    catch (e) { if (e instanceof ConfigError) console.log(t + '\n  ' + e.issues.map(formatConfigIssue).join('\n  ')); else console.log(t, 'THROW', e); }
  }
});
