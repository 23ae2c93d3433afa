import { createPrivateKey, sign } from 'node:crypto';
import fs from 'node:fs';
import ssh2, { type ParsedKey } from 'ssh2';
import { z } from 'zod';
import { readableFile, regex, secretRef } from '../../config/fields.js';
import { ProbeError } from '../../core/errors.js';
import type { Secret } from '../../core/redact.js';
import type { HostKeyPolicy } from '../../net/known-hosts.js';
import type { SshCredentials } from '../../net/ssh-client.js';

/**
 * The SSH fields of probe definitions (keys, host keys, the command's checks) and what a run makes
 * of them, for every kind that opens an SSH session (ssh, and tunnel's `ssh` check).
 */

const FINGERPRINT = /^SHA256:[A-Za-z0-9+/]{43}$/;
const FINGERPRINT_MESSAGE = 'a pinned host key is a SHA256: fingerprint (as printed by ssh-keygen -lf)';

/** Pinned `SHA256:` fingerprints (one or a list), or `{file: known_hosts}`. */
export const hostKeys = z.union([
  z
    .string()
    .regex(FINGERPRINT, FINGERPRINT_MESSAGE)
    .transform((f) => [f]),
  z.array(z.string().regex(FINGERPRINT, FINGERPRINT_MESSAGE)).min(1),
  z.strictObject({ file: readableFile }),
]);
export type HostKeys = z.output<typeof hostKeys>;

/** A private key (OpenSSH or PEM) by reference; checked at load without its passphrase. */
export const privateKeyRef = secretRef.superRefine((s, ctx) => {
  const parsed = ssh2.utils.parseKey((s as Secret).reveal());
  // Only "it is encrypted" is fine here: the passphrase is a separate field, checked at run.
  if (parsed instanceof Error && !/encrypted|passphrase/i.test(parsed.message)) {
    ctx.addIssue({ code: 'custom', message: `not a private key fleetprobe can read (${parsed.message.replace(/^Cannot parse privateKey: /, '')})` });
  }
});

/** What the command must have done: its exit status and output. */
export const sshExpect = z
  .strictObject({
    exitStatus: z.number().int().min(0).max(255).default(0),
    stdout: z.string().optional(),
    stdoutRegex: regex.optional(),
    stdoutNotRegex: regex.optional(),
  })
  .default({ exitStatus: 0 });

export const sshCommand = z.string().min(1).default('cat /etc/os-release');

/** Output kept for the checks; more is read and dropped. */
export const maxOutputBytes = z
  .number()
  .int()
  .min(1)
  .max(4 * 1024 * 1024)
  .default(64 * 1024);

/** The credential fields, as parsed. */
export interface SshKeyFields {
  sshKey?: Secret;
  sshKeyPassphrase?: Secret;
  hostKeys?: HostKeys;
  insecureAcceptAnyHostKey: boolean;
}

/** Load-time problems of the credential fields every SSH session needs; `prefix` is where they sit ("ssh."). */
export function credentialProblems(c: SshKeyFields, prefix = ''): { field: string; message: string }[] {
  const out: { field: string; message: string }[] = [];
  if (!c.hostKeys && !c.insecureAcceptAnyHostKey) {
    out.push({
      field: `${prefix}hostKeys`,
      message: 'is required: pinned SHA256: fingerprints or {file: known_hosts} (insecureAcceptAnyHostKey: true turns verification off)',
    });
  }
  if (!c.sshKey && !process.env.SSH_AUTH_SOCK)
    out.push({ field: `${prefix}sshKey`, message: 'is required when no ssh-agent is available (SSH_AUTH_SOCK is not set)' });
  return out;
}

// Parsing an encrypted key runs bcrypt-pbkdf: do it once per key (per config load), not on every run.
const parsedKeys = new WeakMap<Secret, ParsedKey>();
export function parsedKey(key: Secret, passphrase: Secret | undefined): ParsedKey {
  const hit = parsedKeys.get(key);
  if (hit) return hit;
  const parsed = ssh2.utils.parseKey(key.reveal(), passphrase?.reveal());
  if (parsed instanceof Error) {
    const why = parsed.message.replace(/^Cannot parse privateKey: /, '');
    throw new Error(passphrase ? `the private key cannot be decrypted with this passphrase (${why})` : `the private key cannot be read (${why})`);
  }
  const one = signingOnce(Array.isArray(parsed) ? parsed[0] : parsed);
  parsedKeys.set(key, one);
  return one;
}

/**
 * ssh2's parsed key signs with its private key as PEM text, which OpenSSL decodes again for every
 * signature: 0.5 ms for an ed25519 key, ten times the signature itself. The key signs instead with
 * a KeyObject made here, once; the output (and ssh2's hash choice) is the same.
 */
function signingOnce(key: ParsedKey): ParsedKey {
  const pem = key.getPrivatePEM();
  if (!pem) return key;
  const keyObject = createPrivateKey(pem);
  // ssh2 keeps the key type's default hash (null for ed25519, sha1/sha256/... for RSA and ECDSA) under a private symbol.
  const hashSymbol = Object.getOwnPropertySymbols(key).find((s) => s.description === 'Hash Algorithm');
  const defaultHash = hashSymbol ? ((key as unknown as Record<symbol, string | null>)[hashSymbol] ?? null) : null;
  // As ssh2's own: a failure is returned, not thrown (its types say Buffer only).
  key.sign = ((data: Buffer | string, algo?: string) => {
    try {
      return sign(algo || defaultHash, typeof data === 'string' ? Buffer.from(data) : data, keyObject);
    } catch (err) {
      return err as Error;
    }
  }) as ParsedKey['sign'];
  return key;
}

export function policyOf(keys: HostKeys | undefined, insecure: boolean): HostKeyPolicy {
  if (insecure) return { kind: 'any' };
  if (!keys) throw new ProbeError('internal', 'no host keys configured');
  return Array.isArray(keys) ? { kind: 'fingerprints', fingerprints: keys } : { kind: 'known_hosts', file: keys.file };
}

/** The key of the probe, or else the ssh-agent's (SSH_AUTH_SOCK). */
export function credentialsOf(c: Pick<SshKeyFields, 'sshKey' | 'sshKeyPassphrase'>): SshCredentials {
  if (c.sshKey) return { privateKey: parsedKey(c.sshKey, c.sshKeyPassphrase) };
  const agentSocket = process.env.SSH_AUTH_SOCK;
  if (!agentSocket || !fs.existsSync(agentSocket))
    throw new ProbeError(
      'auth',
      `no private key configured and the ssh-agent socket ${agentSocket ? 'SSH_AUTH_SOCK points to does not exist' : '(SSH_AUTH_SOCK) is not set'}`,
    );
  return { agentSocket };
}
