import { type ChildProcess, type SpawnOptions, spawn, spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { UserError } from './errors.js';

/**
 * The one place kvmio starts host processes. Every command is an argv array (never a shell string),
 * every long-lived child is registered so that it is ended on normal exit, on error and on Ctrl-C.
 */

export interface RunOptions {
  timeoutMs?: number;
  input?: string | Buffer;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Resolve even when the exit code is non-zero (the caller inspects `code`). */
  allowFailure?: boolean;
  /** Called with the child's pid once it is spawned (to measure its CPU while it runs). */
  onSpawn?: (pid: number) => void;
  /** Called with each chunk of stdout as it arrives (stdout is still returned whole). */
  onStdout?: (chunk: string) => void;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export class CommandError extends Error {
  constructor(
    readonly argv: readonly string[],
    readonly result: RunResult,
  ) {
    const why = result.timedOut
      ? 'timed out'
      : result.signal
        ? `was killed by ${result.signal}`
        : `exited with code ${result.code}`;
    const tail = (result.stderr || result.stdout).trim().split('\n').slice(-5).join('\n');
    super(`${argv.join(' ')} ${why}${tail ? `:\n${tail}` : ''}`);
    this.name = 'CommandError';
  }
}

/** Runs argv to completion, capturing output. Throws CommandError on failure unless allowFailure. */
export function run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const [cmd, ...args] = argv;
  if (!cmd) throw new Error('run: empty argv');
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      env: opts.env ?? process.env,
      cwd: opts.cwd,
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      // Its own process group, so that a kill reaches what it forked too (fio runs its jobs in
      // child processes that would otherwise go on writing after kvmio is gone).
      detached: true,
    });
    const untrack = trackChild(child);
    if (child.pid !== undefined) opts.onSpawn?.(child.pid);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer =
      opts.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            killTree(child);
          }, opts.timeoutMs);
    child.stdout?.on('data', (d: Buffer) => {
      out.push(d);
      opts.onStdout?.(d.toString('utf8'));
    });
    child.stderr?.on('data', (d: Buffer) => err.push(d));
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (timer) clearTimeout(timer);
      untrack();
      if (e.code === 'ENOENT')
        reject(new UserError(`command not found: ${cmd} (run "make demo" or install it)`));
      else reject(e);
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      untrack();
      const result: RunResult = {
        code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        timedOut,
      };
      if ((code !== 0 || timedOut) && !opts.allowFailure) reject(new CommandError(argv, result));
      else resolve(result);
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/**
 * Runs a short command to completion synchronously (a version query while a study file is read):
 * argv, no shell, killed at the timeout. A spawn failure is the result's `error`, never a throw.
 */
