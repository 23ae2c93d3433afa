/**
 * Secrets never reach logs, metrics, /probes, CLI output or error messages. Config values that are
 * secrets are held in `Secret` objects that print as "[redacted]", and every resolved secret value
 * is also remembered here so free text (an error message that echoes a header, a URL with a token)
 * is scrubbed before it leaves the process.
 */
const known = new Set<string>();
export const REDACTED = '[redacted]';

// Values shorter than this would scrub ordinary words out of messages; a real token is longer.
const MIN_SECRET_LENGTH = 4;

export function rememberSecret(value: string): void {
  if (value.length >= MIN_SECRET_LENGTH) {
    known.add(value);
    // Also catch the forms a secret is usually sent in.
    known.add(Buffer.from(value).toString('base64'));
    known.add(encodeURIComponent(value));
  }
}

export function redact(text: string): string {
  let out = text;
  for (const s of known) if (out.includes(s)) out = out.split(s).join(REDACTED);
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
