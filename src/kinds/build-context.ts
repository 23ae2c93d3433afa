import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import tar, { type Header } from 'tar-stream';
import { ProbeError } from '../core/errors.js';
import type { ProbeContext } from '../core/kind.js';

/**
 * The build context of a `build` probe, packed in memory on every run: the files of a small
 * directory, or an inline Dockerfile, plus a fresh nonce file. A Dockerfile that copies the nonce
 * (the default one does) invalidates the builder's cache from that step on, so every run really builds
 * something instead of answering from cache in a second.
 */

const NONCE_FILE = 'fleetprobe-nonce';
/** Builds everywhere with no registry access: nothing to pull, one layer holding the nonce. */
const DEFAULT_DOCKERFILE = `FROM scratch\nCOPY ${NONCE_FILE} /${NONCE_FILE}\n`;

/** A probe's context is small by design; a big one is a mistake (wrong directory) that would cost every run. */
const MAX_CONTEXT_BYTES = 16 * 1024 * 1024;
const MAX_CONTEXT_FILES = 1000;

interface ContextSource {
  /** Absolute path of a directory to send (its Dockerfile included). */
  dir?: string;
  /** An inline Dockerfile, sent as the whole context with the nonce. */
  dockerfile?: string;
  /** Where the inline Dockerfile goes in the context. */
  dockerfileName: string;
}

export interface PackedContext {
  /** The tar (gzipped when asked). */
  body: Buffer;
}

interface Entry {
  header: Partial<Header> & { name: string };
  content?: Buffer;
}

async function walk(root: string, rel: string, out: Entry[], budget: { bytes: number }): Promise<void> {
  const dir = path.join(root, rel);
  const names = (await fs.readdir(dir)).sort();
  for (const name of names) {
    const relPath = rel ? `${rel}/${name}` : name;
    const full = path.join(root, relPath);
    const st = await fs.lstat(full);
    if (out.length >= MAX_CONTEXT_FILES)
      throw new ProbeError('internal', `the build context ${root} holds more than ${MAX_CONTEXT_FILES} entries; a probe's context should be a few small files`);
    const base = { name: relPath, mode: st.mode & 0o7777, mtime: st.mtime, uid: 0, gid: 0 };
    if (st.isDirectory()) {
      out.push({ header: { ...base, type: 'directory' } });
      await walk(root, relPath, out, budget);
    } else if (st.isSymbolicLink()) {
      out.push({ header: { ...base, type: 'symlink', linkname: await fs.readlink(full) } });
    } else if (st.isFile()) {
      budget.bytes += st.size;
      if (budget.bytes > MAX_CONTEXT_BYTES)
        throw new ProbeError('internal', `the build context ${root} is larger than ${MAX_CONTEXT_BYTES} bytes; a probe's context should be a few small files`);
      out.push({ header: { ...base, type: 'file', size: st.size }, content: await fs.readFile(full) });
    }
    // Sockets, fifos and devices have no place in a build context: left out, as docker does.
  }
}

const gzip = promisify(zlib.gzip);

async function packContext(src: ContextSource, opts: { gzip: boolean }): Promise<PackedContext> {
  const nonce = `${new Date().toISOString()} ${randomUUID()}\n`;
  const entries: Entry[] = [];
  const budget = { bytes: 0 };
  if (src.dir) await walk(src.dir, '', entries, budget);
  else {
    const content = Buffer.from(src.dockerfile ?? DEFAULT_DOCKERFILE);
    entries.push({ header: { name: src.dockerfileName, type: 'file', mode: 0o644, size: content.length, mtime: new Date() }, content });
  }
  if (entries.some((e) => e.header.name === NONCE_FILE)) {
    throw new ProbeError('internal', `the build context already holds a file named ${NONCE_FILE}, which fleetprobe writes on every run`);
  }
  const nonceBytes = Buffer.from(nonce);
  entries.push({ header: { name: NONCE_FILE, type: 'file', mode: 0o644, size: nonceBytes.length, mtime: new Date() }, content: nonceBytes });

  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c) => chunks.push(c as Buffer));
  const ended = new Promise<void>((resolve, reject) => {
    pack.once('end', resolve);
    pack.once('error', reject);
  });
  for (const e of entries) {
    await new Promise<void>((resolve, reject) => {
      const done = (err?: Error | null) => (err ? reject(err) : resolve());
      if (e.content) pack.entry(e.header, e.content, done);
      else pack.entry(e.header, done);
    });
  }
  pack.finalize();
  await ended;
  const tarball = Buffer.concat(chunks);
  return { body: opts.gzip ? await gzip(tarball) : tarball };
}

/** Packs the probe's context as phase `pack`; a failure that is not ours to classify is `internal`. */
export async function packPhase(
  ctx: ProbeContext,
  src: { context?: string; dockerfile?: string; dockerfilePath: string },
  gzip: boolean,
): Promise<PackedContext> {
  return ctx.phase('pack', () =>
    packContext({ dir: src.context, dockerfile: src.dockerfile, dockerfileName: src.dockerfilePath || 'Dockerfile' }, { gzip }).catch((err) => {
      if (err instanceof ProbeError) throw err;
      throw new ProbeError('internal', `cannot pack the build context${src.context ? ' ' + src.context : ''}: ${(err as Error).message}`, { cause: err });
    }),
  );
}
