import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type { Client, ClientChannel } from 'ssh2';
import { ProbeError } from '../core/errors.js';
import { excerpt } from '../core/excerpt.js';
import type { Reason } from '../core/reasons.js';
import { closeClient, Condition, inPhase, openSshClient, type PhaseRunner, type SshConnectOptions } from './ssh-client.js';

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

const MAX_STDERR_BYTES = 4096;

/** A bounded, redacted, one-line excerpt of remote output for a failure message. */
function outputExcerpt(text: string, max = 200): string {
  return excerpt(text, { max, redact: true, collapse: true, empty: '(empty)' });
}

// What the balena proxy writes on stderr when it cannot take us to the device (PROTOCOLS.md), by
// meaning. Order matters: the offline text itself starts with "host error".
const PROXY_STDERR: readonly [RegExp, Reason, string][] = [
  [
    /could not connect to device[\s\S]*\b503\b|\b503 service unavailable|device is offline|not connected to the vpn|\boffline\b/i,
    'device_offline',
    'the proxy says the device is offline',
  ],
  [
    /host error|authenticat|permission denied|no (more )?(identities|authentication methods)|agent/i,
    'device_auth',
    'the proxy could not authenticate to the device',
  ],
  [/not found|no such (device|container)|unknown (device|container)|could not find/i, 'assertion', 'the proxy does not know that device or container'],
];

/** The failure the proxy's stderr describes, if we recognise it. */
export function classifyProxyStderr(stderr: string): { reason: Reason; meaning: string } | undefined {
  for (const [re, reason, meaning] of PROXY_STDERR) if (re.test(stderr)) return { reason, meaning };
  return undefined;
}

/** The stdin script of proxy mode. printf splits each marker in the script so echoed input never matches. */
export function markerScript(command: string, nonce: string): string {
  return `printf '%s-%s\\n' FPBEGIN ${nonce}\n${command}\nprintf '\\n%s-%s:%s\\n' FPEND ${nonce} "$?"\nexit\n`;
}

