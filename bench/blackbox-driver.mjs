// The client of blackbox_exporter's /probe endpoint, in a process of its own so that its CPU is not
// charged to either side: n probe requests, `concurrency` at a time (`round`), or `rate` a second
// spread evenly, as Prometheus scraping that many targets at a 1 s interval would send them
// (`paced`), over kept-alive connections.
import { Agent, request } from 'undici';
import { pool, serveWorker } from './lib.mjs';

const agent = new Agent({ connections: 64, keepAliveTimeout: 60_000 });

/** One /probe request; a failure is counted in `tally`. */
async function probe(url, tally) {
  const res = await request(url, { dispatcher: agent });
  const body = await res.body.text();
  if (res.statusCode !== 200 || !/^probe_success 1$/m.test(body)) {
    tally.failures++;
    tally.firstFailure ??= `HTTP ${res.statusCode}: ${body
      .split('\n')
      .filter((l) => /^probe_(success|http_status_code|failed_due_to_regex|duration_seconds) /.test(l))
      .join('; ')}`;
  }
}

function fail(tally, err) {
  tally.failures++;
  tally.firstFailure ??= String(err);
}

serveWorker({
  async round({ n, concurrency, url }) {
    const tally = { failures: 0, firstFailure: undefined };
    const t0 = performance.now();
    await pool(n, concurrency, () => probe(url, tally));
    return { wallSeconds: (performance.now() - t0) / 1000, ...tally };
  },
  /** `rate` probes a second for `seconds`, each started on time whatever the others are doing. */
  async paced({ rate, seconds, url }) {
    const tally = { failures: 0, firstFailure: undefined };
    const total = Math.round(rate * seconds);
    const running = [];
    const t0 = performance.now();
    await new Promise((resolve) => {
      const tick = setInterval(() => {
        const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * rate));
        while (running.length < due) running.push(probe(url, tally).catch((err) => fail(tally, err)));
        if (running.length >= total) {
          clearInterval(tick);
          resolve(undefined);
        }
      }, 5);
    });
    await Promise.all(running);
    return { wallSeconds: (performance.now() - t0) / 1000, sent: running.length, ...tally };
  },
  async close() {
    await agent.close();
  },
});
