// The client of blackbox_exporter's /probe endpoint, in a process of its own so that its CPU is not
// charged to either side: n probe requests, `concurrency` at a time, over kept-alive connections.
import { Agent, request } from 'undici';
import { pool, serveWorker } from './lib.mjs';

const agent = new Agent({ connections: 64, keepAliveTimeout: 60_000 });

serveWorker({
  async round({ n, concurrency, url }) {
    let failures = 0;
    let firstFailure;
    const t0 = performance.now();
    await pool(n, concurrency, async () => {
      const res = await request(url, { dispatcher: agent });
      const body = await res.body.text();
      if (res.statusCode !== 200 || !/^probe_success 1$/m.test(body)) {
        failures++;
        firstFailure ??= `HTTP ${res.statusCode}: ${body
          .split('\n')
          .filter((l) => /^probe_(success|http_status_code|failed_due_to_regex) /.test(l))
          .join('; ')}`;
      }
    });
    return { wallSeconds: (performance.now() - t0) / 1000, failures, firstFailure };
  },
  async close() {
    await agent.close();
  },
});
