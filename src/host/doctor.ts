import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { builtGuest } from '../guest/build.js';
import { qemuLocation } from '../qemu/binary.js';
import { findOvmf, type Ovmf, ovmfInstallHint } from '../qemu/firmware.js';
import type { GuestFirmware } from '../study/guest-release.js';
import { run } from '../util/proc.js';
import { type AccelResult, probeAccelerator } from './accel.js';
import { type HostFacts, hostFacts } from './facts.js';
import {
  type HostNeed,
  hostPackageManager,
  type MissingNeed,
  missingAdvice,
  missingNeeds,
  type PackageManager,
} from './packages.js';
import {
  type DoctorQemu,
  doctorQemuSources,
  formatDoctorQemus,
  probeDoctorQemus,
  type QemuSource,
} from './qemus.js';

/** Everything `kvmio doctor` reports: what this host can do for a study. */
export interface DoctorReport {
  facts: HostFacts;
  accelerator: AccelResult;
  libvirtDaemon: { answers: boolean; detail: string; hypervisor?: string };
  /** Every QEMU doctor was pointed at (KVMIO_QEMU, the default, a study's matrix.qemu) and what each can do. */
  qemus: DoctorQemu[];
  guest: { built: boolean; dir?: string; hash?: string; kernelVersion?: string; initrdBytes?: number };
  /** OVMF, the UEFI firmware guest.firmware uefi boots with (found through QEMU's firmware descriptors). */
  uefi: { ovmf?: Ovmf; install?: string };
  /** What the host lacks, and the command that installs it with the host's package manager. */
  missing: { needs: MissingNeed[]; packageManager?: PackageManager; advice: string[] };
  warnings: string[];
}

export const LIBVIRT_URI = process.env.KVMIO_LIBVIRT_URI || 'qemu:///system';

export async function libvirtDaemon(): Promise<DoctorReport['libvirtDaemon']> {
  try {
    const r = await run(['virsh', '-c', LIBVIRT_URI, 'version'], { timeoutMs: 10_000, allowFailure: true });
    if (r.code !== 0) {
      const why = (r.stderr || r.stdout).trim().split('\n').slice(-1)[0] ?? `exit ${r.code}`;
      return { answers: false, detail: `${LIBVIRT_URI}: ${r.timedOut ? 'no answer in 10s' : why}` };
    }
    const hypervisor = /Running hypervisor:\s*(.+)/.exec(r.stdout)?.[1]?.trim();
    return { answers: true, detail: `${LIBVIRT_URI} answers`, ...(hypervisor ? { hypervisor } : {}) };
  } catch (e) {
    return { answers: false, detail: (e as Error).message };
  }
}

function guestState(): DoctorReport['guest'] {
  const g = builtGuest();
  if (!g) return { built: false };
  let initrdBytes: number | undefined;
  const manifest = join(g.dir, 'manifest.json');
  if (existsSync(manifest))
    initrdBytes = (JSON.parse(readFileSync(manifest, 'utf8')) as { initrdBytes?: number }).initrdBytes;
  return {
    built: true,
    dir: g.dir,
    hash: g.hash,
    kernelVersion: g.kernelVersion,
    ...(initrdBytes ? { initrdBytes } : {}),
  };
}

