import { redact, REDACTED, Secret } from '../core/redact.js';

/**
 * A probe's settings as loaded, fit to show anyone who can reach the daemon: a secret appears as
 * the reference it was given by (`{env: NAME}`, `{file: PATH}`), never as its value; every string
 * is also scrubbed by redact() (a URL's userinfo, a known secret) and a URL's query values are
 * hidden, since a URL field may only carry a token there (`?token=${VAR}`), not as a reference.
 */
export function configView(value: unknown): unknown {
  return view(value, new WeakSet());
}

function view(value: unknown, seen: WeakSet<object>): unknown {
  if (value instanceof Secret) return secretReference(value.source);
  if (typeof value === 'string') return hideQueryValues(redact(value));
  if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined) return value;
  if (typeof value !== 'object') return typeof value === 'bigint' ? String(value) : undefined; // functions, symbols
  if (value instanceof RegExp) return `/${value.source}/${value.flags}`;
  if (value instanceof URL) return hideQueryValues(redact(value.href));
  if (ArrayBuffer.isView(value)) return `(${value.byteLength} bytes)`;
  if (seen.has(value)) return '(cycle)';
  seen.add(value);
  try {
    if (Array.isArray(value)) return value.map((v) => view(v, seen));
    const entries = value instanceof Map ? [...value.entries()] : Object.entries(value);
    const out: Record<string, unknown> = {};
    for (const [k, v] of entries) {
      const shown = view(v, seen);
      if (shown !== undefined) out[String(k)] = shown;
    }
    return out;
  } finally {
    seen.delete(value);
  }
}

/** `env:NAME` → `{env: NAME}`, `file:PATH` → `{file: PATH}`: how the reference was written. */
function secretReference(source: string): Record<string, string> {
  const m = /^(env|file):(.*)$/s.exec(source);
  return m ? { [m[1]]: m[2] } : { secret: source };
}

/** `https://h/p?a=1&b` → `https://h/p?a=[redacted]&b`; other strings as they are. */
function hideQueryValues(text: string): string {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) return text;
  return text.replace(/\?([^#]*)/, (_, query: string) => '?' + query.replace(/=[^&]*/g, `=${REDACTED}`));
}
