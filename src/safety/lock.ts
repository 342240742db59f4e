import { createHash, randomUUID } from 'node:crypto';
import {
  closeSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  realpathSync,
  renameSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { UserError } from '../util/errors.js';
import { runtimeDir } from '../util/paths.js';
import { onCleanup } from '../util/proc.js';

/**
 * One kvmio run per disk under test on this host: a lock file per resolved disk path under
 * runtimeDir()/locks, created with O_EXCL and holding the owner's pid and process start time. A lock whose
 * process is gone (or whose pid now belongs to another process) is stale and taken over.
 */

interface LockContent {
  pid: number;
  /** Start time of the pid in clock ticks since boot (/proc/PID/stat field 22): guards against pid reuse. */
  start: string;
  path: string;
  since: string;
  token: string;
}

function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may itself contain spaces or ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

function isAlive(holder: LockContent): boolean {
  return startTime(holder.pid) === holder.start;
}

/** The disk's identity for locking: symlinks resolved, also for a file that does not exist yet. */
export function lockKey(path: string): string {
  const abs = resolve(path);
  try {
    return realpathSync(abs);
  } catch {
    try {
      return join(realpathSync(dirname(abs)), basename(abs));
    } catch {
      return abs;
    }
  }
}

export function lockFileFor(path: string): string {
  const key = lockKey(path);
  const readable = key.replace(/[^A-Za-z0-9._-]+/g, '_').slice(-60);
  const hash = createHash('sha256').update(key).digest('hex').slice(0, 12);
  const dir = join(runtimeDir(), 'locks');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return join(dir, `${readable}-${hash}.lock`);
}

function readLock(file: string): LockContent | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as LockContent;
  } catch {
    return undefined; // vanished, or half-written by a writer that died: treated as stale
  }
}

function tryCreate(file: string, content: LockContent): boolean {
  let fd: number;
  try {
    fd = openSync(file, 'wx', 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
  try {
    writeSync(fd, JSON.stringify(content));
  } finally {
    closeSync(fd);
  }
  return true;
}

/**
 * Moves a stale lock aside. Renaming is atomic, so if two processes race for the same stale lock only one
 * moves it; if what was moved turns out to be a fresh lock another process just took, it is put back.
 */
function removeStale(file: string, stale: LockContent | undefined): void {
  const aside = `${file}.stale-${process.pid}-${randomUUID().slice(0, 8)}`;
  try {
    renameSync(file, aside);
  } catch {
    return; // someone else moved it first
  }
  const moved = readLock(aside);
  if (moved && stale && moved.token !== stale.token && isAlive(moved)) {
    try {
      linkSync(aside, file);
    } catch {
      // a third process holds it now; its lock stands
    }
  }
  unlinkSync(aside);
}

/**
 * Takes the exclusive lock on a disk under test. Throws UserError naming the holder's pid when another
 * live process holds it. Returns the release function (also run on exit and on Ctrl-C).
 */
export function lockDisk(path: string): () => void {
  const file = lockFileFor(path);
  const mine: LockContent = {
    pid: process.pid,
    start: startTime(process.pid) ?? '',
    path: lockKey(path),
    since: new Date().toISOString(),
    token: randomUUID(),
  };
  for (let attempt = 0; ; attempt++) {
    if (tryCreate(file, mine)) break;
    let holder = readLock(file);
    if (!holder) {
      // Possibly a writer between its create and its write: look again shortly before calling it stale.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
      holder = readLock(file);
    }
    if (holder && isAlive(holder))
      throw new UserError(
        `${path} is in use by another kvmio run (pid ${holder.pid}, since ${holder.since}); ` +
          `wait for it to finish or stop it (lock file ${file})`,
      );
    if (attempt >= 5)
      throw new UserError(`cannot take the lock ${file} for ${path}; remove it if no kvmio runs`);
    removeStale(file, holder);
  }

  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    unregister();
    process.removeListener('exit', release);
    if (readLock(file)?.token !== mine.token) return; // never remove a lock that is not ours
    try {
      unlinkSync(file);
    } catch {
      // already gone
    }
  };
  const unregister = onCleanup(release);
  // A normal exit does not run cleanups; the lock must still go.
  process.once('exit', release);
  return release;
}
