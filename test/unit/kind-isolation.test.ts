import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { KIND_NAMES } from '../../src/kinds/index.js';

/**
 * Kinds stand on one shared layer and never on each other. A kind's files (`<kind>.ts`,
 * `<kind>-*.ts` in src/kinds) import only their own kind's files, src/kinds/shared, src/net,
 * src/core and src/config; src/kinds/shared imports no kind. And a kind file does not define a
 * field src/kinds/shared holds (a device uuid, a host:port, the TLS block, an http(s) URL): a
 * second copy is how the three uuid checks came to disagree.
 */

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));
const KINDS_DIR = path.join(SRC, 'kinds');
const SHARED_DIR = path.join(KINDS_DIR, 'shared');
const rel = (file: string) => path.relative(path.join(SRC, '..'), file);

/** Layers below the kinds that any kind file may import. */
const BELOW = ['net', 'core', 'config'].map((d) => path.join(SRC, d) + path.sep);

function kindOf(file: string): string | undefined {
  if (path.dirname(file) !== KINDS_DIR) return undefined;
  const base = path.basename(file, '.ts');
  return KIND_NAMES.find((k) => base === k || base.startsWith(`${k}-`));
}

/** The relative imports of a source file (static, type-only, re-exports and dynamic), resolved to .ts paths. */
function importsOf(file: string, text = fs.readFileSync(file, 'utf8')): string[] {
  return ts
    .preProcessFile(text, true, true)
    .importedFiles.map((i) => i.fileName)
    .filter((spec) => spec.startsWith('.'))
    .map((spec) => path.resolve(path.dirname(file), spec).replace(/\.js$/, '.ts'));
}

/** Why `file` (of kind `kind`, or shared when undefined) may not import `target`, if it may not. */
function forbidden(kind: string | undefined, target: string): string | undefined {
  if (BELOW.some((d) => target.startsWith(d))) return undefined;
  if (target.startsWith(SHARED_DIR + path.sep)) return undefined;
  const other = kindOf(target);
  if (kind !== undefined && other === kind) return undefined;
  if (other !== undefined) return `another kind (${other}): move what both use to src/kinds/shared/`;
  return 'not a layer below the kinds (src/kinds/shared, src/net, src/core, src/config)';
}

