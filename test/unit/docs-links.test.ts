import fs from 'node:fs';
import path from 'node:path';
import GithubSlugger from 'github-slugger';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/cli.js';

/**
 * Every relative link of the Markdown pages points somewhere real: a file or folder of the
 * repository, and where it names an anchor, a heading of that page (slugged as GitHub does, which
 * is where the pages are read). Source comments that cite docs/protocols.md name one of its sections.
 */

/**
 * Pages linked before they exist because another change writes them; each entry names that change.
 * An entry fails the test as soon as its page exists: then it is checked like any other, and the
 * entry goes.
 */
const PENDING: Record<string, string> = {};

const SKIP_DIRS = new Set(['node_modules', 'dist', 'dist-scripts', '.git', 'coverage']);

function markdownFiles(dir = ROOT): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    if (e.isDirectory()) return SKIP_DIRS.has(e.name) ? [] : markdownFiles(path.join(dir, e.name));
    return e.name.endsWith('.md') ? [path.join(dir, e.name)] : [];
  });
}

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(p);
    return e.name.endsWith('.ts') ? [p] : [];
  });
}

/** The page without fenced code blocks, inline code and HTML comments: links in those are not links. */
function prose(text: string): string {
  return text
    .replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '')
    .replace(/<!--[\s\S]*?-->/g, '')
    .replace(/`[^`\n]*`/g, 'code');
}

/** The anchors a page offers: its headings as GitHub slugs them, and explicit `<a id>`/`<a name>`. */
function anchorsOf(file: string): Set<string> {
  const text = fs.readFileSync(file, 'utf8');
  const slugger = new GithubSlugger();
  const withoutFences = text.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '');
  const headings = [...withoutFences.matchAll(/^#{1,6}[ \t]+(.+?)[ \t#]*$/gm)].map((m) => slugger.slug(m[1]));
  const explicit = [...text.matchAll(/<a\s+(?:id|name)="([^"]+)"/g)].map((m) => m[1]);
  return new Set([...headings, ...explicit]);
}

interface Link {
  from: string;
  target: string;
}

function linksOf(file: string): Link[] {
  const from = path.relative(ROOT, file);
  return [...prose(fs.readFileSync(file, 'utf8')).matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].map((m) => ({ from, target: m[1] }));
}

/** What is wrong with a link, or undefined when it resolves. */
function problemOf(link: Link): string | undefined {
  if (/^[a-z][a-z0-9+.-]*:/i.test(link.target)) return undefined; // https:, mailto: ...: not ours to check
  const [rawPath, anchor] = link.target.split('#', 2);
  const file = rawPath ? path.resolve(ROOT, path.dirname(link.from), decodeURIComponent(rawPath)) : path.join(ROOT, link.from);
  const rel = path.relative(ROOT, file);
  if (rel.startsWith('..')) return 'points outside the repository';
  if (!fs.existsSync(file)) return Object.hasOwn(PENDING, rel) ? undefined : `${rel} does not exist`;
  if (anchor && file.endsWith('.md') && !anchorsOf(file).has(anchor.toLowerCase())) return `${rel} has no heading #${anchor}`;
  return undefined;
}

describe('links in the docs', () => {
  const pages = markdownFiles();

  it('finds the pages', () => {
    const names = pages.map((p) => path.relative(ROOT, p));
    expect(names).toContain('README.md');
    expect(names).toContain('docs/configuration.md');
  });

  it('every relative link resolves to a file, and every anchor to a heading', () => {
    const links = pages.flatMap(linksOf);
    expect(links.length).toBeGreaterThan(20);
    const broken = links.flatMap((l) => {
      const problem = problemOf(l);
      return problem ? [`${l.from}: (${l.target}): ${problem}`] : [];
    });
    expect(broken).toEqual([]);
  });

  it('a pending page is still missing (once it exists, drop it from PENDING)', () => {
    for (const page of Object.keys(PENDING)) expect(fs.existsSync(path.join(ROOT, page)), `${page} exists: remove it from PENDING`).toBe(false);
  });

  it('the checker itself catches a missing file and a missing anchor', () => {
    expect(problemOf({ from: 'README.md', target: 'docs/no-such-page.md' })).toMatch(/does not exist/);
    expect(problemOf({ from: 'README.md', target: 'docs/configuration.md#kind-nonesuch' })).toMatch(/no heading/);
    expect(problemOf({ from: 'docs/lab.md', target: '#faults' })).toBeUndefined();
    expect(problemOf({ from: 'docs/lab.md', target: '../probes/lab.yaml' })).toBeUndefined();
  });
});

describe('protocol notes cited from the source', () => {
  const protocols = anchorsOf(path.join(ROOT, 'docs/protocols.md'));
  const slug = (title: string) => new GithubSlugger().slug(title);
  // A comment may wrap inside a citation: join its lines first.
  const sources = sourceFiles(path.join(ROOT, 'src')).map((f) => ({
    file: path.relative(ROOT, f),
    text: fs.readFileSync(f, 'utf8').replace(/\n[ \t]*(?:\*|\/\/)[ \t]?/g, ' '),
  }));

  it('every `docs/protocols.md "Section"` names a section that exists', () => {
    const cites = sources.flatMap(({ file, text }) => [...text.matchAll(/docs\/protocols\.md "([^"]+)"/g)].map((m) => ({ file, section: m[1] })));
    expect(cites.length).toBeGreaterThan(0);
    expect(cites.filter((c) => !protocols.has(slug(c.section)))).toEqual([]);
  });

  it('no comment cites a PROTOCOLS.md outside the repository', () => {
    const stale = sources.filter(({ text }) => /(?<!docs\/)PROTOCOLS\.md/.test(text)).map((s) => s.file);
    expect(stale).toEqual([]);
  });
});
