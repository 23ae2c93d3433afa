import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type { Client, ClientChannel } from 'ssh2';
import { describeError } from '../core/classify.js';
import { ProbeError } from '../core/errors.js';
import type { Reason } from '../core/reasons.js';
import { ChannelWatch, closeChannel, outputExcerpt } from './ssh-channel.js';
import { closeClient, inPhase, openSshClient, type PhaseRunner, type SshConnectOptions } from './ssh-client.js';

/**
 * Running the probe's command over an authenticated SSH client, as phases `session` and `command`.
 *
 * - exec: `exec <command>`; `session` is the exec being accepted, `command` runs to the exit status.
 * - proxy (balena-style): `exec host <uuid>` on the platform's proxy, then over stdin the device is
 *   asked to print a begin marker, run the command and print an end marker with the command's own
 *   exit status. The proxy's exit status proves nothing (it is 0 after `host error`), so success is
 *   proven only by the markers, which carry a per-run nonce so stale or echoed output cannot pass.
 *   `session` lasts until the begin marker (the proxy reached the device), `command` until the end.
 */

export interface SshCommandOptions {
  command: string;
  /** Proxy mode: what to exec on the proxy (`host <uuid>`, `enter <uuid> <container>`). */
  proxyCommand?: string;
  expect: { exitStatus: number; stdout?: string; stdoutRegex?: RegExp; stdoutNotRegex?: RegExp };
  sessionTimeoutMs: number;
  commandTimeoutMs: number;
  /** Output kept for the checks; more is read and dropped (the end marker is still found). */
  maxOutputBytes: number;
  /** Who runs the command, for messages ("device c0ffee…", "host example.org:22"). */
  target: string;
}

export interface SshCommandResult {
  exitStatus: number;
  stdout: string;
  stderr: string;
}

// What the balena proxy writes on stderr when it cannot take us to the device (docs/protocols.md "SSH proxy"), by
// meaning. Every line starts with "host error", so only the detail after it decides, offline wordings first:
// a refused or timed-out connection to the device says nothing about keys.
const PROXY_STDERR: readonly [RegExp, Reason, string][] = [
  [
    /could not connect to device[\s\S]*\b503\b|\b503 service unavailable|device is offline|not connected to the vpn|\boffline\b/i,
    'device_offline',
    'the proxy says the device is offline',
  ],
  [
    /connection refused|timed? ?out\b|no route to host|(host|network) is unreachable|connection reset|reset by peer|\bE(CONNREFUSED|TIMEDOUT|HOSTUNREACH|NETUNREACH|CONNRESET)\b/i,
    'device_offline',
    'the proxy could not connect to the device',
  ],
  [
    /unable to authenticate|no supported methods remain|permission denied|authenticat|no (more )?(identities|authentication methods)|agent/i,
    'device_auth',
    'the proxy could not authenticate to the device',
  ],
  [/not found|no such (device|container)|unknown (device|container)|could not find/i, 'assertion', 'the proxy does not know that device or container'],
];

/** The failure the proxy's stderr describes, if we recognise it. */
function classifyProxyStderr(stderr: string): { reason: Reason; meaning: string } | undefined {
  for (const [re, reason, meaning] of PROXY_STDERR) if (re.test(stderr)) return { reason, meaning };
  return undefined;
}

/**
 * A "host error" whose detail names no cause (the 2026-02-26 incident showed users only that):
 * the text cannot tell an offline device from the proxy's failed authentication. Reason `proxy`
 * until a second path decides (the ssh kind's `corroborate`, src/kinds/ssh-corroborate.ts).
 */
export class UnexplainedHostError extends ProbeError {
  constructor(
    readonly target: string,
    readonly stderr: string,
    readonly proxyExit: string,
  ) {
    super('proxy', `the proxy reported a host error that does not say why (${target}); stderr: ${outputExcerpt(stderr)}; proxy ${proxyExit}`);
  }
}

/** The stdin script of proxy mode. printf splits each marker in the script so echoed input never matches. */
export function markerScript(command: string, nonce: string): string {
  return `printf '%s-%s\\n' FPBEGIN ${nonce}\n${command}\nprintf '\\n%s-%s:%s\\n' FPEND ${nonce} "$?"\nexit\n`;
}

/**
 * Execs `line`; `attach` runs inside ssh2's callback, before any later packet of the same read is
 * parsed: the exit status can arrive in the same TCP segment as the exec reply, and an 'exit'
 * event emitted before a listener exists is lost for good.
 */
