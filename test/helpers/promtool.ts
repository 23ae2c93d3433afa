import { spawnSync } from 'node:child_process';
import { expect } from 'vitest';
import { promtoolPath } from './cli.js';

const promtool = promtoolPath();

/**
 * `promtool check metrics` accepts the exposition text and has nothing to say about it: checked
 * wherever promtool is installed, and CI (CI=true) must have it.
 */
export function expectPromtoolClean(text: string): void {
  if (!promtool && process.env.CI !== 'true') return;
  expect(promtool, 'promtool must be installed in CI').toBeTruthy();
  // Bodies of several MB (thousands of probes) come back with whatever promtool prints.
  const lint = spawnSync(promtool!, ['check', 'metrics'], { input: text, encoding: 'utf8', maxBuffer: 64 << 20 });
  expect({ status: lint.status, output: lint.stdout + lint.stderr }).toEqual({ status: 0, output: '' });
}
