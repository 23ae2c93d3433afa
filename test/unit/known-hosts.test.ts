import { execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { generateLabKey, publicBlob } from '../../src/lab/ssh-server.js';
import { fingerprintSha256, hostKeyCheck, hostsMatch, keyTypeOf, knownHostsName, parseKnownHosts } from '../../src/net/known-hosts.js';
import { tempDir } from '../helpers/cli.js';

const a = generateLabKey('a');
const b = generateLabKey('b');
const line = (hosts: string, k = a) => `${hosts} ${k.parsed.type} ${publicBlob(k).toString('base64')}`;
const hashed = (name: string, salt = Buffer.alloc(20, 7)) => `|1|${salt.toString('base64')}|${createHmac('sha1', salt).update(name).digest('base64')}`;

function file(text: string): string {
  const f = path.join(tempDir(), 'known_hosts');
  fs.writeFileSync(f, text);
  return f;
}

describe('known_hosts', () => {
  it('names: host on 22, [host]:port otherwise, lower case, brackets of IPv6 literals dropped', () => {
    expect(knownHostsName('Example.ORG', 22)).toBe('example.org');
    expect(knownHostsName('127.0.0.1', 2222)).toBe('[127.0.0.1]:2222');
    expect(knownHostsName('[::1]', 22)).toBe('::1');
  });

  it('parses plain, hashed, markers and skips comments, blanks and damaged lines', () => {
    const text = [
      '# comment',
      '',
      line('host1,host2'),
      line(hashed('[10.0.0.1]:22222')),
      `@revoked ${line('bad.example')}`,
      `@cert-authority ${line('*.example')}`,
      '@unknown-marker foo ssh-ed25519 AAAA',
      'too few fields',
      `typo ssh-rsa ${publicBlob(a).toString('base64')}`, // blob says ed25519
      'x ssh-ed25519 not*base64',
    ].join('\n');
    const entries = parseKnownHosts(text);
    expect(entries.map((e) => [e.hosts.startsWith('|1|') ? 'hashed' : e.hosts, e.marker ?? null, e.line])).toEqual([
      ['host1,host2', null, 3],
      ['hashed', null, 4],
      ['bad.example', '@revoked', 5],
      ['*.example', '@cert-authority', 6],
    ]);
    expect(keyTypeOf(entries[0].key)).toBe('ssh-ed25519');
  });

  it('matches hashed names (HMAC-SHA1 with the salt) exactly', () => {
    expect(hostsMatch(hashed('[10.0.0.1]:22222'), '[10.0.0.1]:22222')).toBe(true);
    expect(hostsMatch(hashed('[10.0.0.1]:22222'), '10.0.0.1')).toBe(false);
    expect(hostsMatch('|1|bad', 'x')).toBe(false);
  });

  it('matches pattern lists with wildcards, and a negation wins', () => {
    expect(hostsMatch('*.example.org,!evil.example.org', 'a.example.org')).toBe(true);
    expect(hostsMatch('*.example.org,!evil.example.org', 'evil.example.org')).toBe(false);
    expect(hostsMatch('host?', 'host1')).toBe(true);
    expect(hostsMatch('[127.0.0.1]:2222', '[127.0.0.1]:2222')).toBe(true);
    expect(hostsMatch('[127.0.0.1]:2222', '127.0.0.1')).toBe(false);
    expect(hostsMatch('a.b', 'aXb')).toBe(false); // "." is literal, not a regex wildcard
  });

  it('accepts the listed key, refuses another with a message naming both fingerprints', async () => {
    const f = file(`${line('[127.0.0.1]:2222')}\n${line(hashed('proxy.example'))}\n`);
    const check = await hostKeyCheck({ kind: 'known_hosts', file: f }, '127.0.0.1', 2222);
    expect(check.verify(publicBlob(a))).toBe(true);
    expect(check.algorithms).toEqual(['ssh-ed25519']);
    expect((await hostKeyCheck({ kind: 'known_hosts', file: f }, 'proxy.example', 22)).verify(publicBlob(a))).toBe(true);
    const other = await hostKeyCheck({ kind: 'known_hosts', file: f }, '127.0.0.1', 2222);
    expect(other.verify(publicBlob(b))).toBe(false);
    expect(other.refusal).toContain(fingerprintSha256(publicBlob(b)));
    expect(other.refusal).toContain('does not match the 1 key(s)');
    const unknown = await hostKeyCheck({ kind: 'known_hosts', file: f }, '127.0.0.1', 22);
    expect(unknown.verify(publicBlob(a))).toBe(false);
    expect(unknown.refusal).toContain('no known_hosts entry for 127.0.0.1');
  });

  it('a @revoked key is refused even when also listed as trusted', async () => {
    const f = file(`${line('h')}\n@revoked ${line('*')}\n`);
    const check = await hostKeyCheck({ kind: 'known_hosts', file: f }, 'h', 22);
    expect(check.verify(publicBlob(a))).toBe(false);
    expect(check.refusal).toContain('@revoked');
  });

  it('a file replaced by a FIFO after load is refused as hostkey, without blocking', async () => {
    const f = file(line('h') + '\n');
    fs.rmSync(f);
    execFileSync('mkfifo', [f]);
    await expect(hostKeyCheck({ kind: 'known_hosts', file: f }, 'h', 22)).rejects.toMatchObject({
      reason: 'hostkey',
      message: `cannot check the host key: the known_hosts file ${f} is a FIFO, not a regular file`,
    });
  });

  it('picks up an edited file', async () => {
    const f = file(line('h') + '\n');
    expect((await hostKeyCheck({ kind: 'known_hosts', file: f }, 'h', 22)).verify(publicBlob(b))).toBe(false);
    fs.writeFileSync(f, line('h', b) + '\n# longer now\n');
    expect((await hostKeyCheck({ kind: 'known_hosts', file: f }, 'h', 22)).verify(publicBlob(b))).toBe(true);
  });
});

describe('pinned fingerprints', () => {
  it('match ssh-keygen -lf form; anything else is refused', async () => {
    const fp = fingerprintSha256(publicBlob(a));
    expect(fp).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
    const check = await hostKeyCheck({ kind: 'fingerprints', fingerprints: [fp] }, 'h', 22);
    expect(check.verify(publicBlob(a))).toBe(true);
    expect(check.verify(publicBlob(b))).toBe(false);
    expect(check.refusal).toContain('not a pinned key');
  });

  it('equal what ssh-keygen prints', () => {
    const f = path.join(tempDir(), 'k.pub');
    fs.writeFileSync(f, a.public + '\n');
    let out: string;
    try {
      out = execFileSync('ssh-keygen', ['-lf', f], { encoding: 'utf8' });
    } catch {
      if (process.env.CI === 'true') throw new Error('ssh-keygen is required under CI=true (Debian openssh-client)');
      return;
    }
    expect(out.split(' ')[1]).toBe(fingerprintSha256(publicBlob(a)));
  });
});
