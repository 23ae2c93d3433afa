/**
 * The fixed set of failure reasons. It is a label on `probe_failures_total`, so it must stay small
 * and bounded; every failing run carries exactly one of these. The README's table is checked
 * against REASON_DESCRIPTIONS by test/unit/docs-sync.test.ts.
 */
export const REASON_DESCRIPTIONS = {
  dns: 'the target name could not be resolved',
  connect: 'the TCP connection was refused, reset or unreachable',
  timeout: "a step did not finish within the run deadline, or was slower than the probe's `maxLatency` bound",
  tls: 'the TLS handshake failed or the certificate was not trusted (expired, wrong name, unknown CA)',
  hostkey: 'the SSH host key did not match the pinned key or known_hosts',
  auth: 'our credentials were refused (token, key, password)',
  device_auth:
    'the platform proxy could not authenticate to the device (it says so, or a bare "host error" while the device answers through the tunnel or the API says it is online)',
  device_offline: 'the platform says the device is not reachable (offline, error page, 503, the proxy refused or timed out on its way to the device)',
  denied: 'authenticated but not allowed to do this',
  proxy: 'a platform proxy gave an unexpected answer (or a bare "host error" that no second path could explain)',
  protocol: 'the answer was malformed or not the protocol expected',
  assertion: 'the answer was well formed but not what the probe expects (status, body, output)',
  build_failed: 'the builder reported that the build failed',
  status_drift: "the API's device status disagrees with what is reachable",
  resources: 'fleetprobe itself ran out of file descriptors (EMFILE, ENFILE): a problem of the prober, not of the target',
  internal: 'a bug in fleetprobe itself',
} as const;

export type Reason = keyof typeof REASON_DESCRIPTIONS;
export const REASONS = Object.keys(REASON_DESCRIPTIONS) as Reason[];

export function isReason(value: unknown): value is Reason {
  return typeof value === 'string' && Object.hasOwn(REASON_DESCRIPTIONS, value);
}
