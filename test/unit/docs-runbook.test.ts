import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { KINDS } from '../../src/kinds/index.js';
import { ROOT } from '../helpers/cli.js';

/**
 * The RUNBOOK is read during an incident: a phase it names must be one the timeline and the
 * dashboard's "Phase latency" can show (it once named `exec`, which no kind has).
 */

const runbook = fs.readFileSync(path.join(ROOT, 'deploy', 'RUNBOOK.md'), 'utf8');
const PHASES = new Set(Object.values(KINDS).flatMap((k) => k.phases));

/** Backticked names in the text of every "which phase grew: ..." list and after "phase `X`". */
function namedPhases(text: string): string[] {
  const lists = [...text.matchAll(/phases? grew:([\s\S]*?)\.(?:\s|$)/g)].map((m) => m[1]);
  const fromLists = lists.flatMap((l) => [...l.matchAll(/`([^`]+)`/g)].flatMap((m) => m[1].split('/')));
  const single = [...text.matchAll(/\bphase `([^`]+)`/g)].map((m) => m[1]);
  return [...fromLists, ...single];
}

describe('deploy/RUNBOOK.md', () => {
  it('names only phases that exist', () => {
    const named = namedPhases(runbook);
    expect(named.length).toBeGreaterThan(5);
    expect(named.filter((p) => !PHASES.has(p))).toEqual([]);
  });

  it('the check catches a phase no kind has', () => {
    expect(namedPhases('shows which phase grew: `resolve` (DNS), `transfer`/`exec` (the device).').filter((p) => !PHASES.has(p))).toEqual(['exec']);
  });
});
