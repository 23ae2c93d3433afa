import { isScalar, parseDocument, visit, YAMLParseError, type Document, type LineCounter, type Node, type Scalar } from 'yaml';

/**
 * The YAML parse of a config file, bounded: a file is configuration written by people, so what no
 * person writes is refused as a config error with its line, never left to exhaust the process
 * (issue 19: an alias bomb ended in a `ReferenceError` stack trace and exit 1).
 *
 * - Aliases: at most MAX_ALIAS_COUNT uses, counted as the yaml library counts them (uses of an
 *   anchor times the aliases inside it, so nested aliases multiply); an alias with no anchor before
 *   it is an error too. The loader's own doc.toJS() takes the same limit (YAML_TO_JS).
 * - Scalars: a single value (or key) of more than MAX_SCALAR_CHARS characters.
 *
 * Problems are added to `doc.errors` like the parser's own, so the loader reports them the same
 * way (`file:line: YAML: ...`).
 */

/** The yaml library's own default, made explicit: enough for any hand-written reuse of anchors. */
export const MAX_ALIAS_COUNT = 100;
export const MAX_SCALAR_CHARS = 1024 * 1024;
/** Options for the loader's doc.toJS(), so it applies the limit this parse checked. */
export const YAML_TO_JS = { maxAliasCount: MAX_ALIAS_COUNT } as const;

export function parseConfigYaml(text: string, lineCounter: LineCounter): Document {
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length) return doc;
  let firstAlias: Node | undefined;
  visit(doc, {
    Scalar(_key, node) {
      if (typeof node.value === 'string' && node.value.length > MAX_SCALAR_CHARS) {
        const message = `a value of ${node.value.length.toLocaleString('en')} characters is over the limit of 1 MiB (${MAX_SCALAR_CHARS.toLocaleString('en')}) per value`;
        doc.errors.push(new YAMLParseError(start(node), 'RESOURCE_EXHAUSTION', message));
        return visit.BREAK;
      }
    },
    Alias(_key, node) {
      firstAlias ??= node;
    },
  });
  if (doc.errors.length || !firstAlias) return doc;
  try {
    doc.toJS(YAML_TO_JS);
  } catch (err) {
    if (!(err instanceof ReferenceError)) throw err;
    // The library names the anchor of an unresolved alias; an excessive count is met on the way
    // through the document, so the first alias is where the expansion starts.
    const unresolved = /Unresolved alias.*: (.+)$/.exec(err.message)?.[1];
    let at: Node = firstAlias;
    if (unresolved)
      visit(doc, {
        Alias(_key, node) {
          if (node.source !== unresolved) return;
          at = node;
          return visit.BREAK;
        },
      });
    const message = unresolved
      ? `alias *${unresolved} has no anchor &${unresolved} before it`
      : `aliases expand too much (more than ${MAX_ALIAS_COUNT} uses, counting aliases inside anchors as yaml does): an alias bomb?`;
    doc.errors.push(new YAMLParseError(start(at), unresolved ? 'BAD_ALIAS' : 'RESOURCE_EXHAUSTION', message));
  }
  return doc;
}

function start(node: Node): [number, number] {
  const from = node.range?.[0] ?? 0;
  return [from, from + 1];
}

/** A YAML syntax error as a person fixes it: where the offending token is (1-based), and what is wrong. */
export interface YamlProblem {
  line: number;
  column: number;
  message: string;
}

/**
 * The first syntax error of a document, placed at the token to fix. The parser notices some
 * mistakes only where they end: an unclosed quote at the end of the file, an over-indented line
 * as the line before it (the value it continues). Those are moved to where the mistake is.
 */
export function yamlProblem(doc: Document, error: YAMLParseError, lc: LineCounter, text: string): YamlProblem {
  const said = error.message.split('\n')[0];
  const at = (offset: number, message: string): YamlProblem => {
    const { line, col } = lc.linePos(offset);
    return { line, column: col, message };
  };
  const scalar = scalarWhere(doc, (n) => (error.code === 'MISSING_CHAR' ? n.range![1] === error.pos[0] : n.range![0] === error.pos[0]));
  if (error.code === 'MISSING_CHAR' && scalar && (scalar.type === 'QUOTE_DOUBLE' || scalar.type === 'QUOTE_SINGLE')) {
    const quote = scalar.type === 'QUOTE_DOUBLE' ? '"' : "'";
    const ends = error.pos[0] >= text.trimEnd().length ? 'the end of the file' : `line ${lc.linePos(error.pos[0] - 1).line}`;
    return at(scalar.range![0], `YAML: the ${quote} opening this value is never closed (the value runs on to ${ends})`);
  }
  if (error.code === 'BLOCK_AS_IMPLICIT_KEY' && scalar?.type === 'PLAIN') {
    const start = lc.linePos(scalar.range![0]).line;
    const next = text.indexOf('\n', scalar.range![0]);
    if (next >= 0 && next < scalar.range![1]) {
      const token = next + 1 + /^[ \t]*/.exec(text.slice(next + 1))![0].length;
      return at(
        token,
        `YAML: this line is indented more than the field above it, so it reads as the rest of that field's value (line ${start}) instead of a field of its own: indent it like the field above`,
      );
    }
    // `url: x: y` on one line: the second `: ` starts a mapping where a value was expected.
    return at(error.pos[0], `YAML: ${said}: a value that contains ": " must be quoted`);
  }
  if (error.code === 'TAB_AS_INDENT') return at(error.pos[0], `YAML: ${said}: indent with spaces`);
  return at(error.pos[0], `YAML: ${said}`);
}

function scalarWhere(doc: Document, test: (n: Scalar) => boolean): Scalar | undefined {
  let found: Scalar | undefined;
  visit(doc, {
    Scalar(_key, node) {
      if (!isScalar(node) || !node.range || !test(node)) return;
      found = node;
      return visit.BREAK;
    },
  });
  return found;
}
