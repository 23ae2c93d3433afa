import { overviewPage } from './pages/overview.js';
import { PAGE_HEADERS } from './pages/layout.js';
import { probePage } from './pages/probe.js';
import type { StatusStore } from './status.js';

/** An answer of the status routes, written by server.ts. */
export interface Reply {
  status: number;
  headers: Readonly<Record<string, string>>;
  body: string;
}

const JSON_HEADERS = { 'content-type': 'application/json' };

/**
 * The read-only status surface: `/probes` (`?failing=1`), `/probes/NAME`, the page at `/` (`?failing=1`,
 * `?page=N`) and `/probe/NAME`. Each reads the status store and nothing else: no parameter names
 * a target, a URL or anything to run, so none of it can be used to reach another host.
 * Undefined for any other path (server.ts answers 404).
 */
export function statusRoute(status: StatusStore, pathname: string, target: string | undefined): Reply | undefined {
  const query = queryOf(target);
  const failing = query.get('failing') === '1' || query.get('failing') === 'true';
  if (pathname === '/probes') return json(200, status.toJson({ failing }));
  if (pathname === '/') return { status: 200, headers: PAGE_HEADERS, body: overviewPage(status, { failing, page: Number(query.get('page')) || 1 }) };
  const detail = /^\/probes\/([^/]+)$/.exec(pathname);
  if (detail) {
    const name = decodeName(detail[1]);
    const body = name === undefined ? undefined : status.detailJson(name);
    return body ? json(200, body) : json(404, { error: `no probe named ${JSON.stringify(name ?? detail[1])}` });
  }
  const page = /^\/probe\/([^/]+)$/.exec(pathname);
  if (page) {
    const name = decodeName(page[1]);
    const body = name === undefined ? undefined : probePage(status, name);
    return body
      ? { status: 200, headers: PAGE_HEADERS, body }
      : { status: 404, headers: { 'content-type': 'text/plain; charset=utf-8' }, body: 'no such probe\n' };
  }
  return undefined;
}

function json(status: number, value: unknown): Reply {
  return { status, headers: JSON_HEADERS, body: JSON.stringify(value, null, 2) + '\n' };
}

/** The query of a request target (server.ts has checked that the target parses). */
function queryOf(target: string | undefined): URLSearchParams {
  const at = target?.indexOf('?') ?? -1;
  return new URLSearchParams(at < 0 ? '' : target!.slice(at + 1).split('#')[0]);
}

/** A percent-encoded path segment, or undefined when it does not decode (`%E0%A4%A`). */
function decodeName(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}
