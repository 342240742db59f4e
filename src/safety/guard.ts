import { accessSync, constants, lstatSync, realpathSync, type Stats, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { UserError } from '../util/errors.js';
import { run } from '../util/proc.js';
import { formatBytes } from '../util/units.js';
import {
  activeSwaps,
  blockDeviceFindings,
  blockDeviceSize,
  describeSignature,
  type Finding,
  loopDevicesBackedBy,
  siblingLoopFindings,
} from './blockdev.js';
import { qemuUsers } from './inuse.js';
import { isKvmioFile } from './registry.js';

/**
 * The data guard: called before anything is written to the disk under test (by a guest or by the host
 * baseline). It only reads. Data on the target (a filesystem, a partition table, a file kvmio did not
 * create) can be overridden with `--destroy-data PATH` naming that exact path; use (mounted, held by
 * LVM/md, active swap, open by a running VM) never can, because writing under a live user corrupts it.
 */

export interface TargetInfo {
  /** Resolved path (symlinks followed). */
  path: string;
  kind: 'file' | 'block';
  /** Current size; 0 for a file that does not exist yet. */
  sizeBytes: number;
  createdByKvmio: boolean;
  /** False for a file kvmio may create. */
  exists: boolean;
}

export interface GuardOptions {
  /** Paths the user named with --destroy-data; compared after resolving symlinks. */
  destroyData?: string[];
  /**
   * Block devices kvmio made for this run (a scratch LV): what they hold is no one's data, so they
   * need no --destroy-data; compared by identity. In use still refuses them.
   */
  kvmioDevices?: string[];
}

/** Whether `p` is the disk `target` is: the same block device, or the same file (device and inode). */
function sameDisk(p: string, target: Stats): boolean {
  let st: Stats;
  try {
    st = statSync(p);
  } catch {
    return false;
  }
  if (target.isBlockDevice()) return st.isBlockDevice() && st.rdev === target.rdev;
  return st.isFile() && st.dev === target.dev && st.ino === target.ino;
}

/** A file that does not exist yet: its directory must exist and be writable (kvmio creates no directories for data). */
function missingFile(given: string, abs: string): TargetInfo {
  let link: Stats | undefined;
  try {
    link = lstatSync(abs);
  } catch {
    // truly absent
  }
  if (link?.isSymbolicLink())
    throw new UserError(
      `disk path ${given} is a symbolic link to a file that does not exist; point it at a real file`,
    );
  const dir = dirname(abs);
  // A mistyped device name must not become a regular file in /dev (RAM, and not the disk meant).
  if (abs.startsWith('/dev/')) throw new UserError(`no such device: ${given}`);
  let realDir: string;
  try {
    realDir = realpathSync(dir);
  } catch {
    throw new UserError(
      `cannot create the disk file ${given}: directory ${dir} does not exist (create it, or choose another disk path)`,
    );
  }
  if (!statSync(realDir).isDirectory())
    throw new UserError(`cannot create the disk file ${given}: ${dir} is not a directory`);
  try {
    accessSync(realDir, constants.W_OK);
  } catch {
    throw new UserError(
      `cannot create the disk file ${given}: directory ${dir} is not writable by this user`,
    );
  }
  return {
    path: join(realDir, basename(abs)),
    kind: 'file',
    sizeBytes: 0,
    createdByKvmio: false,
    exists: false,
  };
}

/** What a foreign file holds, when libblkid recognises it ("holds ext4 (label "x")"), for the message. */
async function fileContent(path: string): Promise<string> {
  const r = await run(['blkid', '-p', '-o', 'export', path], { allowFailure: true, timeoutMs: 30_000 }).catch(
    () => undefined,
  );
  const type = r?.code === 0 ? r.stdout.match(/^TYPE=(.+)$/m)?.[1] : undefined;
  if (!type) return '';
  const label = r?.stdout.match(/^LABEL=(.+)$/m)?.[1];
  return `, holds ${describeSignature({ type, label })}`;
}

async function fileFindings(path: string, st: Stats): Promise<{ findings: Finding[]; ours: boolean }> {
  const findings: Finding[] = [];
  if (activeSwaps().includes(path)) findings.push({ text: 'is active swap', inUse: true });
  for (const loop of loopDevicesBackedBy(st)) findings.push({ text: `is attached to ${loop}`, inUse: true });
  findings.push(...qemuUsers(st));
  const ours = isKvmioFile(path);
  if (!ours)
    findings.push({
      text: `exists (${formatBytes(st.size)}${await fileContent(path)}) and was not created by kvmio`,
      inUse: false,
    });
  return { findings, ours };
}

/** Checks that kvmio may write to `path`; throws UserError saying what was found when it may not. */
export async function guardTarget(path: string, opts: GuardOptions = {}): Promise<TargetInfo> {
  if (!path) throw new UserError('no disk path given (set disk.path in the study, or pass --disk PATH)');
  const abs = resolve(path);
  let real: string;
  try {
    real = realpathSync(abs);
  } catch {
    return missingFile(path, abs);
  }
  const shown = real === abs ? path : `${path} (${real})`;
  const st = statSync(real);
  let findings: Finding[];
  let info: TargetInfo;
  if (st.isBlockDevice()) {
    findings = [...(await blockDeviceFindings(real)), ...siblingLoopFindings(real), ...qemuUsers(st)];
    const ours = (opts.kvmioDevices ?? []).some((p) => sameDisk(p, st));
    if (ours) findings = findings.filter((f) => f.inUse);
    // Whatever it holds or lacks, a device is someone's disk: writing it needs --destroy-data naming it.
    else if (!findings.some((f) => !f.inUse))
      findings.push({ text: 'is a block device (no signature found)', inUse: false });
    info = {
      path: real,
      kind: 'block',
      sizeBytes: blockDeviceSize(real),
      createdByKvmio: ours,
      exists: true,
    };
  } else if (st.isFile()) {
    const r = await fileFindings(real, st);
    findings = r.findings;
    info = { path: real, kind: 'file', sizeBytes: st.size, createdByKvmio: r.ours, exists: true };
  } else {
    const what = st.isDirectory()
      ? 'a directory'
      : st.isCharacterDevice()
        ? 'a character device'
        : 'not a regular file';
    throw new UserError(`disk path ${shown} is ${what}; kvmio needs a raw file or a block device`);
  }

  const inUse = findings.filter((f) => f.inUse);
  if (inUse.length > 0)
    throw new UserError(
      `${shown} ${inUse.map((f) => f.text).join('; ')}; kvmio will not write to a disk in use, ` +
        'not even with --destroy-data. Stop that use first (unmount it, swapoff, stop the VM or LVM/RAID) and run again.',
    );
  const data = findings.filter((f) => !f.inUse);
  if (data.length === 0) return info;
  // --destroy-data names a disk: compared by identity, so any path to it (a link, a hard link) counts.
  if ((opts.destroyData ?? []).some((p) => sameDisk(p, st))) return info;
  const others = opts.destroyData?.length
    ? ` (--destroy-data names ${opts.destroyData.join(', ')}, not this disk)`
    : '';
  throw new UserError(
    `${shown} ${data.map((f) => f.text).join('; ')}; kvmio will not write to it${others}. ` +
      `To allow it, pass --destroy-data ${path}`,
  );
}