function openExec(client: Client, line: string, signal: AbortSignal, attach: (ch: ClientChannel) => void): Promise<ClientChannel> {
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      client.exec(line, (err, channel) => {
        signal.removeEventListener('abort', onAbort);
        if (err) return reject(err);
        // Accepted after the run gave up: close it at once.
        if (signal.aborted) {
          channel.close();
          return reject(signal.reason);
        }
        attach(channel);
        resolve(channel);
      });
    } catch (err) {
      signal.removeEventListener('abort', onAbort);
      reject(err);
    }
  });
}

/** How a run knows the command ran and how it ended: the two modes differ only here. */
interface CommandMode {
  /** What is exec'd on the server. */
  execLine: string;
  /** The `session` step, for its timeout message. */
  sessionStep: string;
  /** What a cut session never gave, for its message. */
  awaited: string;
  /** Inside `session`, once the exec is accepted. */
  started(channel: ClientChannel, signal: AbortSignal): Promise<void>;
  /** The command's exit status once it is known, undefined while it runs; throws when it cannot finish. */
  finished(): number | undefined;
  /** The command's own stdout (once finished). */
  stdout(): string;
}

/** exec: `session` is the exec being accepted, `command` lasts to the channel's exit status and close. */
function execMode(opts: SshCommandOptions, w: ChannelWatch): CommandMode {
  return {
    execLine: opts.command,
    sessionStep: `starting the command on ${opts.target}`,
    awaited: 'exit status',
    started: async () => {},
    finished() {
      if (!w.closed) return undefined;
      if (!w.exit) throw w.cut('mid-command', 'exit status');
      if (w.exit.code === undefined) {
        throw new ProbeError(
          'assertion',
          `"${opts.command}" on ${opts.target} was killed by signal ${w.exit.signal ?? '?'}; stderr: ${outputExcerpt(w.stderr)}`,
        );
      }
      return w.exit.code;
    },
    stdout: () => w.text(),
  };
}

/**
 * proxy: `exec host <uuid>` on the platform's proxy and the marker script on stdin; `session` lasts
 * to the begin marker (the proxy reached the device), `command` to the end marker with the command's
 * own exit status. The proxy's own exit status and close prove nothing.
 */
function proxyMode(opts: SshCommandOptions, proxyCommand: string, w: ChannelWatch): CommandMode {
  const nonce = randomBytes(8).toString('hex');
  const begin = `FPBEGIN-${nonce}\n`;
  const endRe = new RegExp(`\\nFPEND-${nonce}:(\\d+)\\n`);
  return {
    execLine: proxyCommand,
    sessionStep: `reaching ${opts.target} through the proxy`,
    awaited: 'end marker',
    async started(channel, signal) {
      channel.end(markerScript(opts.command, nonce));
      await w.changed.wait(signal, () => {
        if (w.text().includes(begin)) return true;
        if (!w.closed && w.error === undefined) return false;
        const known = classifyProxyStderr(w.stderr);
        const exit = w.exit?.code !== undefined ? `exit status ${w.exit.code}` : 'no exit status';
        const stderr = w.stderr ? `stderr: ${outputExcerpt(w.stderr)}` : 'nothing on stderr';
        if (known) throw new ProbeError(known.reason, `${known.meaning} (${opts.target}); ${stderr}; proxy ${exit}`);
        if (/host error/i.test(w.stderr)) throw new UnexplainedHostError(opts.target, w.stderr, exit);
        if (w.error !== undefined) throw w.cut('before the device answered', 'end marker');
        throw new ProbeError(
          'proxy',
          `the proxy ended the session (${exit}) without the begin marker from ${opts.target}; ${stderr}; stdout: ${outputExcerpt(w.text())}`,
        );
      });
    },
    finished() {
      const m = endRe.exec(w.text());
      if (m) return Number(m[1]);
      if (w.stdoutBytes >= w.keepBytes) {
        throw new ProbeError('assertion', `the output of "${opts.command}" on ${opts.target} exceeds ${opts.maxOutputBytes} bytes (no end marker within it)`);
      }
      if (!w.closed && w.error === undefined) return undefined;
      const known = classifyProxyStderr(w.stderr);
      if (known && w.stderr) throw new ProbeError(known.reason, `${known.meaning} mid-command (${opts.target}); stderr: ${outputExcerpt(w.stderr)}`);
      throw w.cut('mid-command', 'end marker');
    },
    stdout() {
      const text = w.text();
      return text.slice(text.indexOf(begin) + begin.length, endRe.exec(text)!.index);
    },
  };
}

