import { existsSync, readdirSync, readFileSync, realpathSync, type Stats, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { UserError } from '../util/errors.js';
import { run } from '../util/proc.js';

/**
 * Read-only inspection of a block device: is it in use (mounted, held by dm/md, active swap) and does it
 * hold data (partition table, filesystem, LVM, RAID, swap signature)? Nothing here writes anything.
 */

/** Something found on a target. `inUse` findings cannot be overridden with --destroy-data. */
export interface Finding {
  /** Reads after the path: "holds ext4 (label "data")", "is mounted at /mnt". */
  text: string;
  inUse: boolean;
}

/** The device itself and its partitions, as kernel names (sda, sda1) with their major:minor. */
interface DeviceNode {
  name: string;
  devPath: string;
  majMin: string;
}

function sysBlock(name: string): string {
  return join('/sys/class/block', name);
}

function readTrimmed(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** The kernel name of a resolved /dev path, found through its major:minor (robust to udev names). */
function kernelName(devPath: string): string {
  const st = statSync(devPath);
  const majMin = `${Math.floor(st.rdev / 256) & 0xfff}:${(st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00)}`;
  const viaDev = readTrimmed(`/sys/dev/block/${majMin}/uevent`);
  const name = viaDev?.match(/^DEVNAME=(.+)$/m)?.[1];
  return name ?? basename(devPath);
}

function nodesOf(devPath: string): DeviceNode[] {
  const name = kernelName(devPath);
  const self: DeviceNode = { name, devPath, majMin: readTrimmed(join(sysBlock(name), 'dev')) ?? '' };
  const partitions: DeviceNode[] = [];
  let entries: string[] = [];
  try {
    entries = readdirSync(sysBlock(name));
  } catch {
    // no sysfs entry: only the device itself is checked
  }
  for (const entry of entries) {
    if (!existsSync(join(sysBlock(name), entry, 'partition'))) continue;
    partitions.push({
      name: entry,
      devPath: `/dev/${entry}`,
      majMin: readTrimmed(join(sysBlock(name), entry, 'dev')) ?? '',
    });
  }
  return [self, ...partitions];
}

/** Undoes the octal escapes of /proc/self/mountinfo (a space is \040). */
export function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(Number.parseInt(oct, 8)));
}

function safeRealpath(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
}

function mountFindings(nodes: DeviceNode[]): Finding[] {
  const text = readTrimmed('/proc/self/mountinfo') ?? '';
  const byMajMin = new Map(nodes.map((n) => [n.majMin, n]));
  const byPath = new Map(nodes.map((n) => [n.devPath, n]));
  const found: Finding[] = [];
  for (const line of text.split('\n')) {
    const [left, right] = line.split(' - ');
    if (!left || !right) continue;
    const fields = left.split(' ');
    const [fstype, source] = right.split(' ');
    const majMin = fields[2] ?? '';
    const mountPoint = unescapeMount(fields[4] ?? '?');
    // btrfs reports an anonymous major:minor, so the mount source is compared too.
    const node =
      byMajMin.get(majMin) ??
      (source?.startsWith('/dev/') ? byPath.get(safeRealpath(unescapeMount(source))) : undefined);
    if (!node) continue;
    const which = node === nodes[0] ? '' : ` (partition ${node.devPath})`;
    found.push({ text: `is mounted at ${mountPoint}${which} as ${fstype}`, inUse: true });
  }
  // Bind mounts repeat the same device many times: the first few say enough.
  if (found.length > 3)
    return [...found.slice(0, 3), { text: `and ${found.length - 3} more mounts`, inUse: true }];
  return found;
}

