import { dirname, posix } from 'node:path';
import type { HostAccess } from '../host/access.js';
import { parseGrepDump } from '../metrics/cpu.js';
import type { DiskSpec } from '../study/types.js';
import { UserError } from '../util/errors.js';
import { formatBytes } from '../util/units.js';
import { describeSignature, unescapeMount } from './blockdev.js';
import type { PrepareOptions } from './disk.js';
import type { TargetInfo } from './guard.js';
import { isKvmioFileOn, recordKvmioFileOn } from './registry.js';

/**
 * The data guard and disk preparation on another host, through its access (SSH): the same rules as on
 * this machine, read with standard tools there (stat, lsblk, blkid, find, fio). Nothing is written
 * before the checks passed. A disk in use (mounted, held by LVM/RAID, active swap, attached to a loop
 * device, open by any process, such as a VM) is never used; a disk or file with data only when --destroy-data names it; files kvmio created
 * on that host (recorded with the host's name) are reused.
 */

interface RemoteStat {
  kind: 'file' | 'block' | 'other';
  what: string;
  sizeBytes: number;
  /** Size of the blocks allocated (a sparse file has fewer than its size). */
  allocatedBytes: number;
  dev: string;
  ino: string;
  birthNs: string;
}

/**
 * `stat -L --printf` output "%F|%s|%b|%B|%d|%i|%.9W" (GNU coreutils): the birth time in ns where the
 * filesystem has one, as this machine's own identity of a file has it.
 */
export function parseRemoteStat(text: string): RemoteStat {
  const [what = '', size, blocks, blockSize, dev = '', ino = '', birth = '0'] = text.trim().split('|');
  const kind =
    what === 'regular file' || what === 'regular empty file'
      ? 'file'
      : what === 'block special file'
        ? 'block'
        : 'other';
  return {
    kind,
    what,
    sizeBytes: Number(size),
    allocatedBytes: Number(blocks) * Number(blockSize),
    dev,
    ino,
    birthNs: /^\d+\.\d{9}$/.test(birth)
      ? String(BigInt(birth.replace('.', '')))
      : /^[1-9]\d*$/.test(birth)
        ? `${birth}000000000`
        : '0',
  };
}

async function statOn(host: HostAccess, path: string): Promise<RemoteStat | undefined> {
  const r = await host.run(['stat', '-L', '--printf', '%F|%s|%b|%B|%d|%i|%.9W', '--', path], {
    allowFailure: true,
    timeoutMs: 20_000,
  });
  if (r.code !== 0) {
    if (/No such file/.test(r.stderr)) return undefined;
    throw new UserError(
      `cannot inspect ${path} on ${host.label}: ${r.stderr.trim() || `stat exit ${r.code}`}`,
    );
  }
  return parseRemoteStat(r.stdout);
}

/** A find(1) -lname pattern matching exactly `path` (glob characters escaped). */
function exactPattern(path: string): string {
  return path.replace(/[\\*?[\]]/g, (c) => `\\${c}`);
}

/** Processes on the host holding `path` open (a VM's QEMU, a database): their pids. */
async function openers(host: HostAccess, path: string): Promise<string[]> {
  const r = await host.run(
    [
      'find',
      '/proc',
      '-mindepth',
      '3',
      '-maxdepth',
      '3',
      '-path',
      '/proc/[0-9]*/fd/*',
      '-lname',
      exactPattern(path),
      '-printf',
      '%h\\n',
    ],
    { allowFailure: true, timeoutMs: 30_000 },
  );
  const pids = r.stdout
    .split('\n')
    .map((l) => /^\/proc\/(\d+)\/fd$/.exec(l.trim())?.[1])
    .filter((p): p is string => p !== undefined);
  return [...new Set(pids)];
}

/** Mount points and holders (LVM, RAID, crypt) of a block device and its partitions, from lsblk. */
async function blockUses(host: HostAccess, path: string): Promise<string[]> {
  const r = await host.run(['lsblk', '-n', '-r', '-o', 'NAME,TYPE,MOUNTPOINT', '--', path], {
    allowFailure: true,
    timeoutMs: 30_000,
  });
  if (r.code !== 0) throw new UserError(`cannot inspect ${path} on ${host.label}: ${r.stderr.trim()}`);
  const uses: string[] = [];
  for (const line of r.stdout.trim().split('\n')) {
    const [name, type, mount] = line.split(' ');
    if (mount) uses.push(`${name} is mounted at ${mount.replace(/\\x20/g, ' ')}`);
    if (type && !['disk', 'part', 'loop', 'rom'].includes(type)) uses.push(`${name} is held by ${type}`);
  }
  return uses;
}