/**
 * Runs the command over an authenticated client and checks it (phases `session`, `command`).
 * The channel is closed on every path; the client stays the caller's.
 */
async function runSshCommand(t: PhaseRunner, client: Client, opts: SshCommandOptions): Promise<SshCommandResult> {
  // Room for the markers on top of what the checks keep.
  const w = new ChannelWatch(opts.maxOutputBytes + 256, opts.target);
  const mode = opts.proxyCommand !== undefined ? proxyMode(opts, opts.proxyCommand, w) : execMode(opts, w);
  const detach = w.watchClient(client);
  let channel: ClientChannel | undefined;
  try {
    await inPhase(t, 'session', opts.sessionTimeoutMs, mode.sessionStep, async (signal) => {
      try {
        channel = await openExec(client, mode.execLine, signal, (ch) => w.listen(ch));
      } catch (err) {
        if (err instanceof Error && /unable to exec|failure/i.test(err.message) && !(err as { level?: string }).level) {
          // describeError: ssh2's message ends on an empty description ("Channel open failure: ").
          throw new ProbeError('denied', `${opts.target} refused to run "${mode.execLine}": ${describeError(err)}`, { cause: err });
        }
        if (err instanceof Error && /no response from server|not connected/i.test(err.message)) throw w.cut('before the command started', mode.awaited);
        throw err;
      }
      await mode.started(channel, signal);
    });

    const result = await inPhase(t, 'command', opts.commandTimeoutMs, `the command "${opts.command}" on ${opts.target}`, async (signal) => {
      let exitStatus = 0;
      await w.changed.wait(signal, () => {
        const status = mode.finished();
        if (status === undefined) return false;
        exitStatus = status;
        return true;
      });
      return { exitStatus, stdout: mode.stdout().slice(0, opts.maxOutputBytes), stderr: w.stderr };
    });

    await t.phase('command', () => checkResult(result, opts));
    return result;
  } finally {
    detach();
    if (channel) closeChannel(channel);
  }
}

function checkResult(r: SshCommandResult, opts: SshCommandOptions): void {
  const { expect: e } = opts;
  const cmd = `"${opts.command}" on ${opts.target}`;
  if (r.exitStatus !== e.exitStatus) {
    throw new ProbeError(
      'assertion',
      `${cmd} exited with status ${r.exitStatus}, expected ${e.exitStatus}; stderr: ${outputExcerpt(r.stderr)}; stdout: ${outputExcerpt(r.stdout)}`,
    );
  }
  if (e.stdout !== undefined && !r.stdout.includes(e.stdout)) {
    throw new ProbeError('assertion', `the output of ${cmd} does not contain "${e.stdout}"; stdout: ${outputExcerpt(r.stdout)}`);
  }
  if (e.stdoutRegex && !e.stdoutRegex.test(r.stdout)) {
    throw new ProbeError('assertion', `the output of ${cmd} does not match /${e.stdoutRegex.source}/; stdout: ${outputExcerpt(r.stdout)}`);
  }
  if (e.stdoutNotRegex && e.stdoutNotRegex.test(r.stdout)) {
    throw new ProbeError('assertion', `the output of ${cmd} matches /${e.stdoutNotRegex.source}/, which it must not`);
  }
}

/**
 * A whole SSH session over a stream that is already connected to an SSH server: handshake (with
 * host-key verification), authentication, then the command with its checks (exit status, output,
 * and in proxy mode the markers). Phases: `handshake`, `auth`, `session`, `command`.
 *
 * Used by the `ssh` kind (over TCP or a bastion's direct-tcpip channel) and by the `tunnel` kind
 * (over a CONNECT tunnel to the device's SSH port). Takes ownership of `stream`: it and the SSH
 * client are closed on every path (pass, fail, abort, timeout). Resolves with what the command
 * printed; throws a ProbeError (or a socket error classified by its code) on failure.
 */
export async function runSshSession(t: PhaseRunner, stream: Duplex, connect: SshConnectOptions, command: SshCommandOptions): Promise<SshCommandResult> {
  const client = await openSshClient(t, stream, connect);
  try {
    return await runSshCommand(t, client, command);
  } finally {
    closeClient(client, stream);
  }
}
