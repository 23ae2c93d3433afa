import fs from 'node:fs';

/**
 * Files named by the configuration (secrets, private keys, CA bundles, known_hosts) are read only
 * if they are regular files within a sane size. Issue 19: `{file: /dev/zero}` grew `check` to
 * 16.9 GB, a FIFO hung start-up (and a SIGHUP reload), a `caFile` FIFO blocked the event loop.
 *
 * Each file is opened without blocking (opening a FIFO that has no writer would wait forever), and
 * the checks look at the opened descriptor (fstat), so the file read is the file checked. Reading
 * stops one byte past the limit, so a file that grows after the check cannot grow the read.
 */

/** Secrets (`{file: PATH}`) and private keys. */
export const MAX_SECRET_FILE_BYTES = 1024 * 1024;
/** CA bundles (`tls.caFile`) and known_hosts files. */
export const MAX_BUNDLE_FILE_BYTES = 10 * 1024 * 1024;

const OPEN_FLAGS = fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY;

/** A file that is not fit to read, with what is wrong in words a config error can quote. */
export class InputFileError extends Error {
  readonly file: string;
  readonly problem: string;
  constructor(file: string, problem: string, options?: { cause?: unknown }) {
    super(`${file} ${problem}`, options);
    this.name = 'InputFileError';
    this.file = file;
    this.problem = problem;
  }
}

function mib(bytes: number): string {
  return `${bytes / 1024 / 1024} MiB`;
}

function typeOf(st: fs.Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

/** What is wrong with an opened file, or undefined when it is a regular file within `maxBytes`. */
function problemOf(st: fs.Stats, maxBytes: number): string | undefined {
  if (!st.isFile()) return `is ${typeOf(st)}, not a regular file`;
  if (st.size > maxBytes) return `is ${st.size.toLocaleString('en')} bytes, over the limit of ${mib(maxBytes)}`;
  return undefined;
}

function openError(file: string, err: unknown): InputFileError {
  return new InputFileError(file, `cannot be read (${errnoOf(err)})`, { cause: err });
}

/** The errno code of a failed open (ENOENT, EACCES), or the error's text. */
export function errnoOf(err: unknown): string {
  return (err as NodeJS.ErrnoException | null)?.code ?? String(err);
}

const READ_CHUNK = 64 * 1024;

/** Chunks read so far; a file that grew past the limit after it was checked is refused, not read on. */
class Bounded {
  private readonly chunks: Buffer[] = [];
  private total = 0;
  private chunk = Buffer.alloc(0);
  constructor(
    private readonly file: string,
    private readonly maxBytes: number,
  ) {}
  next(): Buffer {
    return (this.chunk = Buffer.allocUnsafe(READ_CHUNK));
  }
  /** Takes `n` bytes read into the last chunk; false at the end of the file. */
  add(n: number): boolean {
    if (n === 0) return false;
    this.chunks.push(this.chunk.subarray(0, n));
    this.total += n;
    if (this.total > this.maxBytes) throw new InputFileError(this.file, `grew over the limit of ${mib(this.maxBytes)} while it was read`);
    return true;
  }
  done(): Buffer {
    return Buffer.concat(this.chunks, this.total);
  }
}

/** Checks type and size without reading (config load: the file is read later, at run). */
export function checkInputFileSync(file: string, maxBytes: number): void {
  readOrCheckSync(file, maxBytes, false);
}

/** Reads a regular file of at most `maxBytes`; throws InputFileError otherwise. For config load only. */
export function readInputFileSync(file: string, maxBytes: number): Buffer {
  return readOrCheckSync(file, maxBytes, true);
}

function readOrCheckSync(file: string, maxBytes: number, read: boolean): Buffer {
  let fd: number;
  try {
    fd = fs.openSync(file, OPEN_FLAGS);
  } catch (err) {
    throw openError(file, err);
  }
  try {
    const problem = problemOf(fs.fstatSync(fd), maxBytes);
    if (problem) throw new InputFileError(file, problem);
    if (!read) return Buffer.alloc(0);
    const into = new Bounded(file, maxBytes);
    while (into.add(fs.readSync(fd, into.next(), 0, READ_CHUNK, null)));
    return into.done();
  } finally {
    fs.closeSync(fd);
  }
}

/** The run path's read: the same checks, without blocking the event loop. */
export async function readInputFile(file: string, maxBytes: number): Promise<Buffer> {
  let handle: fs.promises.FileHandle;
  try {
    handle = await fs.promises.open(file, OPEN_FLAGS);
  } catch (err) {
    throw openError(file, err);
  }
  try {
    const problem = problemOf(await handle.stat(), maxBytes);
    if (problem) throw new InputFileError(file, problem);
    const into = new Bounded(file, maxBytes);
    while (into.add((await handle.read(into.next(), 0, READ_CHUNK, null)).bytesRead));
    return into.done();
  } finally {
    await handle.close();
  }
}
