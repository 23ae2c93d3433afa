import path from 'node:path';
import { FleetprobeError } from '../core/errors.js';

const HINT = 'point --config at your probe files (a file or a directory of .yaml files), or start with --lab to run the embedded lab and its probes';

/**
 * The daemon refuses to start with nothing to run: a daemon exporting no probes looks healthy to
 * Prometheus while it watches nothing. The message says where it looked (absolute paths: the
 * default `probes` is relative to wherever the daemon was started).
 */
export function noProbesError(paths: string[], found: { missing?: string; skippedLabFiles?: string[] }): FleetprobeError {
  if (found.missing !== undefined) {
    return new FleetprobeError('FP_ERR_NO_PROBES', `no probes to run: ${found.missing} (${path.resolve(found.missing)}) does not exist; ${HINT}`);
  }
  const skipped = found.skippedLabFiles?.length ? ` (skipped ${found.skippedLabFiles.join(', ')}: lab: true files run only with --lab)` : '';
  const where = paths.map((p) => path.resolve(p)).join(', ');
  return new FleetprobeError('FP_ERR_NO_PROBES', `no probes to run: none configured in ${where}${skipped}; ${HINT}`);
}
