/**
 * The lab devices' shell: enough of sh to run a probe's commands and the proxy's marker protocol
 * (`;`, `&&`, `||`, quotes, `$?`; echo, printf, cat, exit, sleep, true, false, uname) without ever
 * spawning a process. It reads lines as they arrive, like `sh` reading a pipe.
 */

export interface ShellIo {
  stdout(text: string): void;
  stderr(text: string): void;
  /** `exit` ran: the session ends with this status. */
  exit?(status: number): void;
}

export interface ShellDevice {
  uuid: string;
  name: string;
}

/** Containers every lab device runs (for `enter <uuid> <container>`). */
export const LAB_CONTAINERS = ['main'];

function osRelease(d: ShellDevice): string {
  return [
    'ID="balena-os"',
    'NAME="balenaOS"',
    'VERSION="6.0.13"',
    'VERSION_ID="6.0.13"',
    'PRETTY_NAME="balenaOS 6.0.13"',
    'MACHINE="generic-amd64"',
    `BALENA_DEVICE_UUID="${d.uuid}"`,
    '',
  ].join('\n');
}

type Word = string;
interface Command {
  words: Word[];
  /** How it joins the next command: always, only on success, only on failure. */
  then: ';' | '&&' | '||';
}

/** Splits a line into commands and words; `$?` is expanded when the command runs, so it is kept as a token. */
function parse(line: string): Command[] | string {
  const cmds: Command[] = [];
  let words: Word[] = [];
  let cur: string | null = null;
  const push = () => {
    if (cur !== null) words.push(cur);
    cur = null;
  };
  const end = (then: Command['then']) => {
    push();
    if (words.length) cmds.push({ words, then });
    words = [];
  };
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === "'") {
      const j = line.indexOf("'", i + 1);
      if (j < 0) return 'unterminated quoted string';
      cur = (cur ?? '') + line.slice(i + 1, j);
      i = j;
    } else if (c === '"') {
      let j = i + 1;
      let text = '';
      for (; j < line.length && line[j] !== '"'; j++) {
        if (line[j] === '\\' && j + 1 < line.length && '"\\$'.includes(line[j + 1])) text += line[++j];
        else text += line[j];
      }
      if (j >= line.length) return 'unterminated quoted string';
      cur = (cur ?? '') + text;
      i = j;
    } else if (c === '\\' && i + 1 < line.length) {
      cur = (cur ?? '') + line[++i];
    } else if (c === ' ' || c === '\t') {
      push();
    } else if (c === ';') {
      end(';');
    } else if (c === '&' && line[i + 1] === '&') {
      end('&&');
      i++;
    } else if (c === '|' && line[i + 1] === '|') {
      end('||');
      i++;
    } else if (c === '#' && cur === null) {
      break;
    } else {
      cur = (cur ?? '') + c;
    }
  }
  end(';');
  return cmds;
}

/** printf's escapes and %s/%d/%% conversions; the format is reused while arguments remain. */
function printf(format: string, args: string[]): string {
  const unescape = (s: string) => s.replace(/\\([nt\\])/g, (_, e: string) => (e === 'n' ? '\n' : e === 't' ? '\t' : '\\'));
  const fmt = unescape(format);
  let out = '';
  let i = 0;
  do {
    let used = 0;
    out += fmt.replace(/%([sd%])/g, (_, k: string) => {
      if (k === '%') return '%';
      used++;
      const a = args[i++] ?? '';
      return k === 'd' ? String(Number.parseInt(a, 10) || 0) : a;
    });
    if (used === 0) break;
  } while (i < args.length);
  return out;
}

export class DeviceShell {
  status = 0;
  exited: number | undefined;
  private pending = '';
  private queue: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(
    private readonly device: ShellDevice,
    private readonly io: ShellIo,
  ) {}

  /** Stops between commands (the session went away); a sleep in progress ends early. */
  stop(): void {
    this.stopped = true;
    this.wake?.();
  }
  private wake?: () => void;

  /** Feeds stdin; complete lines run in order. */
  input(data: string): void {
    this.pending += data;
    let i;
    while ((i = this.pending.indexOf('\n')) >= 0) {
      const line = this.pending.slice(0, i);
      this.pending = this.pending.slice(i + 1);
      this.queue = this.queue.then(() => this.runLine(line));
    }
  }

  /** End of stdin: runs what is left and resolves with the exit status. */
  async eof(): Promise<number> {
    const rest = this.pending;
    this.pending = '';
    if (rest.trim()) this.queue = this.queue.then(() => this.runLine(rest));
    await this.queue;
    return this.exited ?? this.status;
  }

  async runLine(line: string): Promise<void> {
    if (this.exited !== undefined || this.stopped) return;
    const cmds = parse(line);
    if (typeof cmds === 'string') {
      this.io.stderr(`sh: syntax error: ${cmds}\n`);
      this.status = 2;
      return;
    }
    let skip = false;
    for (const cmd of cmds) {
      if (this.exited !== undefined || this.stopped) return;
      if (!skip) this.status = await this.run(cmd.words.map((w) => w.replaceAll('$?', String(this.status))));
      skip = (cmd.then === '&&' && this.status !== 0) || (cmd.then === '||' && this.status === 0);
    }
  }

  private async run([name, ...args]: string[]): Promise<number> {
    switch (name) {
      case 'true':
      case ':':
        return 0;
      case 'false':
        return 1;
      case 'echo': {
        const noNewline = args[0] === '-n';
        this.io.stdout(args.slice(noNewline ? 1 : 0).join(' ') + (noNewline ? '' : '\n'));
        return 0;
      }
      case 'printf':
        if (!args.length) {
          this.io.stderr('printf: usage: printf format [arguments]\n');
          return 2;
        }
        this.io.stdout(printf(args[0], args.slice(1)));
        return 0;
      case 'cat': {
        let status = 0;
        for (const f of args) {
          const text = this.file(f);
          if (text === undefined) {
            this.io.stderr(`cat: can't open '${f}': No such file or directory\n`);
            status = 1;
          } else this.io.stdout(text);
        }
        return status;
      }
      case 'uname': {
        const parts = { s: 'Linux', n: this.device.name, r: '6.1.0-balena', m: 'x86_64' };
        const flag = args[0] ?? '-s';
        if (flag === '-a') this.io.stdout(`${parts.s} ${parts.n} ${parts.r} #1 SMP ${parts.m} GNU/Linux\n`);
        else this.io.stdout((parts[flag.slice(1) as keyof typeof parts] ?? parts.s) + '\n');
        return 0;
      }
      case 'hostname':
        this.io.stdout(this.device.name + '\n');
        return 0;
      case 'sleep': {
        const s = Number(args[0]);
        if (!Number.isFinite(s) || s < 0) {
          this.io.stderr(`sleep: invalid number '${args[0] ?? ''}'\n`);
          return 1;
        }
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, s * 1000);
          this.wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
        this.wake = undefined;
        return 0;
      }
      case 'exit':
        this.exited = args[0] === undefined ? this.status : Number.parseInt(args[0], 10) & 0xff;
        this.io.exit?.(this.exited);
        return this.exited;
      default:
        this.io.stderr(`sh: ${name}: not found\n`);
        return 127;
    }
  }

  private file(path: string): string | undefined {
    if (path === '/etc/os-release') return osRelease(this.device);
    if (path === '/etc/hostname') return this.device.name + '\n';
    return undefined;
  }
}