/** The areas /proc/swaps lists (files and devices), the kernel's octal escapes undone. */
export function parseProcSwaps(text: string): string[] {
  return text
    .split('\n')
    .slice(1)
    .map((line) => unescapeMount(line.split(/\s+/)[0] ?? ''))
    .filter((p) => p.length > 0);
}

export interface LoopBacking {
  devPath: string;
  backingFile: string;
}

/** `grep -H ''` of the loop devices' sysfs backing_file: which file each attached loop device is over. */
export function parseLoopBackings(dump: string): LoopBacking[] {
  const out: LoopBacking[] = [];
  for (const [file, content] of parseGrepDump(dump)) {
    const name = /^\/sys\/devices\/virtual\/block\/(loop\d+)\/loop\/backing_file$/.exec(file)?.[1];
    if (name && content)
      out.push({ devPath: `/dev/${name}`, backingFile: content.replace(/ \(deleted\)$/, '') });
  }
  return out;
}

/** `stat -L --printf '%d|%i|%n\n'` output as path → "dev|ino" (files that cannot be stat'ed are absent). */
export function parseIdentities(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^(\d+)\|(\d+)\|(.+)$/.exec(line);
    if (m) out.set(m[3] as string, `${m[1]}|${m[2]}`);
  }
  return out;
}

/**
 * Active swap and loop devices over the target, compared by identity (device and inode, as stat -L
 * gives them for a file or a device node), never by path: a hard link or a symlink is found too.
 */
export function swapAndLoopUses(
  target: Pick<RemoteStat, 'dev' | 'ino'>,
  swaps: string[],
  loops: LoopBacking[],
  identities: Map<string, string>,
): string[] {
  const id = `${target.dev}|${target.ino}`;
  const uses: string[] = [];
  if (swaps.some((p) => identities.get(p) === id)) uses.push('is active swap');
  for (const l of loops) if (identities.get(l.backingFile) === id) uses.push(`is attached to ${l.devPath}`);
  return uses;
}

/** swapAndLoopUses on the host: /proc/swaps, the loop devices' backing files and a stat of each. */
async function swapAndLoopOn(host: HostAccess, target: RemoteStat): Promise<string[]> {
  const swaps = parseProcSwaps((await host.readText('/proc/swaps')) ?? '');
  const loopDump = await host.run(
    [
      'find',
      '/sys/devices/virtual/block',
      '-mindepth',
      '3',
      '-maxdepth',
      '3',
      '-path',
      '*/loop*/loop/backing_file',
      '-exec',
      'grep',
      '-H',
      '',
      '{}',
      '+',
    ],
    { allowFailure: true, timeoutMs: 30_000 },
  );
  const loops = parseLoopBackings(loopDump.stdout);
  const paths = [...new Set([...swaps, ...loops.map((l) => l.backingFile)])];
  if (paths.length === 0) return [];
  // A deleted backing file makes stat exit 1; the others are still printed.
  const ids = await host.run(['stat', '-L', '--printf', '%d|%i|%n\n', '--', ...paths], {
    allowFailure: true,
    timeoutMs: 20_000,
  });
  return swapAndLoopUses(target, swaps, loops, parseIdentities(ids.stdout));
}

/** What libblkid recognises on the target: "ext4 (label "data")", "a gpt partition table". */
async function signatureOn(host: HostAccess, path: string): Promise<string | undefined> {
  const r = await host.run(['blkid', '-p', '-o', 'export', '--', path], {
    allowFailure: true,
    timeoutMs: 30_000,
  });
  if (r.code !== 0) return undefined;
  const kv = new Map(r.stdout.split('\n').map((l) => l.split('=', 2) as [string, string]));
  const type = kv.get('TYPE') ?? kv.get('PTTYPE');
  return type ? describeSignature({ type, label: kv.get('LABEL') }) : undefined;
}