/** Fields that live in src/kinds/shared, as a kind file would write its own copy of them. */
const OWN_COPIES: [string, RegExp][] = [
  // A regular expression over hexadecimal digits: a device uuid check.
  ['a device uuid check (use deviceUuid from shared/device.ts)', /\.regex\(\s*\/[^/\n]*(a-f|A-F)[^/\n]*\//],
  ['a device uuid check (use isDeviceUuid from shared/device.ts)', /\/\^?\[(0-9a-fA-F|a-fA-F0-9|0-9A-Fa-f|a-f0-9|0-9a-f)\][+{]/],
  // A port after a colon in a regular expression: host:port parsing.
  ['host:port parsing (use parseHostPort/hostPortField from shared/host-port.ts)', /\/[^/\n]*:\(?\\d(\{1,5\}|\+)[^/\n]*\//],
  ['the TLS block (use tlsField/proxyTlsField from shared/tls.ts)', /\b(caFile|serverName|insecureSkipVerify)\s*:\s*(z\.|readableFile)/],
  ['an http(s) URL field (use httpUrl from shared/http-expect.ts)', /\bz\.url\(/],
];

function ownCopies(text: string): string[] {
  return OWN_COPIES.filter(([, re]) => re.test(text)).map(([what]) => what);
}

const kindFiles = fs
  .readdirSync(KINDS_DIR, { withFileTypes: true })
  .filter((e) => e.isFile() && e.name.endsWith('.ts') && e.name !== 'index.ts')
  .map((e) => path.join(KINDS_DIR, e.name));
const sharedFiles = fs
  .readdirSync(SHARED_DIR)
  .filter((n) => n.endsWith('.ts'))
  .map((n) => path.join(SHARED_DIR, n));

describe('kind isolation', () => {
  it('every file in src/kinds belongs to one kind by its name, or to shared/ (index.ts is the list of kinds)', () => {
    for (const k of KIND_NAMES) expect(fs.existsSync(path.join(KINDS_DIR, `${k}.ts`)), `src/kinds/${k}.ts`).toBe(true);
    const orphans = kindFiles.filter((f) => kindOf(f) === undefined).map(rel);
    expect(orphans, 'name a kind helper <kind>-*.ts, or move it to src/kinds/shared/').toEqual([]);
  });

  it('a kind imports only its own files, src/kinds/shared, src/net, src/core and src/config', () => {
    const bad = kindFiles.flatMap((f) =>
      importsOf(f).flatMap((t) => {
        const why = forbidden(kindOf(f), t);
        return why ? [`${rel(f)} imports ${rel(t)}: ${why}`] : [];
      }),
    );
    expect(bad.join('\n')).toBe('');
  });

  it('src/kinds/shared imports no kind', () => {
    const bad = sharedFiles.flatMap((f) =>
      importsOf(f).flatMap((t) => {
        const why = forbidden(undefined, t);
        return why ? [`${rel(f)} imports ${rel(t)}: ${why}`] : [];
      }),
    );
    expect(bad.join('\n')).toBe('');
  });

  it('no kind file defines a uuid, host:port, TLS or URL field of its own', () => {
    const bad = kindFiles.flatMap((f) => ownCopies(fs.readFileSync(f, 'utf8')).map((what) => `${rel(f)} defines ${what}`));
    expect(bad.join('\n')).toBe('');
  });

  // The checks above pass vacuously if they see nothing: they must catch what the tree used to hold.
  it('catches the copies and imports the kinds used to have', () => {
    const before = [
      `device: z.string().regex(/^[0-9a-fA-F]{7,64}$/, 'a device uuid is hexadecimal').optional(),`,
      `const hex = z.string().regex(/^[a-fA-F0-9]+$/, 'a device uuid is hexadecimal');`,
      `if (typeof rec.uuid !== 'string' || !/^[0-9a-fA-F]+$/.test(rec.uuid)) {`,
      `const m = /^(?:\\[([0-9A-Fa-f:.]+)\\]|([^\\s:[\\]/]+))(?::(\\d{1,5}))?$/.exec(v);`,
      `target: z.string().regex(/^(\\[[0-9a-fA-F:.]+\\]|[^:\\s[\\]]+):\\d{1,5}$/, 'a target is host:port').optional(),`,
      `const tcp = /^(?:tcp|http):\\/\\/(\\[[^\\]]+\\]|[^:/]+):(\\d+)\\/?$/.exec(v);`,
      `tls: z.strictObject({ caFile: readableFile.optional(), insecureSkipVerify: z.boolean().default(false) }),`,
      `api: z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' }),`,
    ];
    for (const line of before) expect(ownCopies(line), line).not.toEqual([]);
    expect(ownCopies(fs.readFileSync(path.join(SHARED_DIR, 'device.ts'), 'utf8'))).not.toEqual([]);

    const tunnel = path.join(KINDS_DIR, 'tunnel.ts');
    const was = `import { excerpt } from './http.js';\nimport type { ApiDevice } from './device-status-api.js';\nimport { KINDS } from './index.js';\nimport { x } from '../lab/index.js';\nconst m = await import('./ssh.js');\n`;
    expect(importsOf(tunnel, was).map((t) => forbidden('tunnel', t) !== undefined)).toEqual([true, true, true, true, true]);
    expect(forbidden('tunnel', path.join(KINDS_DIR, 'tunnel-session.ts'))).toBeUndefined();
    expect(forbidden(undefined, path.join(KINDS_DIR, 'tunnel-session.ts'))).toMatch(/another kind/);
  });
});
