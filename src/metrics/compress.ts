import { promisify } from 'node:util';
import zlib from 'node:zlib';

/**
 * gzip for /metrics, as Prometheus asks for it (`Accept-Encoding: gzip`): at 11,500 probes the
 * exposition is over 20 MB and compresses about 15-fold. Level 1: the text is so repetitive that
 * the fastest level already gets most of the gain, and compressing runs on libuv's thread pool,
 * not the event loop the scheduler needs, so the cost is the response's time, not the runs'.
 */
const gzip = promisify(zlib.gzip);
export const GZIP_LEVEL = 1;

/** Whether an Accept-Encoding header accepts gzip (listed, or `*`, with a q-value above 0). */
export function acceptsGzip(header: string | string[] | undefined): boolean {
  const value = Array.isArray(header) ? header.join(',') : (header ?? '');
  for (const part of value.split(',')) {
    const [coding, ...params] = part.trim().toLowerCase().split(';');
    if (coding.trim() !== 'gzip' && coding.trim() !== '*') continue;
    const q = params.map((p) => /^\s*q\s*=\s*([\d.]+)\s*$/.exec(p)).find(Boolean);
    if (!q || Number(q[1]) > 0) return true;
  }
  return false;
}

/**
 * Output chunk: zlib hands each full chunk back to the event loop before it goes on compressing,
 * so with its 16 KB default a 2 MB result made some 120 round trips through a loop busy with
 * runs, and the response took 2-3 times the compression's CPU (150-170 ms against 55 ms for 30 MB,
 * measured with the loop half busy). 1 MB makes it a round trip or two.
 */
const GZIP_CHUNK = 1 << 20;

export function gzipBody(body: Buffer): Promise<Buffer> {
  return gzip(body, { level: GZIP_LEVEL, chunkSize: body.length > 4 * GZIP_CHUNK ? GZIP_CHUNK : zlib.constants.Z_DEFAULT_CHUNK });
}
