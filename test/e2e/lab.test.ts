import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { LabError } from '../../src/core/errors.js';
import { FaultSwitchboard, LAB_FAULTS, startLab, type Lab } from '../../src/lab/index.js';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** Like `curl --resolve <uuid>.<domain>:PORT:127.0.0.1 https://<uuid>.<domain>:PORT/...` */
function get(lab: Lab, uuid: string, path: string, opts: { signal?: AbortSignal; agent?: https.Agent | false } = {}): Promise<Answer> {
  const name = `${uuid}.${lab.vars.LAB_URL_DOMAIN}`;
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port: Number(lab.vars.LAB_URL_FRONT_PORT),
        path,
        servername: name,
        headers: { host: `${name}:${lab.vars.LAB_URL_FRONT_PORT}` },
        ca: fs.readFileSync(lab.caFile),
        signal: opts.signal,
        agent: opts.agent,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

async function setFault(lab: Lab, name: string, on: boolean): Promise<Response> {
  return fetch(`${lab.controlUrl}/faults/${name}`, { method: on ? 'PUT' : 'DELETE' });
}

function portIsClosed(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
}

describe('embedded lab: public device URLs', () => {
  let lab: Lab;
  beforeAll(async () => {
    lab = await startLab();
  });
  afterAll(async () => {
    await lab?.close();
  });

  it('exposes vars, endpoints, devices and private files', () => {
    expect(lab.devices.map((d) => d.name)).toEqual(['lab-device-1', 'lab-device-2', 'lab-device-3']);
    for (const d of lab.devices) expect(d.uuid).toMatch(/^[0-9a-f]{32}$/);
    expect(lab.vars).toMatchObject({
      LAB_URL_DOMAIN: 'devices.fleetprobe.test',
      LAB_DEVICE_UUID: lab.devices[0].uuid,
      LAB_DEVICE2_UUID: lab.devices[1].uuid,
      LAB_DEVICE3_UUID: lab.devices[2].uuid,
      LAB_CA_FILE: lab.caFile,
      LAB_CONTROL_URL: lab.controlUrl,
    });
    expect(lab.endpoints['public URL front']).toBe(`https://127.0.0.1:${lab.vars.LAB_URL_FRONT_PORT}`);
    expect(lab.endpoints.control).toBe(lab.controlUrl);
    for (const f of [lab.caFile, lab.credentialsFile]) expect(fs.statSync(f).mode & 0o777).toBe(0o600);
    const creds = JSON.parse(fs.readFileSync(lab.credentialsFile, 'utf8'));
    expect(creds.caFile).toBe(lab.caFile);
    expect(creds.devices).toHaveLength(3);
  });

  it('serves /health and / through the TLS front', async () => {
    for (const d of lab.devices) {
      const r = await get(lab, d.uuid, '/health');
      expect(r.status).toBe(200);
      expect(r.headers['content-type']).toBe('text/plain');
      expect(r.body).toBe(`ok ${d.uuid}\n`);
    }
    const root = await get(lab, lab.devices[1].uuid, '/');
    expect(root.status).toBe(200);
    expect(root.body).toContain('lab-device-2');
    expect((await get(lab, lab.devices[0].uuid, '/nope')).status).toBe(404);
    const unknown = await get(lab, 'deadbeef'.repeat(4), '/health');
    expect(unknown.status).toBe(404);
    expect(unknown.body).toContain('device not found');
  });

  it('device-offline: 502 with the platform error page, then recovers', async () => {
    const on = await setFault(lab, 'device-offline', true);
    expect(on.status).toBe(200);
    // One short line for the terminal that ran curl, not the whole list.
    expect(await on.text()).toBe('lab fault device-offline: on\n');
    const list = (await (await fetch(`${lab.controlUrl}/faults`)).json()) as { name: string; on: boolean }[];
    expect(list.find((f) => f.name === 'device-offline')?.on).toBe(true);
    const r = await get(lab, lab.vars.LAB_DEVICE_UUID, '/health');
    expect(r.status).toBe(502);
    expect(r.headers['content-type']).toBe('text/html');
    expect(r.body).toContain('We encountered an error when reaching this balena.io device: tunneling socket could not be established: 500');
    const off = await setFault(lab, 'device-offline', false);
    expect(off.status).toBe(200);
    expect(await off.text()).toBe('lab fault device-offline: off\n');
    expect((await get(lab, lab.vars.LAB_DEVICE_UUID, '/health')).status).toBe(200);
  });

  it('expired-cert: handshake fails with CERT_HAS_EXPIRED, switching off restores', async () => {
    // The default agent has cached a TLS session by now: the fault must not be bypassed by resumption.
    expect((await get(lab, lab.vars.LAB_DEVICE_UUID, '/health')).status).toBe(200);
    await setFault(lab, 'expired-cert', true);
    await expect(get(lab, lab.vars.LAB_DEVICE_UUID, '/health')).rejects.toMatchObject({ code: 'CERT_HAS_EXPIRED' });
    await expect(get(lab, lab.vars.LAB_DEVICE_UUID, '/health', { agent: false })).rejects.toMatchObject({ code: 'CERT_HAS_EXPIRED' });
    await setFault(lab, 'expired-cert', false);
    expect((await get(lab, lab.vars.LAB_DEVICE_UUID, '/health')).status).toBe(200);
  });

  it('control: lists faults, rejects unknown names and paths', async () => {
    const list = (await (await fetch(`${lab.controlUrl}/faults`)).json()) as { name: string; description: string; on: boolean }[];
    expect(list.map((f) => f.name).sort()).toEqual(Object.keys(LAB_FAULTS).sort());
    const bad = await setFault(lab, 'foo', true);
    expect(bad.status).toBe(404);
    expect(((await bad.json()) as { error: string }).error).toContain('foo');
    expect((await fetch(`${lab.controlUrl}/other`)).status).toBe(404);
    expect(await (await fetch(`${lab.controlUrl}/`)).json()).toEqual(lab.endpoints);
  });

  it('control: answers only requests addressed to its own address (no DNS rebinding)', async () => {
    const port = Number(new URL(lab.controlUrl).port);
    // Raw bytes, so Host and Origin are exactly what a browser on a rebound name would send.
    const ask = (head: string) =>
      new Promise<string>((resolve, reject) => {
        const s = net.connect(port, '127.0.0.1', () => s.end(`PUT /faults/device-offline HTTP/1.1\r\n${head}connection: close\r\n\r\n`));
        let got = '';
        s.on('data', (d) => (got += d));
        s.on('end', () => resolve(got.split('\r\n')[0]));
        s.on('error', reject);
      });
    expect(await ask(`host: evil.example:${port}\r\n`)).toBe('HTTP/1.1 403 Forbidden');
    expect(await ask(`host: 127.0.0.1:${port}\r\norigin: http://evil.example:${port}\r\n`)).toBe('HTTP/1.1 403 Forbidden');
    expect(await ask('')).toBe('HTTP/1.1 400 Bad Request');
    const isOn = async () =>
      ((await (await fetch(`${lab.controlUrl}/faults`)).json()) as { name: string; on: boolean }[]).find((f) => f.name === 'device-offline')?.on;
    expect(await isOn()).toBe(false);
    expect(await ask(`host: localhost:${port}\r\norigin: http://127.0.0.1:${port}\r\n`)).toBe('HTTP/1.1 200 OK');
    expect(await isOn()).toBe(true);
    expect((await setFault(lab, 'device-offline', false)).status).toBe(200);
  });

  it('unknown fault names throw LabError', () => {
    expect(() => new FaultSwitchboard(['foo'])).toThrow(LabError);
    expect(() => new FaultSwitchboard(['foo'])).toThrow(`unknown lab fault "foo"; known faults: ${Object.keys(LAB_FAULTS).sort().join(', ')}`);
    expect(() => new FaultSwitchboard().set('bar', true)).toThrow(LabError);
    return expect(startLab({ faults: ['nope'] })).rejects.toMatchObject({ code: 'FP_ERR_LAB' });
  });
});

describe('embedded lab: slow-url and close()', () => {
  it('slow-url stalls responses; close() is prompt with one pending and leaves nothing listening', async () => {
    const lab = await startLab({ faults: ['slow-url'] });
    const ports = [Number(lab.vars.LAB_URL_FRONT_PORT), Number(new URL(lab.controlUrl).port), ...lab.devices.map((d) => d.httpPort)];
    try {
      // A client with a 1 s budget gives up.
      await expect(get(lab, lab.vars.LAB_DEVICE_UUID, '/health', { signal: AbortSignal.timeout(1000) })).rejects.toMatchObject({ name: 'AbortError' });

      // Another slow request left pending while the lab closes.
      const pending = get(lab, lab.vars.LAB_DEVICE2_UUID, '/health', { agent: false });
      pending.catch(() => undefined);
      await new Promise((r) => setTimeout(r, 100));
      const t0 = Date.now();
      await lab.close();
      expect(Date.now() - t0).toBeLessThan(1000);
      await expect(pending).rejects.toBeDefined();
      await lab.close(); // idempotent
      for (const p of ports) expect(await portIsClosed(p)).toBe(true);
    } finally {
      await lab.close();
    }
  });
});
