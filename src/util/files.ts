import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  lstatSync,
  mkdirSync,
  openSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { UserError } from './errors.js';

/**
 * Writing outputs (reports, exports) where a user pointed kvmio, without ever following a symbolic
 * link planted there: what kvmio writes lands at the path it names, or nowhere.
 */

const code = (err: unknown) => (err as NodeJS.ErrnoException).code ?? (err as Error).message;

/**
 * The directory `dir` (created with its missing parents, one level at a time), or a UserError saying
 * why it cannot be one: empty, a file, a path where nothing can be created (/proc/…).
 */
export function prepareOutputDir(dir: string, flag: string): string {
  if (dir.trim() === '') throw new UserError(`${flag} '': give the directory to write to`);
  const path = resolve(dir);
  const missing: string[] = [];
  let p = path;
  for (;;) {
    let isDir: boolean;
    try {
      isDir = statSync(p).isDirectory();
    } catch (err) {
      if (code(err) !== 'ENOENT') throw new UserError(`${flag} ${dir}: cannot use ${p} (${code(err)})`);
      missing.unshift(p);
      if (dirname(p) === p) break;
      p = dirname(p);
      continue;
    }
    if (!isDir) throw new UserError(`${flag} ${dir}: ${p} is not a directory`);
    break;
  }
  // One level at a time: a recursive mkdir loops for ever under /proc, where mkdir says ENOENT.
  for (const d of missing) {
    try {
      mkdirSync(d, { mode: 0o755 });
    } catch (err) {
      if (code(err) !== 'EEXIST') throw new UserError(`${flag} ${dir}: cannot create ${d} (${code(err)})`);
    }
  }
  return path;
}

/**
 * A directory inside an output directory (charts/): created if missing; an existing symbolic link or
 * file there is refused, not followed.
 */
export function prepareSubdir(parent: string, name: string, flag: string): string {
  const path = join(parent, name);
  try {
    mkdirSync(path, { mode: 0o755 });
  } catch (err) {
    if (code(err) !== 'EEXIST') throw new UserError(`${flag}: cannot create ${path} (${code(err)})`);
    const st = lstatSync(path);
    if (st.isSymbolicLink())
      throw new UserError(`${flag}: ${path} is a symbolic link; kvmio does not write through links`);
    if (!st.isDirectory()) throw new UserError(`${flag}: ${path} is not a directory`);
  }
  return path;
}

/**
 * Writes `path` whole or not at all, never through a link: an existing symbolic link (or directory)
 * at `path` is refused; the data goes to a new temporary file in the same directory (O_EXCL |
 * O_NOFOLLOW), which then replaces `path` by rename.
 */
export function writeFileNoFollow(path: string, data: string | Uint8Array, flag: string): void {
  let st: ReturnType<typeof lstatSync> | undefined;
  try {
    st = lstatSync(path);
  } catch (err) {
    if (code(err) !== 'ENOENT') throw new UserError(`${flag}: cannot write ${path} (${code(err)})`);
  }
  if (st?.isSymbolicLink())
    throw new UserError(`${flag}: ${path} is a symbolic link; kvmio does not write through links`);
  if (st && !st.isFile()) throw new UserError(`${flag}: ${path} exists and is not a regular file`);
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  let fd: number;
  try {
    fd = openSync(
      tmp,
      constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
      0o644,
    );
  } catch (err) {
    throw new UserError(`${flag}: cannot write in ${dirname(path)} (${code(err)})`);
  }
  try {
    try {
      const bytes = typeof data === 'string' ? Buffer.from(data) : data;
      for (let off = 0; off < bytes.length; ) off += writeSync(fd, bytes, off, bytes.length - off);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw new UserError(`${flag}: cannot write ${path} (${code(err)})`);
  }
}
