import { StringDecoder } from 'node:string_decoder';
import { ProbeError } from '../core/errors.js';
import { excerpt } from '../core/excerpt.js';

/**
 * Incremental JSON framing for answers that arrive piece by piece and must be acted on as they come
 * (a build log streamed for minutes). Two framings:
 *
 * - `array`: one JSON array whose items are objects, `[{...},{...}]` (the builder's v3 stream). Items
 *   are handed out as soon as each one closes; the array must end with `]`.
 * - `sequence`: objects one after another, separated by whitespace or newlines (Docker's JSON lines,
 *   which Go's json.Decoder reads the same way, so a message split over no newline still parses).
 *
 * Chunks may split anywhere, inside a multi-byte UTF-8 character included. The scanner tracks only
 * nesting depth and string/escape state; each complete item is handed to JSON.parse, so what counts as
 * valid JSON is exactly JSON.parse's rule. Errors are ProbeError('protocol') naming what was expected
 * and what came, so a proxy's HTML error page in place of the stream reads as such.
 */

export type JsonFraming = 'array' | 'sequence';

/** A single item larger than this is not a log line: stop before it eats memory. */
export const MAX_ITEM_CHARS = 1024 * 1024;

type State =
  | 'start' // array: before '['
  | 'first' // array: after '[', an item or ']'
  | 'next' // array: after an item, ',' or ']'
  | 'item' // array: after ',', an item
  | 'between' // sequence: whitespace or an item
  | 'closed'; // array: after ']', whitespace only

const WHITESPACE = new Set([' ', '\t', '\n', '\r', '\ufeff']);

function shown(ch: string): string {
  return JSON.stringify(ch);
}

export class JsonItemStream {
  private readonly decoder = new StringDecoder('utf8');
  private state: State;
  /** Text of the item being read, across chunks. */
  private pending = '';
  private depth = 0;
  private inString = false;
  private escaped = false;
  private items = 0;

  constructor(private readonly framing: JsonFraming) {
    this.state = framing === 'array' ? 'start' : 'between';
  }

  /** True once the array's closing `]` has been read (array framing only). */
  get closed(): boolean {
    return this.state === 'closed';
  }

  /** Items handed out so far. */
  get count(): number {
    return this.items;
  }

  /** Feeds one chunk; returns the items completed by it, in order. Throws ProbeError('protocol'). */
  push(chunk: Buffer | string): unknown[] {
    const text = typeof chunk === 'string' ? chunk : this.decoder.write(chunk);
    const out: unknown[] = [];
    let start = this.depth > 0 ? 0 : -1;
    for (let i = 0; i < text.length; i++) {
      const ch = text[i];
      if (this.depth > 0) {
        if (this.inString) {
          if (this.escaped) this.escaped = false;
          else if (ch === '\\') this.escaped = true;
          else if (ch === '"') this.inString = false;
          continue;
        }
        if (ch === '"') this.inString = true;
        else if (ch === '{' || ch === '[') this.depth++;
        else if (ch === '}' || ch === ']') {
          this.depth--;
          if (this.depth === 0) {
            out.push(this.finishItem(this.pending + text.slice(start, i + 1)));
            this.pending = '';
            start = -1;
          }
        }
        continue;
      }
      if (WHITESPACE.has(ch)) continue;
      switch (this.state) {
        case 'start':
          if (ch !== '[') throw this.unexpected(ch, text, i, 'the start of a JSON array "["');
          this.state = 'first';
          break;
        case 'next':
          if (ch === ',') this.state = 'item';
          else if (ch === ']') this.state = 'closed';
          else throw this.unexpected(ch, text, i, '"," or "]" after an item');
          break;
        case 'first':
          if (ch === ']') {
            this.state = 'closed';
            break;
          }
        // falls through: an item
        case 'item':
        case 'between':
          if (ch !== '{') throw this.unexpected(ch, text, i, 'a JSON object "{"');
          this.depth = 1;
          start = i;
          break;
        case 'closed':
          throw this.unexpected(ch, text, i, 'nothing after the closing "]"');
      }
    }
    if (this.depth > 0) {
      this.pending += text.slice(start);
      if (this.pending.length > MAX_ITEM_CHARS) {
        throw new ProbeError('protocol', `a streamed JSON item is larger than ${MAX_ITEM_CHARS} characters (starts ${quoted(this.pending)})`);
      }
    }
    return out;
  }

  /**
   * The stream has ended. Throws ProbeError('protocol') when it ended inside an item, or (array
   * framing) before the closing `]`: a cut answer is never a complete one.
   */
  end(): void {
    const rest = this.decoder.end();
    if (rest) this.push(rest);
    if (this.depth > 0) throw new ProbeError('protocol', `the stream ended inside a JSON item after ${this.items} complete item(s): ${quoted(this.pending)}`);
    if (this.framing === 'array' && this.state !== 'closed') {
      const where = this.state === 'start' ? 'before the JSON array began' : `after ${this.items} item(s) without the closing "]"`;
      throw new ProbeError('protocol', `the stream ended ${where}`);
    }
  }

  private finishItem(text: string): unknown {
    if (text.length > MAX_ITEM_CHARS) throw new ProbeError('protocol', `a streamed JSON item is larger than ${MAX_ITEM_CHARS} characters`);
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      throw new ProbeError('protocol', `item ${this.items + 1} of the stream is not valid JSON (${(err as Error).message}): ${quoted(text)}`);
    }
    this.items++;
    if (this.framing === 'array') this.state = 'next';
    return value;
  }

  private unexpected(ch: string, text: string, i: number, expected: string): ProbeError {
    return new ProbeError('protocol', `expected ${expected} in the stream but got ${shown(ch)} after ${this.items} item(s): ${quoted(text.slice(i))}`);
  }
}

function quoted(text: string): string {
  return excerpt(text, { max: 120, collapse: true, quote: true, redact: true });
}
