/**
 * Every value a kind may record with ctx.observe(), by name, in one place: a key misspelt in a kind
 * is a compile error instead of a series that silently never moves. KindMetric.observation takes
 * one of these too; a labelled metric's values are `<key>.<label value>`.
 */
export const OBSERVATIONS = [
  // http: the earliest notAfter of the peer's chain (probe_ssl_earliest_cert_expiry) and the status.
  'ssl_earliest_cert_expiry',
  'http_status',
  // build: what the builder made, for the log and `fleetprobe run`.
  'release_id',
  'image_id',
  // ssh and tunnel, sessions mode (kinds/shared/sessions.ts).
  'ssh_sessions_success_ratio',
  'ssh_session_latency_seconds',
  'ssh_session_failures',
  'tunnel_sessions_success_ratio',
  'tunnel_session_latency_seconds',
  'tunnel_session_failures',
  // tunnel, held.
  'tunnel_interruptions',
  'tunnel_held_seconds',
  'tunnel_last_interruption_seconds',
  'tunnel_down_seconds',
  // device-status.
  'device_api_online',
  'device_status_drift_seconds',
  'device_fleet_online_devices',
  'device_sample_reachable_ratio',
  'device_sample_drifted_devices',
  // fleet targets (ssh, tunnel, http with `fleet:`): devices probed and failed, the device list's age.
  'targets',
  'targets_failed',
  'targets_list_age_seconds',
] as const;

export type Observation = (typeof OBSERVATIONS)[number];
/** An observation, or one value of a labelled one (`ssh_session_failures.timeout`). */
export type ObservationKey = Observation | `${Observation}.${string}`;

/** The one observation the core reads itself: it feeds probe_ssl_earliest_cert_expiry. */
export const CERT_EXPIRY: Observation = 'ssl_earliest_cert_expiry';
