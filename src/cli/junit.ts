import fs from 'node:fs';
import os from 'node:os';
import XMLBuilder from 'fast-xml-builder';
import { ReportFileError } from '../core/errors.js';
import { VERSION } from '../core/version.js';
import type { RunRecord } from './probe-run.js';
import type { Bar, ProbeTally } from './tally.js';
import { formatSeconds } from '../core/duration.js';

/**
 * The JUnit XML report CI systems ingest (Jenkins, GitLab, GitHub test reporters): one testsuite
 * per kind, one testcase per probe. A probe that missed its bar is a <failure> whose type is the
 * reason and whose message says reason, phase and message; <system-out> holds every run's line
 * and output. The shape follows the Jenkins/Ant format; test/fixtures/junit.xsd pins it.
 */

/**
 * The file is opened (created or emptied) before any probe runs, so a path that cannot be
 * written fails the command at once instead of after a five-minute gate.
 */
export class JunitFile {
  private readonly fd: number;
  constructor(readonly file: string) {
    try {
      this.fd = fs.openSync(file, 'w');
    } catch (err) {
      throw new ReportFileError('--junit', file, err);
    }
  }

  write(xml: string): void {
    try {
      fs.writeSync(this.fd, xml);
    } finally {
      fs.closeSync(this.fd);
    }
  }
}

export interface JunitReport {
  /** "fleetprobe run" or "fleetprobe gate". */
  name: string;
  tallies: ProbeTally[];
  bar: Bar;
  /** When the command started (ms since the epoch): the timestamp of suites with no run. */
  startedAt: number;
  interrupted: boolean;
}

// XML 1.0 cannot carry most control characters at all, not even escaped; a target's output may.
const NOT_XML = /[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\u{10000}-\u{10ffff}]/gu;
const xmlText = (s: string) => s.replace(NOT_XML, '\ufffd');

/** The Ant format's timestamp: ISO 8601 to the second, no zone (ours is UTC). */
const antTimestamp = (ms: number) => new Date(ms).toISOString().slice(0, 19);

const secondsAttr = (s: number) => s.toFixed(3);

function runLine(rec: RunRecord, of: number): string {
  const r = rec.result;
  const head = `[run ${rec.attempt}${of > 1 ? `/${of}` : ''}] ${new Date(r.startedAt).toISOString()}`;
  if (r.aborted) return `${head} ABORTED after ${formatSeconds(r.durationSeconds)}`;
  if (r.success) return `${head} PASS ${formatSeconds(r.durationSeconds)}`;
  return `${head} FAIL ${r.reason} in ${r.phase} ${formatSeconds(r.durationSeconds)}: ${r.message}`;
}

function testcase(t: ProbeTally, bar: Bar, interrupted: boolean) {
  const of = t.runs.length;
  const out = t.runs.flatMap((rec) => [runLine(rec, of), ...rec.output.map((l) => `  ${l}`)]);
  const tc: Record<string, unknown> = {
    '@_name': t.spec.name,
    '@_classname': `fleetprobe.${t.spec.kind}`,
    '@_time': secondsAttr(t.totalSeconds()),
  };
  const last = t.lastFailure?.result;
  if (t.counted === 0) {
    tc.skipped = { '@_message': interrupted ? 'not run: interrupted before it ran' : 'not run' };
  } else if (!bar.met(t) && last) {
    const what = `${last.reason} in ${last.phase}: ${last.message}`;
    tc.failure = {
      '@_type': last.reason,
      '@_message': xmlText(t.counted === 1 ? what : `${bar.shortfall(t)}; last: ${what}`),
      '#text': xmlText(
        t.runs
          .filter((r) => !r.result.success && !r.result.aborted)
          .map((r) => runLine(r, of))
          .join('\n'),
      ),
    };
  }
  if (out.length) tc['system-out'] = xmlText(out.join('\n'));
  return tc;
}

export function renderJunit(report: JunitReport): string {
  const kinds = [...new Set(report.tallies.map((t) => t.spec.kind))].sort();
  const failed = (t: ProbeTally) => t.counted > 0 && !report.bar.met(t);
  const properties = { property: Object.entries({ 'fleetprobe.version': VERSION, ...report.bar.settings }).map(([k, v]) => ({ '@_name': k, '@_value': v })) };
  const suites = kinds.map((kind, id) => {
    const ts = report.tallies.filter((t) => t.spec.kind === kind);
    const starts = ts.flatMap((t) => t.runs.map((r) => r.result.startedAt));
    return {
      '@_name': kind,
      '@_tests': String(ts.length),
      '@_failures': String(ts.filter(failed).length),
      '@_errors': '0',
      '@_skipped': String(ts.filter((t) => t.counted === 0).length),
      '@_time': secondsAttr(ts.reduce((s, t) => s + t.totalSeconds(), 0)),
      '@_timestamp': antTimestamp(starts.length ? Math.min(...starts) : report.startedAt),
      '@_hostname': os.hostname() || 'localhost',
      '@_id': String(id),
      '@_package': 'fleetprobe',
      properties,
      testcase: ts.map((t) => testcase(t, report.bar, report.interrupted)),
    };
  });
  const doc = {
    '?xml': { '@_version': '1.0', '@_encoding': 'UTF-8' },
    testsuites: {
      '@_name': report.name,
      '@_tests': String(report.tallies.length),
      '@_failures': String(report.tallies.filter(failed).length),
      '@_errors': '0',
      '@_time': secondsAttr((Date.now() - report.startedAt) / 1000),
      testsuite: suites,
    },
  };
  const builder = new XMLBuilder({ ignoreAttributes: false, attributeNamePrefix: '@_', format: true, indentBy: '  ', suppressEmptyNode: true });
  return builder.build(doc) as string;
}
