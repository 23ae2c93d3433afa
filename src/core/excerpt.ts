import { redact as scrub } from './redact.js';

/**
 * The one way text from a peer or a target (an answer's body, command output, a proxy's reason
 * phrase, a build log line, a JSON value) is cut down for a message or a log line. Callers differ
 * only in what the text needs first (secrets scrubbed, tags dropped, whitespace folded, control
 * characters shown) and in how the cut is counted; the cut itself is here once. It never splits a
 * UTF-16 surrogate pair, so an excerpt is always well-formed text.
 */
export interface ExcerptOptions {
  /** Characters kept before the `…`. */
  max: number;
  /** Count the `…` in `max`, so the excerpt is never longer than `max` (a hard bound on a line). */
  ellipsisWithin?: boolean;
  /** Scrub known secrets first: a secret cut in half would no longer be recognised afterwards. */
  redact?: boolean;
  /** Read an HTML error page as text: its tags dropped, scripts and styles left out, its title once. */
  markup?: boolean;
  /** Fold each run of whitespace into one space and trim the ends. */
  collapse?: boolean;
  /** Show control characters: CR as `\r`, LF as `\n`, others as `?`. */
  escapeControls?: boolean;
  /** JSON-quote the kept text (the `…` goes after the closing quote). */
  quote?: boolean;
  /** What an empty excerpt reads as. */
  empty?: string;
}

export function excerpt(text: string, o: ExcerptOptions): string {
  let t = o.redact ? scrub(text) : text;
  if (o.markup) t = pageText(t);
  if (o.collapse) t = t.replace(/\s+/g, ' ').trim();
  if (o.escapeControls) t = t.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => (c === '\r' ? '\\r' : c === '\n' ? '\\n' : '?'));
  const keep = o.ellipsisWithin ? o.max - 1 : o.max;
  const cut = t.length > o.max;
  if (cut) t = t.slice(0, unsplit(t, keep));
  if (o.quote) t = JSON.stringify(t);
  if (cut) return t + '…';
  return t || (o.empty ?? '');
}

/**
 * The words of an HTML page. A `<script>` or `<style>` holds no words for a person. The `<title>`
 * is read once: error pages repeat it as their heading (nginx's "502 Bad Gateway", the platform's
 * "Device unreachable"), and a message quoting both says it twice; it is kept, first, only when the
 * rest of the page does not say it. Linear in the page: blocks are found with indexOf, not a
 * backtracking pattern, since the page is a peer's.
 */
function pageText(html: string): string {
  const lower = html.toLowerCase();
  if (!lower.includes('<')) return html;
  const find = blockFinder(lower);
  let title = '';
  const kept: string[] = [];
  let at = 0;
  for (let block = find(0); block; block = find(at)) {
    kept.push(html.slice(at, block.start));
    if (block.tag === 'title' && !title) title = html.slice(block.contentStart, block.contentEnd);
    at = block.end;
  }
  kept.push(html.slice(at));
  const rest = dropTags(kept.join(' '));
  const heading = dropTags(title).replace(/\s+/g, ' ').trim();
  return heading && !rest.replace(/\s+/g, ' ').includes(heading) ? `${heading} ${rest}` : rest;
}

/**
 * Each `<...>` as a space, as `replace(/<[^>]*>/g, ' ')` would, in linear time: that pattern tries
 * every `<` to the end of a page with no `>` after it (quadratic on a peer's 1 MiB of `<`).
 */
function dropTags(s: string): string {
  const out: string[] = [];
  let at = 0;
  for (;;) {
    const open = s.indexOf('<', at);
    const close = open < 0 ? -1 : s.indexOf('>', open);
    // No `>` after this `<`: none after any later `<` either, so nothing further is a tag.
    if (close < 0) break;
    out.push(s.slice(at, open), ' ');
    at = close + 1;
  }
  out.push(s.slice(at));
  return out.join('');
}

/** Where a block element's text is left out: `<title>`, `<script>`, `<style>`, and `<!-- -->` comments. */
const BLOCK_OPENERS = ['<title', '<script', '<style', '<!--'] as const;

interface Block {
  tag: string;
  start: number;
  contentStart: number;
  contentEnd: number;
  end: number;
}

/**
 * A finder of the next block at or after a position, for positions that only grow: each opener's
 * next occurrence is remembered until passed, so the page is scanned a bounded number of times.
 */