export async function doctor(
  opts: {
    log?: (line: string) => void;
    qemus?: QemuSource[];
    needs?: HostNeed[];
    /** The firmware of the study doctor was pointed at: uefi without OVMF is a warning. */
    firmware?: GuestFirmware;
  } = {},
): Promise<DoctorReport> {
  const [facts, daemon, ovmf] = await Promise.all([hostFacts(), libvirtDaemon(), findOvmf()]);
  const uefi = ovmf ? { ovmf } : { install: ovmfInstallHint() };
  const qemus = await probeDoctorQemus(doctorQemuSources(opts.qemus));
  // The probe boots the guest (building it first if needed), so it runs after the quick checks.
  const accelerator = await probeAccelerator({ log: opts.log });
  const guest = guestState();
  const warnings: string[] = [];
  if (accelerator.warning) warnings.push(accelerator.warning);
  if (!facts.qemu.version)
    warnings.push(`QEMU (${facts.qemu.binary}) not found: nothing can be measured (${facts.qemu.reason})`);
  if (!facts.fio.version)
    warnings.push('fio not found on the host (needed for host-side probes and "import fio")');
  if (!daemon.answers)
    warnings.push(`libvirt daemon does not answer (${daemon.detail}): the libvirt backend is unavailable`);
  if (facts.hugepages.free === 0) warnings.push('no free hugepages: hugepages variants will fail');
  else if (facts.hugepages.mounts.length === 0) warnings.push('hugepages reserved but no hugetlbfs mounted');
  if (facts.ioUring.kernelWorks === false)
    warnings.push(`io_uring does not work in this kernel: ${facts.ioUring.kernelDetail}`);
  if (facts.ioUring.qemuAccepts === false)
    warnings.push(`QEMU refuses aio=io_uring: ${facts.ioUring.qemuDetail}`);
  if (!guest.built) warnings.push('the guest is not built: run "kvmio guest build"');
  if (opts.firmware === 'uefi' && !ovmf)
    warnings.push(`the study's guest.firmware is uefi but this host has no OVMF: ${uefi.install}`);
  for (const q of qemus)
    if (q.error) warnings.push(`QEMU ${q.path} (${q.why.join('; ')}) cannot be probed: ${q.error}`);
  const needs = missingNeeds(qemuLocation().found, process.env, opts.needs);
  const packageManager = hostPackageManager();
  const advice = missingAdvice(needs, packageManager);
  if (advice.length) warnings.push(advice.join(': '));
  const missing = { needs, ...(packageManager ? { packageManager } : {}), advice };
  return { facts, accelerator, libvirtDaemon: daemon, qemus, guest, uefi, missing, warnings };
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(bytes < 2 ** 30 ? 1 : 0)} MiB`;
const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(1)} GiB`;

/** The human form: one aligned line per fact, warnings last. */
export function formatDoctor(r: DoctorReport): string {
  const f = r.facts;
  const hp = f.hugepages;
  const yesNo = (v: boolean | undefined, yes: string, no: string) =>
    v === undefined ? 'not probed' : v ? yes : no;
  const rows: [string, string][] = [
    ['kvmio', f.kvmioVersion],
    ['host', `${f.hostname}, ${f.os ?? 'unknown OS'}, kernel ${f.kernel}`],
    [
      'cpu',
      `${f.cpu.model}: ${f.cpu.logicalCpus} logical, ${f.cpu.physicalCores} cores, ${f.cpu.sockets} socket(s)`,
    ],
    ['memory', gib(f.memoryBytes)],
    [
      'qemu',
      `${f.qemu.version ? `${f.qemu.binary} ${f.qemu.version}` : `missing (${f.qemu.error})`}${f.qemu.reason ? ` (${f.qemu.reason})` : ''}`,
    ],
    ['accelerator', `${r.accelerator.accel.toUpperCase()}: ${r.accelerator.reason}`],
    ['fio', f.fio.version ?? `missing (${f.fio.error})`],
    ['libvirt client', f.libvirt.virshVersion ?? `missing (${f.libvirt.error})`],
    [
      'libvirt daemon',
      r.libvirtDaemon.answers
        ? `${r.libvirtDaemon.detail} (${r.libvirtDaemon.hypervisor ?? '?'})`
        : `no: ${r.libvirtDaemon.detail}`,
    ],
    [
      'hugepages',
      `${hp.total} x ${mib(hp.sizeBytes)} reserved, ${hp.free} free; hugetlbfs: ${hp.mounts.map((m) => m.path).join(', ') || 'not mounted'}`,
    ],
    [
      'io_uring kernel',
      `${yesNo(f.ioUring.kernelWorks, 'works', 'does not work')} (io_uring_disabled=${f.ioUring.kernelSysctl ?? 'n/a'}; ${f.ioUring.kernelDetail})`,
    ],
    [
      'io_uring qemu',
      yesNo(f.ioUring.qemuAccepts, 'aio=io_uring accepted', `refused: ${f.ioUring.qemuDetail}`),
    ],
    [
      'guest',
      r.guest.built
        ? `built: ${r.guest.dir} (kernel ${r.guest.kernelVersion}${r.guest.initrdBytes ? `, initramfs ${mib(r.guest.initrdBytes)}` : ''})`
        : 'not built (kvmio guest build)',
    ],
    [
      'uefi firmware',
      r.uefi.ovmf
        ? `OVMF ${r.uefi.ovmf.code}, variables from ${r.uefi.ovmf.varsTemplate} (${r.uefi.ovmf.descriptor})`
        : `no OVMF (only guest.firmware uefi needs it; ${r.uefi.install})`,
    ],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  const lines = rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`);
  if (r.qemus.length > 0) lines.push('QEMUs:', ...formatDoctorQemus(r.qemus).map((l) => `  ${l}`));
  for (const w of r.warnings) lines.push(`WARNING: ${w}`);
  return `${lines.join('\n')}\n`;
}
