import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isLocalUri } from '../libvirt/virsh.js';
import { HostUnreachableError } from '../util/errors.js';
import { runtimeDir } from '../util/paths.js';
import {
  CommandError,
  onCleanup,
  type RunOptions,
  type RunResult,
  run,
  shellQuote,
  sleep,
  spawnOwned,
} from '../util/proc.js';

/**
 * How kvmio reaches a host to measure it: this machine directly, or another host over SSH. Everything
 * measured on a hypervisor (QEMU's per-thread CPU, the host's facts, the host baseline, the data guard)
 * goes through this one interface, so a remote host is measured by the same code as the local one.
 * A remote host needs nothing of kvmio's: commands are standard tools (cat, find, grep, fio, qemu).
 */
export interface HostAccess {
  /** "this machine" or the SSH destination, for messages. */
  readonly label: string;
  readonly local: boolean;
  /** Runs argv on the host; never a shell on this side, and on the remote side every word quoted. */
  run(argv: readonly string[], opts?: RunOptions): Promise<RunResult>;
  /** A text file's content on the host, or undefined when it cannot be read. */
  readText(path: string): Promise<string | undefined>;
  /** Starts a long-lived command on the host with piped stdin/stdout (ended by kvmio on exit). */
  start(argv: readonly string[]): Promise<ChildProcess>;
  /** Ends what the access holds open (an SSH connection); later calls open it again. */
  close(): Promise<void>;
}

/** SSH does not connect: the host is out, not one measurement. */
export class SshUnreachableError extends HostUnreachableError {
  constructor(
    readonly label: string,
    readonly reason: string,
  ) {
    super(`host ${label} does not answer over SSH: ${reason}`);
    this.name = 'SshUnreachableError';
  }
}

export const LOCAL_HOST: HostAccess = {
  label: 'this machine',
  local: true,
  run: (argv, opts) => run(argv, opts),
  readText: async (path) => {
    try {
      return readFileSync(path, 'utf8');
    } catch {
      return undefined;
    }
  },
  start: async (argv) => spawnOwned(argv[0] ?? 'true', argv.slice(1), { stdio: 'pipe' }),
  close: async () => undefined,
};

/**
 * Argv for the remote side of ssh, which joins its arguments with spaces and hands the result to the
 * remote user's shell: every word quoted by the one shell quoter (proc.ts shellQuote), so the remote
 * shell runs exactly this argv and expands nothing.
 */
export function quoteRemoteArgv(argv: readonly string[]): string {
  if (argv.length === 0) throw new Error('quoteRemoteArgv: empty argv');
  return argv.map(shellQuote).join(' ');
}

export interface SshTarget {
  host: string;
  user?: string;
  port?: number;
  keyfile?: string;
}

/** The SSH destination of a qemu+ssh:// URI, or undefined for URIs that do not use SSH. */
export function sshTargetOf(uri: string): SshTarget | undefined {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return undefined;
  }
  if (!/^[a-z]+\+ssh:$/.test(url.protocol) || !url.hostname) return undefined;
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  // Names and addresses only: the target becomes an ssh argument, so nothing that looks like an option.
  if (!/^[A-Za-z0-9][A-Za-z0-9.:_-]*$/.test(host)) return undefined;
  const user = url.username ? decodeURIComponent(url.username) : undefined;
  if (user !== undefined && !/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(user)) return undefined;
  const keyfile = url.searchParams.get('keyfile') ?? undefined;
  return {
    host,
    ...(user ? { user } : {}),
    ...(url.port ? { port: Number(url.port) } : {}),
    ...(keyfile ? { keyfile } : {}),
  };
}

/** ssh options naming the destination (same for the master and every command through it). */
function targetArgs(t: SshTarget): string[] {
  return [
    ...(t.port ? ['-p', String(t.port)] : []),
    ...(t.user ? ['-l', t.user] : []),
    ...(t.keyfile ? ['-i', t.keyfile] : []),
    '-o',
    'BatchMode=yes',
    '--',
    t.host,
  ];
}

let sshSeq = 0;

/**
 * A host reached over one persistent SSH connection (an OpenSSH control master kvmio starts and ends):
 * each command is a session on that connection, so sampling every second costs a channel, not a login.
 * A dead master (the host went away) is reopened on the next call; if that fails the call throws
 * HostUnreachableError.
 */
export class SshHost implements HostAccess {
  readonly local = false;
  readonly label: string;
  private readonly controlPath: string;
  private master: ChildProcess | undefined;
  private opening: Promise<void> | undefined;
  private masterStderr = '';
  private offCleanup: (() => void) | undefined;

  constructor(
    readonly target: SshTarget,
    private readonly connectTimeoutS = 10,
  ) {
    this.label = `${target.user ? `${target.user}@` : ''}${target.host}`;
    this.controlPath = join(runtimeDir(), `ssh-${process.pid}-${++sshSeq}`);
  }

