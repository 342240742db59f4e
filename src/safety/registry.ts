import {
  closeSync,
  existsSync,
  openSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { cacheDir } from '../util/paths.js';
import { processAlive } from '../util/proc.js';

/**
 * The record of disk files kvmio created, so that it reuses its own files and refuses everyone else's.
 *
 * Why a registry and not a `user.kvmio` xattr: Node has no xattr API (it would take the `attr` tools,
 * which are not installed by default), tmpfs and NFS often refuse user xattrs, and copying a file with
 * `cp` drops them, silently turning a user's copy into "ours" or ours into "theirs". A file is identified
 * by device + inode + birth time, so a file deleted and recreated at the same path (even if the inode
 * number is reused) is not mistaken for kvmio's. The registry lives in cacheDir() (created-disks.json).
 */

interface Entry {
  /** The host (its SSH destination) for files kvmio created on another host; absent for this machine's. */
  host?: string;
  path: string;
  dev: string;
  ino: string;
  /** Nanoseconds; "0" where the filesystem has no birth time (then dev+ino alone identify the file). */
  birthNs: string;
  sizeBytes: number;
  createdAt: string;
}

function registryFile(): string {
  return join(cacheDir(), 'created-disks.json');
}

function load(): Entry[] {
  const file = registryFile();
  if (!existsSync(file)) return [];
  try {
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as { disks?: Entry[] };
    return Array.isArray(parsed.disks) ? parsed.disks : [];
  } catch {
    // A damaged registry only means kvmio no longer recognises its files: it then refuses them (safe).
    return [];
  }
}

function save(entries: Entry[]): void {
  const file = registryFile();
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify({ version: 1, disks: entries }, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, file); // atomic: a concurrent reader sees the old or the new registry, never half
}

const LOCK_WAIT_MS = 10_000;

/**
 * Runs a read-modify-write of the registry alone: kvmio processes running at the same time (several
 * studies, tests) would otherwise lose each other's entries, and a lost entry makes kvmio refuse its
 * own file. The lock is a file created with O_EXCL holding the pid; a holder that is gone is stale.
 */
function updateRegistry(change: (entries: Entry[]) => Entry[]): void {
  const lock = `${registryFile()}.lock`;
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      const fd = openSync(lock, 'wx', 0o600);
      writeSync(fd, String(process.pid));
      closeSync(fd);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      let holder = 0;
      try {
        holder = Number(readFileSync(lock, 'utf8'));
      } catch {
        continue; // released meanwhile
      }
      if (!(holder > 0 && processAlive(holder))) {
        try {
          unlinkSync(lock);
        } catch {
          // taken over by another process meanwhile
        }
        continue;
      }
      if (Date.now() > deadline)
        throw new Error(`the registry of kvmio's disk files is locked by process ${holder}: ${lock}`);
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    }
  }
  try {
    save(change(load()));
  } finally {
    unlinkSync(lock);
  }
}

function identity(path: string): Pick<Entry, 'dev' | 'ino' | 'birthNs'> {
  const st = statSync(path, { bigint: true });
  return { dev: String(st.dev), ino: String(st.ino), birthNs: String(st.birthtimeNs) };
}

function matches(e: Entry, id: Pick<Entry, 'dev' | 'ino' | 'birthNs'>): boolean {
  if (e.dev !== id.dev || e.ino !== id.ino) return false;
  return e.birthNs === '0' || id.birthNs === '0' || e.birthNs === id.birthNs;
}

function stillExists(e: Entry): boolean {
  if (e.host !== undefined) return true; // another host's file: only that host can tell
  try {
    return matches(e, identity(e.path));
  } catch {
    return false;
  }
}

/** True when the existing regular file at `path` is one kvmio created. */
export function isKvmioFile(path: string): boolean {
  const id = identity(path);
  return load().some((e) => e.host === undefined && matches(e, id));
}

/** Records a file kvmio has just created (or resized); forgets entries whose file is gone. */
export function recordKvmioFile(path: string, sizeBytes: number): void {
  const id = identity(path);
  updateRegistry((entries) => [
    ...entries.filter((e) => !(e.host === undefined && matches(e, id)) && stillExists(e)),
    { path, ...id, sizeBytes, createdAt: new Date().toISOString() },
  ]);
}

type Identity = Pick<Entry, 'dev' | 'ino' | 'birthNs'>;

/** True when the file at `path` on another host (identity read there) is one kvmio created there. */
export function isKvmioFileOn(host: string, path: string, id: Identity): boolean {
  return load().some((e) => e.host === host && e.path === path && matches(e, id));
}

/** Records a file kvmio has just created (or resized) on another host. */
export function recordKvmioFileOn(host: string, path: string, id: Identity, sizeBytes: number): void {
  updateRegistry((entries) => [
    ...entries.filter((e) => !(e.host === host && e.path === path) && stillExists(e)),
    {
      host,
      path,
      dev: id.dev,
      ino: id.ino,
      birthNs: id.birthNs,
      sizeBytes,
      createdAt: new Date().toISOString(),
    },
  ]);
}