function blockFinder(lower: string): (from: number) => Block | undefined {
  const next = new Map<string, number>();
  const occurrence = (opener: string, from: number) => {
    let at = next.get(opener);
    if (at === undefined || (at >= 0 && at < from)) next.set(opener, (at = lower.indexOf(opener, from)));
    return at;
  };
  return (from) => {
    for (;;) {
      let best: { opener: string; start: number } | undefined;
      for (const opener of BLOCK_OPENERS) {
        const start = occurrence(opener, from);
        if (start >= 0 && (!best || start < best.start)) best = { opener, start };
      }
      if (!best) return undefined;
      const tag = best.opener.slice(1);
      if (tag === '!--') {
        const close = lower.indexOf('-->', best.start + 4);
        const end = close < 0 ? lower.length : close + 3;
        return { tag, start: best.start, contentStart: end, contentEnd: end, end };
      }
      // `<titles>` or `<style2`: not the element; look further.
      const after = lower[best.start + best.opener.length];
      if (after !== undefined && !/[\s/>]/.test(after)) {
        from = best.start + 1;
        continue;
      }
      // An unclosed tag or element runs to the end of the page.
      const open = lower.indexOf('>', best.start);
      const contentStart = open < 0 ? lower.length : open + 1;
      const close = lower.indexOf(`</${tag}`, contentStart);
      const contentEnd = close < 0 ? lower.length : close;
      const closeEnd = close < 0 ? -1 : lower.indexOf('>', close);
      return { tag, start: best.start, contentStart, contentEnd, end: closeEnd < 0 ? lower.length : closeEnd + 1 };
    }
  };
}

/** `n`, or one less where `n` would split a surrogate pair. */
function unsplit(text: string, n: number): number {
  const last = text.charCodeAt(n - 1);
  return last >= 0xd800 && last <= 0xdbff ? n - 1 : n;
}

/** How much JSON text an excerpt of a value is made from: far more than any excerpt shows. */
export const JSON_EXCERPT_SOURCE_CHARS = 64 * 1024;

/**
 * An excerpt of a value parsed from a peer's JSON, as `excerpt(JSON.stringify(value))` would be, but
 * with bounded work: the JSON text is written without recursion and only its first
 * JSON_EXCERPT_SOURCE_CHARS characters, so a 100,000-deep array from an API is an excerpt, not a
 * stack overflow (JSON.stringify recurses and throws RangeError from a few thousand levels).
 * Undefined where JSON.stringify would give undefined (an undefined or function value).
 */
export function excerptJson(value: unknown, o: ExcerptOptions): string | undefined {
  const text = jsonPrefix(value, JSON_EXCERPT_SOURCE_CHARS);
  return text === undefined ? undefined : excerpt(text, o);
}

type Frame = { close: string; values: unknown[]; keys?: string[]; next: number; wrote: boolean };

/** A value as JSON.stringify writes it after toJSON; undefined for what JSON leaves out. */
function jsonable(v: unknown, key: string): unknown {
  const toJSON = v !== null && typeof v === 'object' ? (v as { toJSON?: unknown }).toJSON : undefined;
  const w = typeof toJSON === 'function' ? (toJSON as (k: string) => unknown).call(v, key) : v;
  return typeof w === 'function' || typeof w === 'symbol' ? undefined : w;
}

/**
 * JSON.stringify(value) for values parsed from JSON (and plain data like them), written with an
 * explicit stack; stops once at least `limit` characters are written (a prefix of the full text).
 */
export function jsonPrefix(value: unknown, limit: number): string | undefined {
  const parts: string[] = [];
  let length = 0;
  const stack: Frame[] = [];
  const write = (s: string) => {
    parts.push(s);
    length += s.length;
  };
  // Writes a value already passed through jsonable(); containers are opened and stacked.
  const emit = (v: unknown) => {
    if (v === undefined) return write('null');
    if (v === null || typeof v !== 'object') return write(typeof v === 'bigint' ? String(v) : JSON.stringify(v));
    if (Array.isArray(v)) {
      write('[');
      stack.push({ close: ']', values: v, next: 0, wrote: false });
    } else {
      const keys = Object.keys(v);
      write('{');
      stack.push({ close: '}', values: keys.map((k) => (v as Record<string, unknown>)[k]), keys, next: 0, wrote: false });
    }
  };
  const top = jsonable(value, '');
  if (top === undefined) return undefined;
  emit(top);
  while (stack.length && length < limit) {
    const f = stack[stack.length - 1];
    if (f.next >= f.values.length) {
      write(f.close);
      stack.pop();
      continue;
    }
    const i = f.next++;
    const v = jsonable(f.values[i], f.keys ? f.keys[i] : String(i));
    // An object leaves out what JSON cannot hold; an array writes it as null.
    if (f.keys && v === undefined) continue;
    write((f.wrote ? ',' : '') + (f.keys ? JSON.stringify(f.keys[i]) + ':' : ''));
    f.wrote = true;
    emit(v);
  }
  return parts.join('');
}
