import { describe, expect, it } from 'vitest';
import { ProbeError } from '../../src/core/errors.js';
import { JsonItemStream, MAX_ITEM_CHARS, type JsonFraming } from '../../src/net/json-stream.js';

/**
 * The incremental parsers of build answers, fed every answer split at every byte boundary (into two
 * pieces, and byte by byte): what comes out must not depend on how the network cut the stream.
 */

function feed(framing: JsonFraming, chunks: Buffer[]): unknown[] {
  const p = new JsonItemStream(framing);
  const out: unknown[] = [];
  for (const c of chunks) out.push(...p.push(c));
  p.end();
  return out;
}

/** Every split into two pieces, plus one byte at a time. */
function splits(text: string): Buffer[][] {
  const bytes = Buffer.from(text, 'utf8');
  const ways: Buffer[][] = [];
  for (let i = 0; i <= bytes.length; i++) ways.push([bytes.subarray(0, i), bytes.subarray(i)]);
  ways.push([...bytes].map((b) => Buffer.from([b])));
  return ways;
}

function failure(framing: JsonFraming, chunks: Buffer[]): ProbeError {
  try {
    feed(framing, chunks);
  } catch (err) {
    expect(err).toBeInstanceOf(ProbeError);
    return err as ProbeError;
  }
  throw new Error('expected a protocol error');
}

// A builder answer with what makes framing hard: braces and brackets inside strings, escaped quotes
// and backslashes, multi-byte UTF-8 (split mid-character by the byte splits), ANSI escapes, whitespace.
const V3_ITEMS = [
  { type: 'metadata', resource: 'buildLogId', value: 1234 },
  { message: '\u001b[36m[Info]\u001b[39m Starting build for org/fleet {"not": [an, item]}' },
  { message: 'quote " backslash \\ brace } bracket ] comma , ünïcödé 🚀 日本', replace: true },
  { message: '[main] Step 1/2 : FROM scratch', nested: { a: [1, { b: '}' }] } },
  { message: '[Error] boom', isError: true },
];
const V3_TEXT = '[' + V3_ITEMS.map((i) => JSON.stringify(i)).join(',\n ') + ']\n';

const DOCKER_ITEMS = [
  { stream: 'Step 1/2 : FROM scratch' },
  { stream: '\n' },
  { stream: ' ---\u003e 🚀\n' },
  { aux: { ID: 'sha256:ef51446324049d810a9a645a9b77a6f50f917a919427612cd6788842ead2b80f' } },
  { errorDetail: { message: 'COPY failed: "}" not found' }, error: 'COPY failed: "}" not found' },
];
// Docker's own framing (newline after each) and Go's json.Decoder tolerance (none, or \r\n).
const DOCKER_TEXT = DOCKER_ITEMS.map((i) => JSON.stringify(i)).join('\r\n') + '\n' + JSON.stringify({ stream: 'tail' }) + JSON.stringify({ stream: 'glued' });

describe('JsonItemStream, array framing (builder v3)', () => {
  it('yields the same items however the answer is split', () => {
    for (const chunks of splits(V3_TEXT)) expect(feed('array', chunks)).toEqual(V3_ITEMS);
  });

  it('hands out each item as soon as it closes, not at the end', () => {
    const p = new JsonItemStream('array');
    expect(p.push('[{"message":"a"}')).toEqual([{ message: 'a' }]);
    expect(p.push(',{"mess')).toEqual([]);
    expect(p.push('age":"b"}')).toEqual([{ message: 'b' }]);
    expect(p.closed).toBe(false);
    expect(p.push(']')).toEqual([]);
    expect(p.closed).toBe(true);
    expect(p.count).toBe(2);
    p.end();
  });

  it('an empty array is complete', () => {
    expect(feed('array', [Buffer.from(' [ ] ')])).toEqual([]);
  });

  const broken: [string, string, RegExp][] = [
    ['cut inside an item', '[{"message":"a"},{"message":"b', /ended inside a JSON item after 1 complete item/],
    ['cut between items (no closing bracket)', '[{"message":"a"},', /ended after 1 item\(s\) without the closing "]"/],
    ['cut before anything', '', /ended before the JSON array began/],
    [
      'an HTML error page instead of the stream',
      '<html><body>502 Bad Gateway</body></html>',
      /expected the start of a JSON array "\[" in the stream but got "<"/,
    ],
    ['garbage between items', '[{"message":"a"} x {"message":"b"}]', /expected "," or "]" after an item in the stream but got "x" after 1 item/],
    ['a bare value as an item', '[{"message":"a"},42]', /expected a JSON object "\{" in the stream but got "4"/],
    ['text after the closing bracket', '[{"message":"a"}] trailing', /nothing after the closing "]" in the stream but got "t"/],
    ['an item that is not valid JSON', '[{"message":"a",}]', /item 1 of the stream is not valid JSON/],
  ];
  for (const [name, text, message] of broken) {
    it(`${name} is a protocol error, at every split`, () => {
      for (const chunks of splits(text)) {
        const err = failure('array', chunks);
        expect(err.reason).toBe('protocol');
        expect(err.message).toMatch(message);
      }
    });
  }

  it('quotes what came instead of the stream, so an error page reads as one', () => {
    expect(failure('array', [Buffer.from('<html><body>502 Bad Gateway</body></html>')]).message).toContain('502 Bad Gateway');
  });

  it('refuses an item larger than its limit before holding it all', () => {
    const p = new JsonItemStream('array');
    p.push('[{"message":"');
    const big = 'x'.repeat(64 * 1024);
    let thrown: unknown;
    try {
      for (let i = 0; i * big.length <= MAX_ITEM_CHARS + big.length; i++) p.push(big);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ProbeError);
    expect((thrown as ProbeError).message).toMatch(/larger than 1048576 characters/);
  });
});

describe('JsonItemStream, sequence framing (Docker JSON lines)', () => {
  const expected = [...DOCKER_ITEMS, { stream: 'tail' }, { stream: 'glued' }];
  it('yields the same items however the answer is split', () => {
    for (const chunks of splits(DOCKER_TEXT)) expect(feed('sequence', chunks)).toEqual(expected);
  });

  it('an empty answer has no items and is not an error (the caller decides)', () => {
    expect(feed('sequence', [Buffer.from('\n')])).toEqual([]);
  });

  it('a cut line and a non-JSON line are protocol errors, at every split', () => {
    for (const chunks of splits('{"stream":"a"}\n{"stream":"b'))
      expect(failure('sequence', chunks).message).toMatch(/ended inside a JSON item after 1 complete item/);
    for (const chunks of splits('{"stream":"a"}\nnot json\n'))
      expect(failure('sequence', chunks).message).toMatch(/expected a JSON object "\{" in the stream but got "n" after 1 item/);
  });
});
