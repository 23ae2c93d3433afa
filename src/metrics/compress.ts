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

export function gzipBody(body: Buffer): Promise<Buffer> {
  return gzip(body, { level: GZIP_LEVEL });
}