interface ChannelState {
  stdout: Buffer[];
  stdoutBytes: number;
  stderr: string;
  exit?: { code?: number; signal?: string };
  closed: boolean;
  error?: unknown;
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

/**
 * Runs the command over an authenticated client and checks it (phases `session`, `command`).
 * The channel is closed on every path; the client stays the caller's.
 */
export async function runSshCommand(t: PhaseRunner, client: Client, opts: SshCommandOptions): Promise<SshCommandResult> {
  const proxied = opts.proxyCommand !== undefined;
  const nonce = randomBytes(8).toString('hex');
  const begin = `FPBEGIN-${nonce}\n`;
  const endRe = new RegExp(`\\nFPEND-${nonce}:(\\d+)\\n`);
  const state: ChannelState = { stdout: [], stdoutBytes: 0, stderr: '', closed: false };
  const changed = new Condition();
  // Room for the markers on top of what the checks keep.
  const keepBytes = opts.maxOutputBytes + 256;
  let channel: ClientChannel | undefined;
  // The client may die under the channel (keepalive timeout, reset): that ends the wait too.
  const onClientError = (err: Error) => ((state.error ??= err), changed.notify());
  const onClientClose = () => ((state.closed = true), changed.notify());
  client.on('error', onClientError);
  client.on('close', onClientClose);
  const text = () => Buffer.concat(state.stdout).toString('utf8');

  const cut = (when: string) =>
    new ProbeError(
      'connect',
      `the session with ${opts.target} was cut ${when} (no ${proxied ? 'end marker' : 'exit status'} came; stdout so far: ${outputExcerpt(text())}${state.stderr ? `; stderr: ${outputExcerpt(state.stderr)}` : ''})`,
      { cause: state.error },
    );

  const listen = (ch: ClientChannel) => {
    ch.on('data', (d: Buffer) => {
      if (state.stdoutBytes < keepBytes) {
        state.stdout.push(d);
        state.stdoutBytes += d.length;
      }
      changed.notify();
    });
    ch.stderr.on('data', (d: Buffer) => {
      if (state.stderr.length < MAX_STDERR_BYTES) state.stderr += d.toString('utf8').slice(0, MAX_STDERR_BYTES - state.stderr.length);
      changed.notify();
    });
    ch.on('exit', (code: number | null, sig?: string) => {
      state.exit = { code: code ?? undefined, signal: sig ?? undefined };
      changed.notify();
    });
    ch.on('close', () => ((state.closed = true), changed.notify()));
    ch.on('error', (err: Error) => ((state.error ??= err), changed.notify()));
  };

  try {
    const execLine = opts.proxyCommand ?? opts.command;
    await inPhase(
      t,
      'session',
      opts.sessionTimeoutMs,
      proxied ? `reaching ${opts.target} through the proxy` : `starting the command on ${opts.target}`,
      async (signal) => {
        try {
          channel = await openExec(client, execLine, signal, listen);
        } catch (err) {
          if (err instanceof Error && /unable to exec|failure/i.test(err.message) && !(err as { level?: string }).level) {
            throw new ProbeError('denied', `${opts.target} refused to run "${execLine}": ${err.message}`, { cause: err });
          }
          if (err instanceof Error && /no response from server|not connected/i.test(err.message)) throw cut('before the command started');
          throw err;
        }
        if (!proxied) return;
        channel.end(markerScript(opts.command, nonce));
        await changed.wait(signal, () => {
          if (text().includes(begin)) return true;
          if (!state.closed && state.error === undefined) return false;
          const known = classifyProxyStderr(state.stderr);
          const exit = state.exit?.code !== undefined ? `exit status ${state.exit.code}` : 'no exit status';
          const stderr = state.stderr ? `stderr: ${outputExcerpt(state.stderr)}` : 'nothing on stderr';
          if (known) throw new ProbeError(known.reason, `${known.meaning} (${opts.target}); ${stderr}; proxy ${exit}`);
          if (state.error !== undefined) throw cut('before the device answered');
          throw new ProbeError(
            'proxy',
            `the proxy ended the session (${exit}) without the begin marker from ${opts.target}; ${stderr}; stdout: ${outputExcerpt(text())}`,
          );
        });
      },
    );

    const result = await inPhase(t, 'command', opts.commandTimeoutMs, `the command "${opts.command}" on ${opts.target}`, async (signal) => {
      let exitStatus = 0;
      await changed.wait(signal, () => {
        if (proxied) {
          const m = endRe.exec(text());
          if (m) return ((exitStatus = Number(m[1])), true);
          if (state.stdoutBytes >= keepBytes) {
            throw new ProbeError(
              'assertion',
              `the output of "${opts.command}" on ${opts.target} exceeds ${opts.maxOutputBytes} bytes (no end marker within it)`,
            );
          }
          if (!state.closed && state.error === undefined) return false;
          const known = classifyProxyStderr(state.stderr);
          if (known && state.stderr)
            throw new ProbeError(known.reason, `${known.meaning} mid-command (${opts.target}); stderr: ${outputExcerpt(state.stderr)}`);
          throw cut('mid-command');
        }
        if (!state.closed) return false;
        if (!state.exit) throw cut('mid-command');
        if (state.exit.code === undefined) {
          throw new ProbeError(
            'assertion',
            `"${opts.command}" on ${opts.target} was killed by signal ${state.exit.signal ?? '?'}; stderr: ${outputExcerpt(state.stderr)}`,
          );
        }
        exitStatus = state.exit.code;
        return true;
      });
      let stdout = text();
      if (proxied) stdout = stdout.slice(stdout.indexOf(begin) + begin.length, endRe.exec(stdout)!.index);
      return { exitStatus, stdout: stdout.slice(0, opts.maxOutputBytes), stderr: state.stderr };
    });

    await t.phase('command', () => checkResult(result, opts));
    return result;
  } finally {
    client.off('error', onClientError);
    client.off('close', onClientClose);
    if (channel) {
      channel.removeAllListeners('data');
      channel.stderr.removeAllListeners('data');
      try {
        channel.close();
      } catch {
        /* already closed */
      }
      channel.destroy();
    }
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