function holderFindings(nodes: DeviceNode[]): Finding[] {
  const found: Finding[] = [];
  for (const node of nodes) {
    let holders: string[] = [];
    try {
      // /sys/class/block lists partitions too, so both are found by their kernel name.
      holders = readdirSync(join(sysBlock(node.name), 'holders'));
    } catch {
      continue;
    }
    for (const holder of holders) {
      const dmName = readTrimmed(join(sysBlock(holder), 'dm', 'name'));
      const what = dmName
        ? `device-mapper ${dmName} (LVM/dm-crypt/multipath)`
        : holder.startsWith('md')
          ? `RAID array ${holder}`
          : holder;
      const which = node === nodes[0] ? '' : ` (through partition ${node.devPath})`;
      found.push({ text: `is held by ${what}${which}`, inUse: true });
    }
  }
  return found;
}

/** Active swap areas (devices and files) from /proc/swaps, resolved. */
export function activeSwaps(): string[] {
  const text = readTrimmed('/proc/swaps') ?? '';
  return text
    .split('\n')
    .slice(1)
    .map((line) => unescapeMount(line.split(/\s+/)[0] ?? ''))
    .filter((p) => p.length > 0)
    .map(safeRealpath);
}

function swapFindings(nodes: DeviceNode[]): Finding[] {
  const swaps = new Set(activeSwaps());
  return nodes
    .filter((n) => swaps.has(n.devPath))
    .map((n) => ({
      text: n === nodes[0] ? 'is active swap' : `has active swap on ${n.devPath}`,
      inUse: true,
    }));
}

interface Signature {
  type: string;
  label?: string;
  offset?: string;
}

/** All signatures libblkid sees, via wipefs (lists every one, partition tables included) and blkid -p. */
async function signaturesOf(devPath: string): Promise<Signature[]> {
  const sigs: Signature[] = [];
  const wipefs = await run(['wipefs', '--json', devPath], { allowFailure: true, timeoutMs: 30_000 });
  const blkid = await run(['blkid', '-p', '-o', 'export', devPath], {
    allowFailure: true,
    timeoutMs: 30_000,
  });
  // blkid exits 2 when it finds nothing; anything else non-zero means we could not look.
  if (wipefs.code !== 0 && blkid.code !== 0 && blkid.code !== 2) {
    throw new UserError(
      `cannot inspect ${devPath} for existing data (wipefs: ${wipefs.stderr.trim() || wipefs.code}; ` +
        `blkid: ${blkid.stderr.trim() || blkid.code}); kvmio will not write to a disk it could not check`,
    );
  }
  if (wipefs.code === 0 && wipefs.stdout.trim()) {
    const parsed = JSON.parse(wipefs.stdout) as { signatures?: Signature[] };
    for (const s of parsed.signatures ?? [])
      sigs.push({ type: s.type, label: s.label ?? undefined, offset: s.offset });
  }
  if (blkid.code === 0) {
    const kv = new Map(
      blkid.stdout
        .split('\n')
        .map((l) => l.split('=', 2) as [string, string])
        .filter((p) => p.length === 2),
    );
    const type = kv.get('TYPE');
    if (type && !sigs.some((s) => s.type === type)) sigs.push({ type, label: kv.get('LABEL') });
    const ptType = kv.get('PTTYPE');
    if (ptType && !sigs.some((s) => s.type === ptType)) sigs.push({ type: ptType });
  }
  return sigs;
}

const PARTITION_TABLES = new Set(['dos', 'gpt', 'PMBR', 'sun', 'sgi', 'bsd', 'mac', 'atari', 'aix']);

/** A signature in words: "ext4 (label "data")", "a gpt partition table", "an LVM physical volume". */
export function describeSignature(sig: Signature): string {
  const label = sig.label ? ` (label "${sig.label}")` : '';
  if (PARTITION_TABLES.has(sig.type)) return `a ${sig.type} partition table`;
  switch (sig.type) {
    case 'swap':
      return `a swap signature${label}`;
    case 'LVM2_member':
    case 'LVM1_member':
      return 'an LVM physical volume';
    case 'linux_raid_member':
    case 'isw_raid_member':
    case 'ddf_raid_member':
      return `a RAID member signature${label}`;
    case 'crypto_LUKS':
      return `a LUKS encrypted volume${label}`;
    default:
      return `${sig.type}${label}`;
  }
}

