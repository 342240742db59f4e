import { readFileSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { hostPackageManager, missingAdvice, missingNeeds } from '../host/packages.js';
import type { LvmSpec } from '../study/types.js';
import { UserError } from '../util/errors.js';
import { run, sleep } from '../util/proc.js';
import { formatBytes } from '../util/units.js';
import { ownerGone, processStartTicks } from './leftovers.js';

/**
 * Scratch logical volumes (disk.lvm): kvmio makes an LV on the user's volume group for a run (thick,
 * or thin in a pool), uses it as the test disk and removes it when the run ends, fails or is
 * interrupted. Each LV is named `kvmio-<kvmio's pid>-<n>` and tagged `kvmio` plus its owner
 * (host, pid and the pid's start time), so a later run removes the LVs of a kvmio that was killed
 * (leftovers.ts does the same for QEMU processes) and never an LV it did not make.
 */

export const KVMIO_LV_TAG = 'kvmio';
const OWNER_TAG = /^kvmio_owner=([A-Za-z0-9_.+-]+):(\d+):(\d+)$/;

/** The LV name kvmio gives scratch LV `n` of the process `pid`. */
export function scratchLvName(pid: number, n: number): string {
  return `kvmio-${pid}-${n}`;
}

/** The owner tag of this process's LVs: host, pid and the pid's start (clock ticks since boot). */
export function ownerTag(pid = process.pid, host = hostname()): string {
  const safeHost = host.replace(/[^A-Za-z0-9_.+-]/g, '_');
  return `kvmio_owner=${safeHost}:${pid}:${processStartTicks(pid) ?? 0}`;
}

export function parseOwnerTag(tag: string): { host: string; pid: number; startTicks: number } | undefined {
  const m = OWNER_TAG.exec(tag);
  return m ? { host: m[1]!, pid: Number(m[2]), startTicks: Number(m[3]) } : undefined;
}

/** LVM commands' output without their warnings about descriptors the caller left open. */
const LVM_ENV = { ...process.env, LVM_SUPPRESS_FD_WARNINGS: '1' };

async function lvm(argv: string[], timeoutMs = 60_000) {
  return run(argv, { allowFailure: true, timeoutMs, env: LVM_ENV });
}

function lvmError(r: { stderr: string; stdout: string }): string {
  return (r.stderr || r.stdout).trim().split('\n').slice(-3).join('; ');
}

/** JSON report rows of vgs/lvs (`--reportformat json`). */
function reportRows(stdout: string, kind: 'vg' | 'lv'): Array<Record<string, string>> {
  try {
    const parsed = JSON.parse(stdout) as { report?: Array<Record<string, unknown>> };
    const rows = parsed.report?.[0]?.[kind];
    return Array.isArray(rows) ? (rows as Array<Record<string, string>>) : [];
  } catch {
    return [];
  }
}

/** Why this kernel cannot activate LVs (device-mapper absent), or undefined. */
export function deviceMapperProblem(misc = '/proc/misc'): string | undefined {
  let text: string;
  try {
    text = readFileSync(misc, 'utf8');
  } catch {
    return undefined; // no /proc/misc to ask: lvcreate says what is wrong
  }
  return /\bdevice-mapper\b/.test(text)
    ? undefined
    : 'this kernel has no device-mapper driver (no device-mapper in /proc/misc), so LVM cannot activate a logical volume here; load it (modprobe dm_mod) or run on a host whose kernel has it';
}

/**
 * Checks, before anything boots, that the LV can be made: device-mapper present, the volume group
 * there with room for it (or the thin pool there); throws a UserError naming disk.lvm otherwise.
 */
export async function checkLvmTarget(spec: LvmSpec, source: string): Promise<void> {
  const where = `${source}: disk.lvm`;
  const missing = missingNeeds(true, process.env, ['lvm2']).filter((m) => m.need === 'lvm2');
  if (missing.length > 0)
    throw new UserError(`${where}: ${missingAdvice(missing, hostPackageManager()).join('; ')}`);
  const vgs = await lvm([
    'vgs',
    '--reportformat',
    'json',
    '--units',
    'b',
    '--nosuffix',
    '-o',
    'vg_name,vg_free,vg_extent_size',
    '--',
    spec.vg,
  ]);
  const vg = reportRows(vgs.stdout, 'vg').find((r) => r.vg_name === spec.vg);
  if (vgs.code !== 0 || !vg)
    throw new UserError(
      `${where}.vg: volume group "${spec.vg}" does not exist on this host (vgs: ${lvmError(vgs) || 'not listed'})`,
    );
  if (spec.thinPool !== undefined) {
    const lvs = await lvm([
      'lvs',
      '--reportformat',
      'json',
      '-o',
      'lv_name,segtype',
      '--',
      `${spec.vg}/${spec.thinPool}`,
    ]);
    const pool = reportRows(lvs.stdout, 'lv').find((r) => r.lv_name === spec.thinPool);
    if (lvs.code !== 0 || !pool)
      throw new UserError(`${where}.thin: "${spec.thinPool}" is no logical volume of ${spec.vg}`);
    if (pool.segtype !== 'thin-pool')
      throw new UserError(
        `${where}.thin: ${spec.vg}/${spec.thinPool} is a ${pool.segtype} volume, not a thin pool`,
      );
  } else {
    const extent = Number(vg.vg_extent_size) || 1;
    const needed = Math.ceil(spec.sizeBytes / extent) * extent;
    const free = Number(vg.vg_free);
    if (free < needed)
      throw new UserError(
        `${where}.size: ${formatBytes(needed)} does not fit in volume group ${spec.vg}, which has ${formatBytes(free)} free`,
      );
  }
  // Last: LVM reads its metadata without device-mapper, but cannot activate an LV.
  const dm = deviceMapperProblem();
  if (dm) throw new UserError(`${where}: ${dm}`);
}

export interface ScratchLv {
  vg: string;
  name: string;
  /** The block device QEMU opens: /dev/VG/NAME. */
  path: string;
  sizeBytes: number;
  thinPool?: string;
}

let created = 0;

/** The argv that makes scratch LV `name` (thick: -L in the VG; thin: -V in the pool). */
export function lvcreateArgv(spec: LvmSpec, name: string, owner = ownerTag()): string[] {
  const size = `${spec.sizeBytes}b`;
  const where =
    spec.thinPool === undefined ? ['-L', size, spec.vg] : ['-V', size, '--thinpool', spec.thinPool, spec.vg];
  return [
    'lvcreate',
    '--yes',
    '--wipesignatures',
    'y',
    '--addtag',
    KVMIO_LV_TAG,
    '--addtag',
    owner,
    '-n',
    name,
    ...where,
  ];
}

/** Makes a scratch LV and waits for its device node; the caller removes it (removeScratchLv). */
export async function createScratchLv(spec: LvmSpec, source: string): Promise<ScratchLv> {
  const name = scratchLvName(process.pid, ++created);
  const r = await lvm(lvcreateArgv(spec, name), 120_000);
  if (r.code !== 0)
    throw new UserError(`${source}: disk.lvm: lvcreate of ${spec.vg}/${name} failed: ${lvmError(r)}`);
  const lv: ScratchLv = {
    vg: spec.vg,
    name,
    path: `/dev/${spec.vg}/${name}`,
    sizeBytes: spec.sizeBytes,
    ...(spec.thinPool !== undefined ? { thinPool: spec.thinPool } : {}),
  };
  // udev (or LVM itself without udev) makes the node a moment after lvcreate returns.
  for (let i = 0; i < 50 && !isBlockDevice(lv.path); i++) await sleep(100);
  if (!isBlockDevice(lv.path)) {
    await removeScratchLv(lv);
    throw new UserError(
      `${source}: disk.lvm: lvcreate made ${spec.vg}/${name} but ${lv.path} did not appear`,
    );
  }
  return lv;
}

function isBlockDevice(path: string): boolean {
  try {
    return statSync(path).isBlockDevice();
  } catch {
    return false;
  }
}

/** Removes a scratch LV; QEMU may still be closing it, so "in use" is retried for a few seconds. */
export async function removeScratchLv(lv: Pick<ScratchLv, 'vg' | 'name'>): Promise<void> {
  let last = '';
  for (let attempt = 0; attempt < 10; attempt++) {
    const r = await lvm(['lvremove', '--yes', '--', `${lv.vg}/${lv.name}`]);
    if (r.code === 0) return;
    last = lvmError(r);
    if (/not found|Failed to find/i.test(last)) return;
    await sleep(500);
  }
  throw new Error(`lvremove ${lv.vg}/${lv.name} failed: ${last}`);
}

export interface LeftoverLv {
  vg: string;
  name: string;
  ownerPid: number;
}

/** kvmio's scratch LVs (by tag) on this host whose kvmio is gone (no such pid, or a younger one). */
export async function leftoverLvs(): Promise<LeftoverLv[]> {
  const r = await lvm([
    'lvs',
    '--reportformat',
    'json',
    '-o',
    'vg_name,lv_name,lv_tags',
    '--select',
    `lv_tags=${KVMIO_LV_TAG}`,
  ]);
  if (r.code !== 0) return [];
  const here = ownerTag(process.pid).split('=')[1]!.split(':')[0];
  const out: LeftoverLv[] = [];
  for (const row of reportRows(r.stdout, 'lv')) {
    const owner = (row.lv_tags ?? '')
      .split(',')
      .map(parseOwnerTag)
      .find((o) => o !== undefined);
    if (!owner || owner.host !== here || !/^kvmio-\d+-\d+$/.test(row.lv_name ?? '')) continue;
    const start = processStartTicks(owner.pid);
    if (ownerGone(owner.pid) || start !== owner.startTicks)
      out.push({ vg: row.vg_name!, name: row.lv_name!, ownerPid: owner.pid });
  }
  return out;
}

/** Removes each leftover scratch LV and says so, one line each. */
export async function removeLeftoverLvs(say: (line: string) => void): Promise<LeftoverLv[]> {
  const found = await leftoverLvs();
  for (const lv of found) {
    await removeScratchLv(lv);
    say(`removed LV ${lv.vg}/${lv.name}, made by kvmio pid ${lv.ownerPid}, which is gone`);
  }
  return found;
}
