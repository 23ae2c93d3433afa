import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import { InputFileError, MAX_BUNDLE_FILE_BYTES, readInputFile } from '../config/files.js';
import { ProbeError } from '../core/errors.js';

/**
 * SSH host-key verification: pinned `SHA256:` fingerprints or an OpenSSH known_hosts file. A key is
 * compared as the raw public-key blob the server sent (type + key material), like OpenSSH does.
 */

/** `SHA256:<base64, no padding>` of a public-key blob: what `ssh-keygen -lf` and `ssh` print. */
export function fingerprintSha256(blob: Buffer): string {
  return 'SHA256:' + createHash('sha256').update(blob).digest('base64').replace(/=+$/, '');
}

/** The key type written at the start of a public-key blob (e.g. `ssh-ed25519`). */
export function keyTypeOf(blob: Buffer): string {
  if (blob.length < 4) return 'unknown';
  const len = blob.readUInt32BE(0);
  return len > 0 && len <= 64 && blob.length >= 4 + len ? blob.subarray(4, 4 + len).toString('latin1') : 'unknown';
}

export interface KnownHostEntry {
  marker?: '@revoked' | '@cert-authority';
  /** Plain patterns (comma list, may use * ? and !negation), or a hashed `|1|salt|hash` name. */
  hosts: string;
  keyType: string;
  key: Buffer;
  line: number;
}

/** Parses a known_hosts text; comments, blank lines and lines it cannot read are skipped (as ssh does). */
export function parseKnownHosts(text: string): KnownHostEntry[] {
  const out: KnownHostEntry[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) return;
    const fields = line.split(/\s+/);
    let marker: KnownHostEntry['marker'];
    if (fields[0] === '@revoked' || fields[0] === '@cert-authority') marker = fields.shift() as KnownHostEntry['marker'];
    else if (fields[0].startsWith('@')) return;
    if (fields.length < 3) return;
    const [hosts, keyType, b64] = fields;
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return;
    const key = Buffer.from(b64, 'base64');
    // The blob repeats its type; a mismatch means a damaged line, not a key to trust.
    if (keyTypeOf(key) !== keyType) return;
    out.push({ marker, hosts, keyType, key, line: i + 1 });
  });
  return out;
}

/** The name OpenSSH looks up: `host` on port 22, `[host]:port` otherwise. */
export function knownHostsName(host: string, port: number): string {
  const bare = host.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  return port === 22 ? bare : `[${bare}]:${port}`;
}

