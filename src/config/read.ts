import fs from 'node:fs';
import { InputFileError, MAX_BUNDLE_FILE_BYTES, errnoOf, readInputFileSync } from './files.js';
import path from 'node:path';
import { LineCounter, type Document } from 'yaml';
import type { ConfigIssue } from '../core/errors.js';
import { parseConfigYaml, yamlProblem } from './yaml.js';

/** One configuration file, parsed: the YAML document and the line counter that locates its nodes. */
export interface ParsedFile {
  file: string;
  text: string;
  doc: Document;
  lc: LineCounter;
}

/**
 * Step 1 of loading: the files named by `paths` (a directory's *.yaml / *.yml files, not recursive,
 * in name order), each once. `seen` gets every path and file in the order given, to order the
 * issues by.
 */
export function listFiles(paths: string[], issues: ConfigIssue[], seen: string[]): string[] {
  const files: string[] = [];
  for (const p of paths) {
    let st: fs.Stats;
    try {
      st = fs.statSync(p);
    } catch {
      issues.push({ file: p, path: '', message: 'no such file or directory' });
      seen.push(p);
      continue;
    }
    if (st.isDirectory()) {
      const found = fs
        .readdirSync(p)
        .filter((f) => /\.ya?ml$/.test(f))
        .sort()
        .map((f) => path.join(p, f));
      if (found.length === 0) issues.push({ file: p, path: '', message: 'directory holds no .yaml or .yml files' });
      seen.push(p, ...found);
      files.push(...found);
    } else {
      seen.push(p);
      files.push(p);
    }
  }
  return [...new Set(files)];
}

/** Step 2: reads and parses one file; a read or YAML syntax problem is an issue and no document. */
export function readFile(file: string, issues: ConfigIssue[]): ParsedFile | undefined {
  let text: string;
  try {
    // Opened without blocking and checked as a regular file within 10 MiB: a FIFO or /dev/zero given
    // as --config is a config error, not a hang or an out-of-memory.
    text = readInputFileSync(file, MAX_BUNDLE_FILE_BYTES).toString('utf8');
  } catch (err) {
    const cause = (err as { cause?: unknown }).cause;
    const message = err instanceof InputFileError && !cause ? err.problem : `cannot read: ${errnoOf(cause ?? err)}`;
    issues.push({ file, path: '', message });
    return undefined;
  }
  const lc = new LineCounter();
  const doc = parseConfigYaml(text, lc);
  if (doc.errors.length) {
    // The first syntax error is the real one; the rest are usually the parser losing its footing.
    const e = doc.errors[0];
    const hint = /flow-map|flow-seq/.test(e.message) && text.includes('${') ? ' (inside { } or [ ], quote values that use ${VAR}: "${VAR}")' : '';
    const { line, column, message } = yamlProblem(doc, e, lc, text);
    issues.push({ file, line, column, path: '', message: message + hint });
    return undefined;
  }
  return { file, text, doc, lc };
}
