import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { excerpt, excerptJson, JSON_EXCERPT_SOURCE_CHARS, jsonPrefix } from '../../src/core/excerpt.js';
import { rememberSecret } from '../../src/core/redact.js';
import { bodyExcerpt, jsonExcerpt } from '../../src/kinds/shared/http-expect.js';

/**
 * The one excerpt: what each former helper made of a text it still makes (their code is kept here
 * as the reference), it never splits a surrogate pair, and an excerpt of peer JSON is bounded work
 * however deep the JSON nests.
 */

const SECRET = 'excerpt-test-secret-0e1f';
rememberSecret(SECRET);

// The helpers the one excerpt replaced, as they were written (redaction left to the options).
const BEFORE = {
  body: (t: string, max: number) => {
    const text = excerpt(t, { max: Infinity, redact: true })
      .replace(/<[^>]*>/g, ' ')
      .replace(/\s+/g, ' ')
      .trim();
    return text.length > max ? text.slice(0, max) + '…' : text;
  },
  output: (t: string, max: number) => {
    const s = excerpt(t, { max: Infinity, redact: true }).replace(/\s+/g, ' ').trim();
    return s.length > max ? s.slice(0, max) + '…' : s || '(empty)';
  },
  quoted: (t: string, max: number) => {
    const s = t.replace(/\s+/g, ' ').trim();
    return s.length > max ? JSON.stringify(s.slice(0, max)) + '…' : JSON.stringify(s);
  },
  printable: (t: string, max: number) => {
    const clean = t.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => (c === '\r' ? '\\r' : c === '\n' ? '\\n' : '?'));
    return clean.length > max ? clean.slice(0, max) + '…' : clean;
  },
  within: (t: string, max: number) => (t.length > max ? t.slice(0, max - 1) + '…' : t),
};
const AFTER = {
  body: (t: string, max: number) => excerpt(t, { max, redact: true, markup: true, collapse: true }),
  output: (t: string, max: number) => excerpt(t, { max, redact: true, collapse: true, empty: '(empty)' }),
  quoted: (t: string, max: number) => excerpt(t, { max, collapse: true, quote: true }),
  printable: (t: string, max: number) => excerpt(t, { max, escapeControls: true }),
  within: (t: string, max: number) => excerpt(t, { max, ellipsisWithin: true }),
};

// Text with what the helpers act on: whitespace of every kind, tags, control characters, a secret.
const text = fc
  .array(fc.constantFrom('a', 'b', 'é', ' ', '  ', '\n', '\r\n', '\t', '<p>', '</p>', '<', '>', '\x00', '\x1b', '\x7f', '\x85', SECRET), { maxLength: 80 })
  .map((parts) => parts.join(''));

describe('excerpt', () => {
  it.each(Object.keys(BEFORE) as (keyof typeof BEFORE)[])('writes what the former %s helper wrote', (name) => {
    fc.assert(
      fc.property(text, fc.integer({ min: 1, max: 60 }), (t, max) => {
        expect(AFTER[name](t, max)).toBe(BEFORE[name](t, max));
      }),
      { numRuns: 500 },
    );
  });

  it('scrubs a secret before cutting, so no part of it is left', () => {
    const out = bodyExcerpt(`token ${SECRET} echoed`, 12);
    expect(out).toBe('token [redac…');
    expect(out).not.toContain(SECRET.slice(0, 6));
  });

  it('never ends on half a surrogate pair', () => {
    const emoji = '😀';
    expect(excerpt('ab' + emoji.repeat(5), { max: 3 })).toBe('ab…');
    expect(excerpt('a' + emoji.repeat(5), { max: 4, ellipsisWithin: true })).toBe('a' + emoji + '…');
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), fc.integer({ min: 1, max: 20 }), (t, max) => {
        const out = excerpt(t, { max });
        expect(() => encodeURIComponent(out)).not.toThrow();
      }),
    );
  });
});

describe('excerpt of peer JSON', () => {
  it('is what an excerpt of JSON.stringify was, for any JSON value', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.integer({ min: 1, max: 200 }), (v, max) => {
        expect(jsonPrefix(v, JSON_EXCERPT_SOURCE_CHARS)).toBe(JSON.stringify(v));
        expect(jsonExcerpt(v, max)).toBe(bodyExcerpt(JSON.stringify(v), max));
      }),
      { numRuns: 500 },
    );
    // What JSON.stringify leaves out of objects, writes as null in arrays, or calls toJSON for.
    const odd = { a: undefined, f: () => 1, d: new Date(0), list: [undefined, () => 1, NaN, -0, 1e21] };
    expect(jsonPrefix(odd, 1000)).toBe(JSON.stringify(odd));
    expect(jsonPrefix(undefined, 1000)).toBeUndefined();
  });

  it('stays bounded and never overflows the stack on 100,000-deep nesting', () => {
    const depth = 100_000;
    const arrays = JSON.parse('['.repeat(depth) + ']'.repeat(depth)) as unknown;
    const objects = JSON.parse('{"a":'.repeat(depth) + '1' + '}'.repeat(depth)) as unknown;
    // JSON.stringify itself recurses and throws: the failure this guards against.
    expect(() => JSON.stringify(arrays)).toThrow(RangeError);
    expect(jsonExcerpt(arrays, 80)).toBe('['.repeat(80) + '…');
    expect(jsonExcerpt(objects, 20)).toBe('{"a":{"a":{"a":{"a":…');
    const prefix = jsonPrefix(arrays, JSON_EXCERPT_SOURCE_CHARS)!;
    expect(prefix.length).toBeGreaterThanOrEqual(JSON_EXCERPT_SOURCE_CHARS);
    expect(prefix.length).toBeLessThan(JSON_EXCERPT_SOURCE_CHARS + 16);
    expect(excerptJson(objects, { max: 10, quote: true })).toBe('"{\\"a\\":{\\"a\\":"…');
  });
});

describe('excerpt of an HTML error page', () => {
  it('says the title once when the page repeats it as its heading', () => {
    const nginx =
      '<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n';
    expect(bodyExcerpt(nginx)).toBe('502 Bad Gateway nginx');
    const platform =
      '<!doctype html>\n<html><head><meta charset="utf-8"><title>Device unreachable</title></head><body><h1>Device unreachable</h1><p>We encountered an error when reaching this balena.io device</p></body></html>\n';
    expect(bodyExcerpt(platform)).toBe('Device unreachable We encountered an error when reaching this balena.io device');
  });

  it('keeps a title the rest of the page does not say, first; leaves out scripts, styles and comments', () => {
    const page =
      '<HTML><HEAD><TITLE>Service Unavailable</TITLE><style>body { color: red }</style><script type="text/javascript">var x = "<p>";</script></HEAD>' +
      '<BODY><!-- upstream: 10.0.0.7 --><p>try again later</p></BODY></HTML>';
    expect(bodyExcerpt(page)).toBe('Service Unavailable try again later');
    // Not the elements: `<titles>`, `<style2>`; an unclosed script hides the rest of the page.
    expect(bodyExcerpt('<titles>a</titles> <style2>b</style2>')).toBe('a b');
    expect(bodyExcerpt('<p>before</p><script>never closed <p>after</p>')).toBe('before');
  });

  it('stays linear on a hostile page of openers', () => {
    for (const unit of ['<', '<a', '<title>', '<title>x</title>', '<script', '<!--', '<titlex', '<style>a</style>']) {
      const page = unit.repeat(200_000);
      const t0 = performance.now();
      bodyExcerpt(page);
      expect(performance.now() - t0, unit).toBeLessThan(1500);
    }
  });
});
