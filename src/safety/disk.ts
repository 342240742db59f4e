import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  fchmodSync,
  ftruncateSync,
  openSync,
  statSync,
  truncateSync,
  unlinkSync,
} from 'node:fs';
import { open } from 'node:fs/promises';
import type { DiskSpec } from '../study/types.js';
import { UserError } from '../util/errors.js';
import { run } from '../util/proc.js';
import { formatBytes } from '../util/units.js';
import { type GuardOptions, guardTarget, type TargetInfo } from './guard.js';
import { prepareQcow2Image } from './image.js';
import { recordKvmioFile } from './registry.js';

export interface PrepareOptions extends GuardOptions {
  /**
   * Allocate every block now (fallocate) instead of leaving a sparse file. A sparse file's first writes
   * also allocate filesystem blocks, which may show up in the first write measurements.
   */
  preallocate?: boolean;
  /**
   * Write a file that kvmio creates or grows once in full (default true). Reads of never-written
   * blocks return zeros without touching the disk, so a fresh file would make read tests (and the
   * host baseline above all) measure the page cache's hole handling rather than storage.
   */
  fill?: boolean;
}

/** Writes `fromByte..sizeBytes` of the file with non-zero data, 1 MiB at a time. */
async function fillFile(path: string, fromByte: number, sizeBytes: number): Promise<void> {
  const chunk = randomBytes(1 << 20);
  const fh = await open(path, 'r+');
  try {
    for (let pos = fromByte; pos < sizeBytes; pos += chunk.length) {
      await fh.write(chunk, 0, Math.min(chunk.length, sizeBytes - pos), pos);
    }
    await fh.datasync();
  } finally {
    await fh.close();
  }
}

async function preallocate(path: string, sizeBytes: number): Promise<void> {
  // Node has no posix_fallocate; fallocate(1) keeps the size and only reserves blocks.
  await run(['fallocate', '--length', String(sizeBytes), path], { timeoutMs: 10 * 60_000 });
}

/** Creates the file exclusively (never over something that appeared since the guard looked), mode 0600. */
async function createFile(path: string, sizeBytes: number, prealloc: boolean, fill: boolean): Promise<void> {
  let fd: number;
  try {
    fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new UserError(`${path} appeared while kvmio was checking it; run again`);
    throw new UserError(`cannot create the disk file ${path}: ${(e as Error).message}`);
  }
  try {
    fchmodSync(fd, 0o600); // whatever the umask, a benchmark disk is private to its owner
    ftruncateSync(fd, sizeBytes);
  } finally {
    closeSync(fd);
  }
  recordKvmioFile(path, sizeBytes);
  try {
    if (prealloc) await preallocate(path, sizeBytes);
    if (fill) await fillFile(path, 0, sizeBytes);
  } catch (e) {
    unlinkSync(path); // a half-allocated file (disk full) is not left behind
    throw new UserError(`cannot allocate ${formatBytes(sizeBytes)} for ${path}: ${(e as Error).message}`);
  }
}

/**
 * Makes the disk under test ready: guards it, then creates the raw file if missing (sized, recorded as
 * kvmio's), resizes a file kvmio made earlier to the requested size, or accepts a block device that is
 * at least as large as requested (sizeBytes 0 = the whole device); a qcow2 image (`imageOf`) is made from
 * its raw file (image.ts). Nothing is written before the guard passed.
 */
export async function prepareDiskFile(spec: DiskSpec, opts: PrepareOptions = {}): Promise<TargetInfo> {
  if (spec.imageOf !== undefined) return prepareQcow2Image({ ...spec, imageOf: spec.imageOf }, opts);
  const info = await guardTarget(spec.path, opts);
  const prealloc = opts.preallocate ?? false;
  if (info.kind === 'block') {
    if (spec.sizeBytes > info.sizeBytes)
      throw new UserError(
        `${spec.path} is ${formatBytes(info.sizeBytes)}, smaller than the disk size asked for (${formatBytes(spec.sizeBytes)}); give disk.size no larger than the device, or leave it out to use the whole device`,
      );
    // A device kvmio made (a scratch LV, thin ones reading zeros) is written once, like its files.
    if (info.createdByKvmio && (opts.fill ?? true)) await fillFile(info.path, 0, spec.sizeBytes);
    return info;
  }
  if (spec.sizeBytes <= 0)
    throw new UserError(`disk size for the file ${spec.path} must be positive (e.g. disk.size: 1GiB)`);
  if (!info.exists) {
    await createFile(info.path, spec.sizeBytes, prealloc, opts.fill ?? true);
    return { ...info, sizeBytes: spec.sizeBytes, createdByKvmio: true, exists: true };
  }
  // An existing file kvmio may write to: its own, or one the user gave up with --destroy-data.
  if (info.sizeBytes !== spec.sizeBytes && (info.createdByKvmio || info.sizeBytes < spec.sizeBytes)) {
    truncateSync(info.path, spec.sizeBytes);
    if (info.createdByKvmio) recordKvmioFile(info.path, spec.sizeBytes);
  }
  const sizeBytes = info.createdByKvmio ? spec.sizeBytes : Math.max(info.sizeBytes, spec.sizeBytes);
  if (prealloc) await preallocate(info.path, sizeBytes);
  // Holes left (a grown file, or one made sparse earlier) are written once, whole file for simplicity.
  if ((opts.fill ?? true) && statSync(info.path).blocks * 512 < sizeBytes)
    await fillFile(info.path, 0, sizeBytes);
  return { ...info, sizeBytes };
}