function globToRegExp(pattern: string): RegExp {
  const body = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${body}$`, 'i');
}

function hashedMatches(hosts: string, name: string): boolean {
  // |1|base64(salt)|base64(HMAC-SHA1(salt, name))
  const parts = hosts.split('|');
  if (parts.length !== 4 || parts[1] !== '1') return false;
  const salt = Buffer.from(parts[2], 'base64');
  const want = Buffer.from(parts[3], 'base64');
  const got = createHmac('sha1', salt).update(name).digest();
  return want.length === got.length && timingSafeEqual(want, got);
}

/** Whether an entry's host field names `name` (hashed, or a pattern list where a negation wins). */
export function hostsMatch(hosts: string, name: string): boolean {
  if (hosts.startsWith('|')) return hashedMatches(hosts, name);
  let matched = false;
  for (const p of hosts.split(',')) {
    if (p.startsWith('!')) {
      if (globToRegExp(p.slice(1)).test(name)) return false;
    } else if (globToRegExp(p).test(name)) matched = true;
  }
  return matched;
}

/** Host-key algorithms to offer for a key type, best first, so the server presents a key we know. */
const ALGORITHMS_FOR_TYPE: Record<string, string[]> = {
  'ssh-ed25519': ['ssh-ed25519'],
  'ssh-rsa': ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'],
  'ecdsa-sha2-nistp256': ['ecdsa-sha2-nistp256'],
  'ecdsa-sha2-nistp384': ['ecdsa-sha2-nistp384'],
  'ecdsa-sha2-nistp521': ['ecdsa-sha2-nistp521'],
};

/** What a server's key was checked against, decided once per probe (not per run). */
export type HostKeyPolicy = { kind: 'fingerprints'; fingerprints: readonly string[] } | { kind: 'known_hosts'; file: string } | { kind: 'any' };

export interface HostKeyCheck {
  /** For ssh2's hostVerifier: true to accept. Records why it refused, for the error message. */
  verify(blob: Buffer): boolean;
  /** Host-key algorithms to offer (undefined: ssh2's defaults). */
  algorithms?: string[];
  /** Set after a refusal: what was presented and what was expected, with no secrets in it. */
  refusal?: string;
}

// known_hosts files are read at most once per change: a run must not re-parse a large file, nor
// match every (hashed: an HMAC each) entry against the host again. A run only stats the file, in
// place: stat does not block on a FIFO, and a thread-pool round trip would cost more than the call.
// A changed file is read asynchronously, checked as config inputs are (a regular file of at most
// 10 MiB).
interface KnownHostsFile {
  mtimeMs: number;
  size: number;
  entries: KnownHostEntry[];
  /** The entries naming each host (knownHostsName), found once per file version. */
  byName: Map<string, KnownHostEntry[]>;
}
const fileCache = new Map<string, KnownHostsFile>();
async function knownHostsFile(file: string): Promise<KnownHostsFile> {
  try {
    const st = fs.statSync(file);
    const hit = fileCache.get(file);
    if (hit && hit.mtimeMs === st.mtimeMs && hit.size === st.size) return hit;
    const entries = parseKnownHosts((await readInputFile(file, MAX_BUNDLE_FILE_BYTES)).toString('utf8'));
    const fresh = { mtimeMs: st.mtimeMs, size: st.size, entries, byName: new Map<string, KnownHostEntry[]>() };
    fileCache.set(file, fresh);
    return fresh;
  } catch (err) {
    const why = err instanceof InputFileError ? err.problem : `cannot be read: ${(err as Error).message}`;
    throw new ProbeError('hostkey', `cannot check the host key: the known_hosts file ${file} ${why}`, { cause: err });
  }
}

/** The entries of `file` naming `name` (not @cert-authority ones, which we do not support). */
async function entriesFor(file: string, name: string): Promise<KnownHostEntry[]> {
  const known = await knownHostsFile(file);
  let matching = known.byName.get(name);
  if (!matching) {
    matching = known.entries.filter((e) => e.marker !== '@cert-authority' && hostsMatch(e.hosts, name));
    known.byName.set(name, matching);
  }
  return matching;
}

/** Builds the check for one server (`host`:`port` as the probe names it). */
export async function hostKeyCheck(policy: HostKeyPolicy, host: string, port: number): Promise<HostKeyCheck> {
  const name = knownHostsName(host, port);
  if (policy.kind === 'any') return { verify: () => true };
  if (policy.kind === 'fingerprints') {
    const check: HostKeyCheck = {
      verify(blob) {
        const fp = fingerprintSha256(blob);
        if (policy.fingerprints.includes(fp)) return true;
        check.refusal = `host key of ${name} is ${keyTypeOf(blob)} ${fp}, not a pinned key (${policy.fingerprints.join(', ')})`;
        return false;
      },
    };
    return check;
  }
  const matching = await entriesFor(policy.file, name);
  const trusted = matching.filter((e) => !e.marker);
  const revoked = matching.filter((e) => e.marker === '@revoked');
  const types = [...new Set(trusted.map((e) => e.keyType))];
  const algorithms = types.every((t) => ALGORITHMS_FOR_TYPE[t]) && types.length ? types.flatMap((t) => ALGORITHMS_FOR_TYPE[t]) : undefined;
  const check: HostKeyCheck = {
    algorithms,
    verify(blob) {
      const fp = fingerprintSha256(blob);
      if (revoked.some((e) => e.key.equals(blob))) {
        check.refusal = `host key of ${name} (${keyTypeOf(blob)} ${fp}) is marked @revoked in ${policy.file}`;
        return false;
      }
      if (trusted.some((e) => e.key.equals(blob))) return true;
      check.refusal = trusted.length
        ? `host key of ${name} is ${keyTypeOf(blob)} ${fp}, which does not match the ${trusted.length} key(s) for it in ${policy.file} (lines ${trusted.map((e) => e.line).join(', ')}): the key changed or someone is in the middle`
        : `no known_hosts entry for ${name} in ${policy.file} (server presented ${keyTypeOf(blob)} ${fp})`;
      return false;
    },
  };
  return check;
}
