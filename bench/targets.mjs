// Targets the benchmarks probe: stock nginx with a certificate from a CA made here, blackbox_exporter.
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { BENCH, dist, freePort, startChild, waitForPort } from './lib.mjs';

export const NGINX = '/usr/sbin/nginx';
export const BLACKBOX = '/usr/bin/prometheus-blackbox-exporter';

export function missing(binary) {
  return !fs.existsSync(binary);
}

/** A CA and a server certificate for 127.0.0.1 and `bench.test`, written to dir. */
export async function benchCertificates(dir) {
  const { createLabCa } = await dist('lab/ca.js');
  const ca = createLabCa('fleetprobe bench CA');
  const leaf = ca.issue({ commonName: 'bench.test', dnsNames: ['bench.test'], ips: ['127.0.0.1'] });
  const files = { ca: path.join(dir, 'ca.pem'), cert: path.join(dir, 'server.pem'), key: path.join(dir, 'server.key') };
  fs.writeFileSync(files.ca, ca.certPem);
  fs.writeFileSync(files.cert, leaf.certPem);
  fs.writeFileSync(files.key, leaf.keyPem, { mode: 0o600 });
  return files;
}

/**
 * nginx (one worker) answering `ok` on HTTPS and plain HTTP. Keep-alive is off, so every probe
 * pays a full TCP and TLS handshake whichever client sends it. Each of `countPaths` (e.g. `fp`)
 * answers the same at `/fp` and writes one byte-pair line per request to `DIR/fp.log`: how many
 * requests a client really made, counted outside the processes measured (`requestsServed`).
 */
export async function startNginx(dir, certs, { countPaths = [] } = {}) {
  const tlsPort = await freePort();
  const plainPort = await freePort();
  const conf = path.join(dir, 'nginx.conf');
  fs.writeFileSync(
    conf,
    `daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_timeout 0;
  log_format count '.';
  server {
    listen 127.0.0.1:${tlsPort} ssl;
    listen 127.0.0.1:${plainPort};
    ssl_certificate ${certs.cert};
    ssl_certificate_key ${certs.key};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_tickets off;
    ssl_session_cache off;
    location / { default_type text/plain; return 200 "ok\\n"; }
${countPaths.map((p) => `    location = /${p} { access_log ${dir}/${p}.log count; default_type text/plain; return 200 "ok\\n"; }\n`).join('')}  }
}
`,
  );
  const proc = startChild(NGINX, ['-c', conf, '-e', `${dir}/nginx-error.log`]);
  await waitForPort(tlsPort).catch((err) => {
    throw new Error(`${err.message}\n${proc.output()}`);
  });
  await waitForPort(plainPort);
  return { proc, tlsPort, plainPort, requestsServed: (p) => requestsServed(path.join(dir, `${p}.log`)) };
}

/** Requests nginx logged with the `count` format (".\n" each) in `file`. */
function requestsServed(file) {
  try {
    return fs.statSync(file).size / 2;
  } catch {
    return 0;
  }
}

export async function startBlackbox(dir, certs) {
  const port = await freePort();
  const conf = path.join(dir, 'blackbox.yml');
  fs.writeFileSync(
    conf,
    `modules:
  https_ok:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
      valid_status_codes: [200]
      fail_if_not_ssl: true
      fail_if_body_not_matches_regexp: ["ok"]
      tls_config:
        ca_file: ${certs.ca}
        server_name: bench.test
`,
  );
  const proc = startChild(BLACKBOX, [`--config.file=${conf}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn']);
  await waitForPort(port).catch((err) => {
    throw new Error(`${err.message}\n${proc.output()}`);
  });
  return { proc, port };
}

/** The embedded lab in a process of its own (bench/lab-host.mjs): {proc, vars, devices}. */
export async function startLabHost() {
  const proc = startChild(process.execPath, [path.join(BENCH, 'lab-host.mjs')], { stdio: ['ignore', 'pipe', 'inherit'] });
  const info = await new Promise((resolve, reject) => {
    readline.createInterface({ input: proc.child.stdout }).once('line', (l) => resolve(JSON.parse(l)));
    proc.exited.then(({ code }) => reject(new Error(`lab-host exited (${code})`)));
  });
  return { proc, ...info };
}
