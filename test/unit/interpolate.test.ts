import { describe, expect, it } from 'vitest';
import { interpolate } from '../../src/config/interpolate.js';

const VARS: Record<string, string | undefined> = { HOST: 'example.com', PORT: '8443', EMPTY: '', UNDEF: undefined };

describe('interpolate', () => {
  it.each<[string, string, string, string[]]>([
    ['no variables', 'https://example.com/', 'https://example.com/', []],
    ['a set variable', 'https://${HOST}/', 'https://example.com/', []],
    ['several variables', '${HOST}:${PORT}', 'example.com:8443', []],
    ['the same variable twice', '${HOST}/${HOST}', 'example.com/example.com', []],
    ['a default, variable set', '${HOST:-fallback}', 'example.com', []],
    ['a default, variable unset', '${NOPE:-fallback}', 'fallback', []],
    ['a default, variable empty', '${EMPTY:-fallback}', 'fallback', []],
    ['a default, variable undefined in the map', '${UNDEF:-fallback}', 'fallback', []],
    ['an empty default', 'a${NOPE:-}b', 'ab', []],
    ['a default holding ":" and "/"', '${NOPE:-http://localhost:80/x}', 'http://localhost:80/x', []],
    ['a default holding spaces', '${NOPE:-two words}', 'two words', []],
    ['$${ escape', 'literal $${HOST}', 'literal ${HOST}', []],
    ['$${ escape of an unset name is not missing', '$${NOPE}', '${NOPE}', []],
    ['$${ escape with a default', '$${NOPE:-x}', '${NOPE:-x}', []],
    ['escape next to a real variable', '$${HOST}=${HOST}', '${HOST}=example.com', []],
    ['a lone $ and $$ are kept', 'cost $5 and $$', 'cost $5 and $$', []],
    ['$NAME without braces is not a variable', '$HOST', '$HOST', []],
    ['a name starting with a digit is not a variable', '${1HOST}', '${1HOST}', []],
    ['an unclosed brace is kept', '${HOST', '${HOST', []],
    ['a missing variable is kept and reported', 'https://${NOPE}/', 'https://${NOPE}/', ['NOPE']],
    ['an empty variable without default is missing', '${EMPTY}', '${EMPTY}', ['EMPTY']],
    [
      'several missing variables, each once, in order',
      '${B_MISSING}${A_MISSING}${B_MISSING}',
      '${B_MISSING}${A_MISSING}${B_MISSING}',
      ['B_MISSING', 'A_MISSING'],
    ],
    ['missing among present', '${HOST}:${NOPE}', 'example.com:${NOPE}', ['NOPE']],
  ])('%s: %j', (_name, input, value, missing) => {
    expect(interpolate(input, VARS)).toEqual({ value, missing });
  });

  it('is not recursive: a value containing ${...} is not expanded again', () => {
    expect(interpolate('${A}', { A: '${B}', B: 'no' })).toEqual({ value: '${B}', missing: [] });
  });
});
