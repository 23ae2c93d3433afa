/**
 * Secrets never reach logs, metrics, /probes, CLI output or error messages. Config values that are
 * secrets are held in `Secret` objects that print as "[redacted]", and every resolved secret value
 * is also remembered here so free text (an error message that echoes a header, a URL with a token)
 * is scrubbed before it leaves the process.
 *
 * A server echoes what it was sent in whatever form it holds it, so each secret is remembered in
 * every form derived from it that a peer can plausibly quote (see derivedForms), and matched
 * without regard to case (URL parsing lowercases a host that carries a token).
 */
const remembered = new Set<string>();
const forms = new Set<string>();
let pattern: RegExp | undefined;
export const REDACTED = '[redacted]';

// Values shorter than this would scrub ordinary words out of messages; a real token is longer.
const MIN_SECRET_LENGTH = 4;
// Parts cut out of a secret (the token of `Bearer <token>`, the password of `user:password`, a line
// of a key) and shifted base64 cores must be at least this long to be worth scrubbing on their own.
const MIN_PART_LENGTH = 8;

export function rememberSecret(value: string): void {
  if (value.length < MIN_SECRET_LENGTH || remembered.has(value)) return;
  remembered.add(value);
  for (const f of derivedForms(value)) if (f.length >= MIN_SECRET_LENGTH) forms.add(f);
  pattern = undefined;
}

/**
 * The secret and what a peer may echo of it: the credential part of an auth header value
 * (`Bearer <token>`, `Basic <base64>` and the `user:password` inside it), each line of a multi-line
 * secret (a key), and of each of those: base64 (standard and URL-safe, at every alignment inside a
 * longer encoded text), percent-, form- and JSON-encoding.
 */
function derivedForms(value: string): string[] {
  const parts = new Set([value]);
  // RFC 7235 credentials: a scheme, then a token68.
  const auth = /^\s*([A-Za-z][A-Za-z0-9_-]*)\s+([A-Za-z0-9._~+/-]+=*)\s*$/.exec(value);
  if (auth) {
    parts.add(auth[2]);
    if (auth[1].toLowerCase() === 'basic') {
      const decoded = Buffer.from(auth[2], 'base64').toString('utf8');
      if (/^[\x20-\x7e]+:[\x20-\x7e]+$/.test(decoded)) parts.add(decoded).add(decoded.slice(decoded.indexOf(':') + 1));
    }
  }
  // A key's armour lines (`-----BEGIN ...`) are no secret and appear in ordinary messages.
  if (value.includes('\n')) for (const line of value.split(/\r?\n/)) if (!line.startsWith('-----')) parts.add(line.trim());
  const out: string[] = [];
  for (const p of parts) {
    if (p !== value && p.length < MIN_PART_LENGTH) continue;
    const b64 = Buffer.from(p).toString('base64');
    out.push(p, b64, b64.replace(/=+$/, ''), Buffer.from(p).toString('base64url'), encodeURIComponent(p));
    out.push(new URLSearchParams({ v: p }).toString().slice(2), JSON.stringify(p).slice(1, -1));
    for (const core of shiftedBase64(p)) out.push(core, core.replace(/\+/g, '-').replace(/\//g, '_'));
  }
  return out;
}

/**
 * The characters of base64 that depend on `text` alone when it sits at byte offset 0, 1 or 2 of a
 * longer encoded blob (an echo of our whole request, base64-encoded): the groups mixed with the
 * bytes around it differ with those bytes, the rest is the same wherever the text is.
 */
function shiftedBase64(text: string): string[] {
  const bytes = Buffer.from(text);
  const out: string[] = [];
  for (let shift = 0; shift < 3; shift++) {
    const encoded = Buffer.concat([Buffer.alloc(shift), bytes]).toString('base64');
    const whole = Math.floor((shift + bytes.length) / 3) * 4;
    const core = encoded.slice(shift ? 4 : 0, whole);
    if (core.length >= MIN_PART_LENGTH) out.push(core);
  }
  return out;
}

/** One case-insensitive alternation of every form, longest first so a form wins over its prefix. */
function secretsPattern(): RegExp | undefined {
  if (!pattern && forms.size) {
    const sorted = [...forms].sort((a, b) => b.length - a.length);
    pattern = new RegExp(sorted.map((f) => f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'gi');
  }
  return pattern;
}

export function redact(text: string): string {
  const known = secretsPattern();
  let out = known ? text.replace(known, REDACTED) : text;
  // Credentials in URLs and auth headers, even when we did not know them as secrets.
  out = out.replace(/(\/\/)[^/@\s:]+:[^/@\s]+@/g, `$1${REDACTED}@`);
  out = out.replace(/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}/gi, `$1 ${REDACTED}`);
  return out;
}

/** A secret value from config. Its only way out is `reveal()`, which kinds call at the last moment. */
export class Secret {
  readonly #value: string;
  readonly source: string;
  constructor(value: string, source: string) {
    this.#value = value;
    this.source = source;
    rememberSecret(value);
  }
  reveal(): string {
    return this.#value;
  }
  toString(): string {
    return REDACTED;
  }
  toJSON(): string {
    return REDACTED;
  }
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return `Secret(${this.source})`;
  }
}
