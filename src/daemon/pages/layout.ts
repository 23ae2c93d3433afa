import { VERSION } from '../../core/version.js';
import { Html, html } from './html.js';

/** How often a page reloads itself (a meta refresh: no script, so it works in any browser). */
export const REFRESH_SECONDS = 30;

/**
 * What every page is sent with. The policy allows no script, no external resource and no form at
 * all: the pages need none, and should escaping ever miss, an injected script still would not run.
 */
export const PAGE_HEADERS: Readonly<Record<string, string>> = {
  'content-type': 'text/html; charset=utf-8',
  'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

// Cells hide their text (font-size 0) where CSS applies; a terminal browser shows it instead.
const STYLE = `
body{font:14px/1.4 system-ui,sans-serif;margin:1em 2em;color:#1f2328;background:#fff}
a{color:#0969da}h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.1em;margin:1.4em 0 .4em}
nav{margin-bottom:1em}nav a{margin-right:1em}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #d1d9e0;vertical-align:top}
th{font-weight:600;background:#f6f8fa}tr.group th{background:#eaeef2}
.num{text-align:right;white-space:nowrap}.when{white-space:nowrap}
.pass{color:#1a7f37;font-weight:600}.fail{color:#cf222e;font-weight:600}.pending{color:#59636e}
.bar{white-space:nowrap;line-height:0}
.c{display:inline-block;width:5px;height:18px;margin-right:1px;font-size:0;vertical-align:middle;background:#2da44e}
.c.f{background:#cf222e}.msg{max-width:48em;overflow-wrap:anywhere}
pre{background:#f6f8fa;padding:8px;overflow-x:auto;white-space:pre-wrap;overflow-wrap:anywhere}
.wf{width:auto}.wf td{border:0;padding:1px 8px}.track{width:40em}
.seg{height:12px;min-width:1px;background:#54aeff}.seg.f{background:#cf222e}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 16px}dt{color:#59636e}dd{margin:0}
`;

export function page(title: string, body: Html): string {
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta http-equiv="refresh" content="${REFRESH_SECONDS}" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <link rel="icon" href="data:," />
        <title>${title}</title>
        <style>
          ${new Html(STYLE)}
        </style>
      </head>
      <body>
        <nav>
          <a href="/">fleetprobe ${VERSION}</a> <a href="/?failing=1">failing</a> <a href="/probes">/probes</a> <a href="/metrics">/metrics</a>
          <a href="/healthz">/healthz</a> <a href="/readyz">/readyz</a>
        </nav>
        ${body}
      </body>
    </html> `.text;
}
