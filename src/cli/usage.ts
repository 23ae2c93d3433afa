import { DEFAULT_MAX_CONNECTIONS } from '../daemon/connection-cap.js';
import { DEFAULT_DAEMON_URL } from './status.js';
import { LOG_LEVELS } from '../core/log.js';
import { VERSION } from '../core/version.js';
import { LAB_FAULTS } from '../lab/index.js';

export const USAGE = `fleetprobe ${VERSION}: synthetic end-to-end probes for device fleet platforms

Usage:
  fleetprobe daemon [--config PATH]... [--listen HOST:PORT] [--lab] [--lab-fault F,...] [--log-level L]
                    [--concurrency N] [--max-connections N] [--grace DURATION] [--shard I/N] [--history N]
  fleetprobe run NAME [--config PATH]... [--lab] [--lab-fault F,...] [--json]
  fleetprobe run NAME... | --all | -l LABEL=VALUE,... | --kind KIND,...  [--concurrency N] [--repeat N]
                 [--min-success RATIO] [--json] [--junit FILE] [--config PATH]... [--lab] [--lab-fault F,...]
  fleetprobe gate [NAME... | --all | -l LABEL=VALUE,... | --kind KIND,...] [--for DURATION] [--every DURATION]
                  [--fail-after K] [--concurrency N] [--json] [--junit FILE] [--config PATH]... [--lab]
  fleetprobe check [--config PATH]... [--lab]
  fleetprobe list [--config PATH]... [--lab] [--json] [--shard I/N]
  fleetprobe lab [--lab-fault F,...]
  fleetprobe status [NAME] [--daemon URL] [--json]
  fleetprobe hostkey HOST[:PORT] [--via-tunnel PROXY[:PORT] [--token-env NAME]] [--timeout DURATION]
                     (its known_hosts lines and fingerprints; more: fleetprobe hostkey --help)

Options:
  --config PATH      probe definitions: a YAML file or a directory of them (repeatable; default: probes/)
  --lab              start the embedded lab in-process and load lab files (probes/lab.yaml) against it
  --lab-fault F,...  lab faults to switch on at start: ${Object.keys(LAB_FAULTS).join(', ')}
  --listen HOST:PORT where /metrics, /probes, /healthz and /readyz are served
                     (default 0.0.0.0:9437, or 127.0.0.1:9437 with --lab; env FLEETPROBE_LISTEN)
  --log-level L      ${LOG_LEVELS.join(', ')} (default info for daemon, warn otherwise; env FLEETPROBE_LOG_LEVEL)
  --concurrency N    at most N runs at once (default 64 for daemon, 8 for run and gate)
  --grace DURATION   how long SIGTERM waits for runs to end (default 10s)
  --json             machine-readable output (run, list; with many probes: JSON Lines and a summary)
  --shard I/N        run (daemon) or show (list) only shard I of N (0-based; auto/N takes I from the
                     host name's -<ordinal>, as in a StatefulSet; env FLEETPROBE_SHARD)
  --all              every probe (run, gate; gate's default)
  -l LABEL=VALUE,... probes whose labels match every term (= or !=; kind and name count as labels)
  --kind KIND,...    probes of any of these kinds
  --repeat N         run each probe N times, one after the other (run; default 1)
  --min-success R    share of a probe's runs that must pass, 0.8 or 80% (run; default 1)
  --junit FILE       also write a JUnit XML report (run, gate); checked before any probe runs
  --for DURATION     how long the gate lasts (default 5m)
  --every DURATION   how often the gate runs each probe (default 30s, at least 1s)
  --fail-after K     the gate fails when a probe fails K times in a row (default 2)
  --max-connections N
                     at most N open connections to the HTTP server (daemon; default ${DEFAULT_MAX_CONNECTIONS})
  --history N        runs kept in memory per probe for the status page (daemon; default 100; 0 turns it off)
  --daemon URL       the daemon status asks (default ${DEFAULT_DAEMON_URL}; env FLEETPROBE_DAEMON)

Exit status: 0 pass / ok, 1 probe failed (run, gate: a probe missed its bar), 2 configuration or
usage error (status: also a daemon it cannot read); run and gate with many probes: 130 on SIGINT, 143 on SIGTERM (the partial report is written).`;