export function runSync(
  argv: readonly string[],
  opts: { timeoutMs: number },
): RunResult & { error?: string } {
  const [cmd, ...args] = argv;
  if (!cmd) throw new Error('runSync: empty argv');
  const r = spawnSync(cmd, args, {
    encoding: 'utf8',
    timeout: opts.timeoutMs,
    killSignal: 'SIGKILL',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const timedOut = (r.error as NodeJS.ErrnoException | undefined)?.code === 'ETIMEDOUT';
  return {
    code: r.status,
    signal: r.signal,
    stdout: r.stdout ?? '',
    stderr: r.stderr ?? '',
    timedOut,
    ...(r.error && !timedOut ? { error: r.error.message } : {}),
  };
}

/** True when argv runs and exits 0; never throws. */
export async function succeeds(argv: readonly string[], timeoutMs = 10_000): Promise<boolean> {
  try {
    const r = await run(argv, { allowFailure: true, timeoutMs });
    return r.code === 0;
  } catch {
    return false;
  }
}

// ---- lifetime of everything kvmio starts -------------------------------------------------------

const liveChildren = new Set<ChildProcess>();
type Cleanup = () => Promise<void> | void;
const cleanups = new Map<number, Cleanup>();
let nextCleanupId = 1;
let handlersInstalled = false;
let shuttingDown = false;

/** Registers a child so that it is killed if kvmio exits or is interrupted. Returns an untrack function. */
export function trackChild(child: ChildProcess): () => void {
  installExitHandlers();
  liveChildren.add(child);
  const untrack = () => liveChildren.delete(child);
  child.once('exit', untrack);
  return untrack;
}

let pdeathsigWrapper: string[] | null | undefined;

/** util-linux setpriv with --pdeathsig, when this host has it (checked once). */
function parentDeathWrapper(): string[] | null {
  if (pdeathsigWrapper === undefined) {
    const help = spawnSync('setpriv', ['--help'], { encoding: 'utf8', timeout: 5000 });
    pdeathsigWrapper =
      !help.error && /--pdeathsig/.test(help.stdout ?? '') ? ['setpriv', '--pdeathsig', 'KILL', '--'] : null;
  }
  return pdeathsigWrapper;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Starts a long-lived child (QEMU) that must not outlive kvmio, even when kvmio is killed with SIGKILL
 * and no cleanup runs: the kernel sends it SIGKILL when kvmio goes (setpriv --pdeathsig, which execs the
 * program, so the pid is the program's). The child is tracked for the ordinary exits too. A program
 * that is not an executable path is spawned as it is, so that a missing one still fails with ENOENT.
 */
export function spawnOwned(cmd: string, args: string[], opts: SpawnOptions): ChildProcess {
  const wrapper = cmd.startsWith('/') && isExecutable(cmd) ? parentDeathWrapper() : null;
  const child = wrapper
    ? spawn(wrapper[0]!, [...wrapper.slice(1), cmd, ...args], opts)
    : spawn(cmd, args, opts);
  trackChild(child);
  return child;
}

/**
 * Registers an async cleanup (stop a VM, destroy a libvirt domain, mark a run interrupted).
 * Cleanups run in reverse order of registration on SIGINT/SIGTERM and on uncaught errors.
 * Returns a function that unregisters it (call after the resource was released normally).
 */
export function onCleanup(fn: Cleanup): () => void {
  installExitHandlers();
  const id = nextCleanupId++;
  cleanups.set(id, fn);
  return () => cleanups.delete(id);
}

/** Runs every registered cleanup (newest first), each bounded in time, then kills remaining children. */
export async function runCleanups(budgetMs = 4000): Promise<void> {
  const pending = [...cleanups.entries()].reverse();
  cleanups.clear();
  const deadline = Date.now() + budgetMs;
  for (const [, fn] of pending) {
    const left = Math.max(100, deadline - Date.now());
    await Promise.race([
      Promise.resolve()
        .then(fn)
        .catch(() => undefined),
      new Promise((r) => setTimeout(r, left).unref()),
    ]);
  }
  killAllChildren();
}

export function killAllChildren(): void {
  for (const child of liveChildren) killTree(child);
  liveChildren.clear();
}

/** SIGKILLs a child's process group (when it leads one) and the child itself. */
export function killTree(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): void {
  if (child.pid !== undefined) {
    try {
      process.kill(-child.pid, signal);
    } catch {
      // not a group leader, or already gone
    }
  }
  try {
    child.kill(signal);
  } catch {
    // already gone
  }
}

/** Listeners told about an interrupt before cleanups run (the run engine prints how to resume). */
const interruptListeners = new Set<(signal: NodeJS.Signals) => void>();
export function onInterrupt(fn: (signal: NodeJS.Signals) => void): () => void {
  installExitHandlers();
  interruptListeners.add(fn);
  return () => interruptListeners.delete(fn);
}

export function isShuttingDown(): boolean {
  return shuttingDown;
}

function installExitHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  const onSignal = (signal: NodeJS.Signals) => {
    if (shuttingDown) {
      // A second Ctrl-C: stop waiting for graceful cleanups.
      killAllChildren();
      process.exit(signal === 'SIGINT' ? 130 : 143);
    }
    shuttingDown = true;
    for (const fn of interruptListeners) {
      try {
        fn(signal);
      } catch {
        // a listener must not prevent cleanup
      }
    }
    void runCleanups().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
  // Last resort on a plain exit: synchronous kill of anything still running.
  process.on('exit', killAllChildren);
}

/** Whether a process with this pid exists (EPERM: it exists but belongs to someone else). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Sleeps; rejects early never. Used for polling waits, always with a deadline at the caller. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `probe` until it returns a value other than undefined, or throws after timeoutMs. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs: number,
  intervalMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (e) {
      lastError = e;
    }
    await sleep(intervalMs);
  }
  const why = lastError instanceof Error ? ` (last error: ${lastError.message})` : '';
  throw new Error(`timed out after ${Math.round(timeoutMs / 1000)}s waiting for ${what}${why}`);
}

/** Quotes an argument for display as a POSIX shell would read it back (kvmio itself never runs shells). */
export function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}