async function dataFindings(nodes: DeviceNode[]): Promise<Finding[]> {
  const found: Finding[] = [];
  for (const node of nodes) {
    const sigs = await signaturesOf(node.devPath);
    if (sigs.length === 0) continue;
    const what = sigs.map(describeSignature).join(' and ');
    found.push({
      text: node === nodes[0] ? `holds ${what}` : `has ${what} on ${node.devPath}`,
      inUse: false,
    });
  }
  return found;
}

/** Everything that makes writing to this (resolved) block device unsafe. */
export async function blockDeviceFindings(devPath: string): Promise<Finding[]> {
  const nodes = nodesOf(devPath);
  return [
    ...mountFindings(nodes),
    ...holderFindings(nodes),
    ...swapFindings(nodes),
    ...(await dataFindings(nodes)),
  ];
}

/** Size of a block device in bytes, from sysfs (512-byte sectors whatever the logical block size). */
export function blockDeviceSize(devPath: string): number {
  const sectors = readTrimmed(join(sysBlock(kernelName(devPath)), 'size'));
  if (sectors === undefined) throw new UserError(`cannot read the size of ${devPath} from /sys/class/block`);
  return Number(sectors) * 512;
}

/** A loop device and the identity of its backing file, from sysfs and a stat of that file. */
interface LoopDevice {
  devPath: string;
  backingFile: string;
  /** Device and inode of the backing file; undefined when it cannot be stat'ed (deleted, renamed). */
  backing?: { dev: number; ino: number };
}

function loopDevices(): LoopDevice[] {
  let names: string[] = [];
  try {
    names = readdirSync('/sys/block').filter((n) => n.startsWith('loop'));
  } catch {
    return [];
  }
  const out: LoopDevice[] = [];
  for (const n of names) {
    const backingFile = readTrimmed(join('/sys/block', n, 'loop', 'backing_file'));
    if (backingFile === undefined) continue;
    const path = backingFile.replace(/ \(deleted\)$/, '');
    let backing: LoopDevice['backing'];
    try {
      const st = statSync(path);
      backing = { dev: st.dev, ino: st.ino };
    } catch {
      // deleted or renamed: no identity to compare
    }
    out.push({ devPath: `/dev/${n}`, backingFile: path, backing });
  }
  return out;
}

/**
 * Loop devices over the file `st` is (writing the file changes what they hold). Compared by device and
 * inode, so a hard link or another path to the same file is found too.
 */
export function loopDevicesBackedBy(st: Stats): string[] {
  return loopDevices()
    .filter((l) => l.backing?.dev === st.dev && l.backing.ino === st.ino)
    .map((l) => l.devPath);
}

/**
 * For a loop device: the other loop devices over the same backing file, and what uses them. Two loop
 * devices over one image are one disk; writing either corrupts a filesystem mounted from the other.
 */
export function siblingLoopFindings(devPath: string): Finding[] {
  const loops = loopDevices();
  const self = loops.find((l) => l.devPath === `/dev/${kernelName(devPath)}`);
  if (!self?.backing) return [];
  const found: Finding[] = [];
  for (const other of loops) {
    if (other === self || other.backing?.dev !== self.backing.dev || other.backing.ino !== self.backing.ino)
      continue;
    const nodes = nodesOf(other.devPath);
    const uses = [...mountFindings(nodes), ...holderFindings(nodes), ...swapFindings(nodes)];
    for (const use of uses)
      found.push({
        text: `shares its backing file ${self.backingFile} with ${other.devPath}, which ${use.text}`,
        inUse: true,
      });
  }
  if (activeSwaps().some((p) => p === safeRealpath(self.backingFile)))
    found.push({ text: `is backed by ${self.backingFile}, which is active swap`, inUse: true });
  return found;
}