/** Writes the file once in full with non-zero data (fio's buffers), so reads measure storage. */
async function fillOn(host: HostAccess, path: string, sizeBytes: number): Promise<void> {
  await host.run(
    [
      'fio',
      '--name=kvmio-fill',
      `--filename=${path}`,
      '--rw=write',
      '--bs=1M',
      `--size=${sizeBytes}`,
      '--ioengine=psync',
      '--end_fsync=1',
      '--output-format=terse',
    ],
    { timeoutMs: 30 * 60_000 },
  );
}

/** prepareDiskFile's twin for a disk on another host (see the module comment). */
export async function prepareDiskOn(
  host: HostAccess,
  spec: DiskSpec,
  opts: PrepareOptions = {},
): Promise<TargetInfo> {
  const path = spec.path;
  const shown = `${path} on ${host.label}`;
  if (!posix.isAbsolute(path)) throw new UserError(`disk path ${path} of a remote host must be absolute`);
  const resolved = (await host.run(['realpath', '-m', '--', path], { timeoutMs: 20_000 })).stdout.trim();
  const st = await statOn(host, resolved);
  const destroyOk = (opts.destroyData ?? []).includes(path) || (opts.destroyData ?? []).includes(resolved);
  if (!st) {
    if (resolved.startsWith('/dev/')) throw new UserError(`no such device: ${shown}`);
    const dir = await statOn(host, dirname(resolved));
    if (dir?.what !== 'directory')
      throw new UserError(
        `cannot create the disk file ${shown}: directory ${dirname(resolved)} does not exist`,
      );
    if (spec.sizeBytes <= 0)
      throw new UserError(`disk size for the file ${shown} must be positive (e.g. disk.size: 1GiB)`);
    await host.run(['truncate', '-s', String(spec.sizeBytes), '--', resolved], { timeoutMs: 20_000 });
    await host.run(['chmod', '0600', '--', resolved], { timeoutMs: 20_000 });
    const made = await statOn(host, resolved);
    if (!made) throw new UserError(`cannot create the disk file ${shown}`);
    recordKvmioFileOn(host.label, resolved, made, spec.sizeBytes);
    await fillOn(host, resolved, spec.sizeBytes);
    return { path: resolved, kind: 'file', sizeBytes: spec.sizeBytes, createdByKvmio: true, exists: true };
  }
  if (st.kind === 'other')
    throw new UserError(`disk path ${shown} is a ${st.what}; kvmio needs a raw file or a block device`);
  const inUse = st.kind === 'block' ? await blockUses(host, resolved) : [];
  inUse.push(...(await swapAndLoopOn(host, st)));
  const users = await openers(host, resolved);
  if (users.length > 0) inUse.push(`is open by process ${users.join(', ')}`);
  if (inUse.length > 0)
    throw new UserError(
      `${shown}: ${inUse.join('; ')}; kvmio will not write to a disk in use, not even with --destroy-data`,
    );
  const ours = st.kind === 'file' && isKvmioFileOn(host.label, resolved, st);
  if (!ours && !destroyOk) {
    const sig = await signatureOn(host, resolved);
    const what =
      st.kind === 'block'
        ? sig
          ? `holds ${sig}`
          : undefined
        : `exists (${formatBytes(st.sizeBytes)}${sig ? `, holds ${sig}` : ''}) and was not created by kvmio`;
    if (what)
      throw new UserError(
        `${shown} ${what}; kvmio will not write to it. To allow it, pass --destroy-data ${path}`,
      );
  }
  if (st.kind === 'block') {
    if (spec.sizeBytes > st.sizeBytes)
      throw new UserError(
        `${shown} is ${formatBytes(st.sizeBytes)}, smaller than asked for (${formatBytes(spec.sizeBytes)})`,
      );
    return { path: resolved, kind: 'block', sizeBytes: st.sizeBytes, createdByKvmio: false, exists: true };
  }
  const sizeBytes = ours ? spec.sizeBytes : Math.max(st.sizeBytes, spec.sizeBytes);
  if (sizeBytes !== st.sizeBytes) {
    await host.run(['truncate', '-s', String(sizeBytes), '--', resolved], { timeoutMs: 20_000 });
    if (ours) recordKvmioFileOn(host.label, resolved, st, sizeBytes);
  }
  if (st.allocatedBytes < sizeBytes) await fillOn(host, resolved, sizeBytes);
  return { path: resolved, kind: 'file', sizeBytes, createdByKvmio: ours, exists: true };
}
