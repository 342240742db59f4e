import { closeSync, constants, fchmodSync, openSync, unlinkSync } from 'node:fs';
import type { DiskSpec, Qcow2Options } from '../study/types.js';
import { UserError } from '../util/errors.js';
import { run } from '../util/proc.js';
import { type GuardOptions, guardTarget, type TargetInfo } from './guard.js';
import { recordKvmioFile } from './registry.js';

/**
 * qcow2 images of the test disk. An image is made again for every run, after the data guard passed:
 * `qemu-img create` with the study's options, then filled from the raw file beside it (already
 * written in full), so every cluster is allocated and reads hit data, as on the raw file. Making it
 * anew each time gives every run the same allocation state, whatever earlier runs wrote.
 */

/** `qemu-img create` argv for an image of the study's options (the options are allow-listed values). */
export function qcow2CreateArgv(path: string, sizeBytes: number, q: Qcow2Options): string[] {
  const options = [
    `cluster_size=${q.clusterSizeBytes}`,
    `preallocation=${q.preallocation}`,
    // lazy refcounts need the qcow2 v3 header (compat 1.1), the default since QEMU 1.7.
    'compat=1.1',
    `lazy_refcounts=${q.lazyRefcounts ? 'on' : 'off'}`,
  ];
  return ['qemu-img', 'create', '-q', '-f', 'qcow2', '-o', options.join(','), path, String(sizeBytes)];
}

/** `qemu-img convert` argv writing the raw file's data into the image made before (-n: no re-create). */
export function qcow2FillArgv(rawPath: string, imagePath: string): string[] {
  return ['qemu-img', 'convert', '-n', '-f', 'raw', '-O', 'qcow2', rawPath, imagePath];
}

export async function prepareQcow2Image(
  spec: DiskSpec & { imageOf: string },
  opts: GuardOptions = {},
): Promise<TargetInfo> {
  const info = await guardTarget(spec.path, opts);
  if (info.kind !== 'file')
    throw new UserError(`${spec.path} is a block device; a qcow2 image of the test disk must be a file`);
  // The guard passed: the file is kvmio's own image or one the user gave up with --destroy-data.
  if (info.exists) unlinkSync(info.path);
  let fd: number;
  try {
    fd = openSync(info.path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  } catch (e) {
    throw new UserError(`cannot create the qcow2 image ${info.path}: ${(e as Error).message}`);
  }
  try {
    fchmodSync(fd, 0o600);
  } finally {
    closeSync(fd);
  }
  recordKvmioFile(info.path, spec.sizeBytes);
  const q = spec.qcow2;
  if (!q) throw new UserError(`${spec.path}: no qcow2 settings for the image`);
  try {
    await run(qcow2CreateArgv(info.path, spec.sizeBytes, q), { timeoutMs: 10 * 60_000 });
    await run(qcow2FillArgv(spec.imageOf, info.path), { timeoutMs: 60 * 60_000 });
  } catch (e) {
    unlinkSync(info.path);
    throw new UserError(`cannot make the qcow2 image ${info.path}: ${(e as Error).message}`);
  }
  // qemu-img rewrote the file in place: same inode, still recorded as kvmio's.
  return { ...info, sizeBytes: spec.sizeBytes, createdByKvmio: true, exists: true };
}