  private masterAlive(): boolean {
    return this.master !== undefined && this.master.exitCode === null && this.master.signalCode === null;
  }

  private async open(): Promise<void> {
    if (this.masterAlive()) return;
    this.opening ??= this.startMaster().finally(() => {
      this.opening = undefined;
    });
    return this.opening;
  }

  private async startMaster(): Promise<void> {
    const argv = [
      '-M',
      '-N',
      '-S',
      this.controlPath,
      '-o',
      `ConnectTimeout=${this.connectTimeoutS}`,
      '-o',
      'ServerAliveInterval=5',
      '-o',
      'ServerAliveCountMax=3',
      ...targetArgs(this.target),
    ];
    this.masterStderr = '';
    const child = spawnOwned('ssh', argv, { stdio: ['ignore', 'ignore', 'pipe'] });
    this.master = child;
    this.offCleanup ??= onCleanup(() => this.close());
    child.stderr?.on('data', (d: Buffer) => {
      this.masterStderr = (this.masterStderr + d.toString('utf8')).slice(-2000);
    });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const deadline = Date.now() + (this.connectTimeoutS + 5) * 1000;
    for (;;) {
      const check = await run(['ssh', '-S', this.controlPath, '-O', 'check', ...targetArgs(this.target)], {
        allowFailure: true,
        timeoutMs: 5000,
      });
      if (check.code === 0) return;
      if (!this.masterAlive() || Date.now() > deadline) {
        if (this.masterAlive()) child.kill('SIGKILL');
        await Promise.race([exited, sleep(2000)]);
        const why = this.masterStderr.trim().split('\n').slice(-1)[0] || 'the SSH connection did not come up';
        throw new SshUnreachableError(this.label, why);
      }
      await sleep(100);
    }
  }

  async run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    await this.open();
    // ControlMaster=no: a session on the master only; never a second login of its own.
    const r = await run(
      [
        'ssh',
        '-S',
        this.controlPath,
        '-o',
        'ControlMaster=no',
        ...targetArgs(this.target),
        quoteRemoteArgv(argv),
      ],
      { ...opts, allowFailure: true },
    );
    // 255 is ssh's own failure; when the master is gone with it, the host is.
    if (r.code === 255 && !this.masterAlive())
      throw new SshUnreachableError(
        this.label,
        r.stderr.trim().split('\n').slice(-1)[0] || 'connection lost',
      );
    if ((r.code !== 0 || r.timedOut) && !opts.allowFailure) {
      throw new CommandError([`ssh ${this.label}`, ...argv], r);
    }
    return r;
  }

  async start(argv: readonly string[]): Promise<ChildProcess> {
    await this.open();
    return spawnOwned(
      'ssh',
      ['-S', this.controlPath, '-o', 'ControlMaster=no', ...targetArgs(this.target), quoteRemoteArgv(argv)],
      { stdio: 'pipe' },
    );
  }

  async readText(path: string): Promise<string | undefined> {
    const r = await this.run(['cat', '--', path], { allowFailure: true, timeoutMs: 20_000 });
    return r.code === 0 ? r.stdout : undefined;
  }

  async close(): Promise<void> {
    const master = this.master;
    this.master = undefined;
    this.offCleanup?.();
    this.offCleanup = undefined;
    if (!master || master.exitCode !== null || master.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => master.once('exit', () => resolve()));
    master.kill('SIGTERM');
    await Promise.race([exited, sleep(3000)]);
    if (master.exitCode === null && master.signalCode === null) master.kill('SIGKILL');
  }
}

const remoteHosts = new Map<string, SshHost>();

/**
 * Whether kvmio can reach the host of a libvirt URI itself (its disk, fio, /proc): this machine's
 * URIs and qemu+ssh:// ones. The plan schedules a host's baseline only where this holds.
 */
export function hostReachable(uri: string): boolean {
  return isLocalUri(uri) || sshTargetOf(uri) !== undefined;
}

/**
 * The access for a libvirt URI: this machine for local URIs, the URI's SSH destination (one shared
 * connection per destination) for qemu+ssh://; undefined where kvmio has no way onto the host
 * (qemu+tls://, qemu+tcp://): what needs the host then is reported missing for that host.
 */
export function hostAccessFor(uri: string, local: boolean): HostAccess | undefined {
  if (local) return LOCAL_HOST;
  const target = sshTargetOf(uri);
  if (!target) return undefined;
  const key = JSON.stringify(target);
  let host = remoteHosts.get(key);
  if (!host) {
    host = new SshHost(target);
    remoteHosts.set(key, host);
  }
  return host;
}

/** Closes every SSH connection kvmio opened (end of a run). */
export async function closeHostAccesses(): Promise<void> {
  await Promise.all([...remoteHosts.values()].map((h) => h.close()));
}
