import { formatBytes } from '../util/units.js';
import { formatCpus, parseCpuList } from './cpuset.js';
import { GUEST_MIN_MEMORY_MIB } from './guest-release.js';
import type { Pinning } from './types.js';

/**
 * The guest's shape: machine type, vCPUs, memory and pinning, the same on both backends, and the one
 * rule that fits a study's shape to a smaller host when the study asks for it (`fit_to_host: true`).
 */

/** Machine types: q35 (the study's pc-q35) or pc (i440fx). Both resolve to the newest versioned type of the QEMU in use. */
export const MACHINE_TYPES = ['q35', 'pc'] as const;
export type MachineType = (typeof MACHINE_TYPES)[number];
export const DEFAULT_MACHINE: MachineType = 'q35';

/**
 * The guest CPU, one rule for both backends: the host's own CPU (host-passthrough, as the study) under
 * KVM; under TCG, which cannot pass the host's CPU through, the most capable model TCG emulates
 * (`maximum`). Direct QEMU spells them -cpu host and -cpu max.
 */
export function guestCpuModel(accel: 'kvm' | 'tcg'): 'host-passthrough' | 'maximum' {
  return accel === 'kvm' ? 'host-passthrough' : 'maximum';
}

/** What fitting changes: the builtin guest's size and the pinning of its threads. */
export interface GuestShape {
  vcpus: number;
  memoryBytes: number;
  /** Guests started per variant: they share the host's RAM. */
  count: number;
  pinning?: Pinning;
}

/** What the host offers: its online CPUs and its RAM. */
export interface HostSize {
  cpus: number[];
  memoryBytes: number;
}

/** The guests together take at most this share of the host's RAM; the rest is the host's (page cache, QEMU, fio). */
export const HOST_MEMORY_SHARE = 0.5;

const MIB = 1024 * 1024;
/** Memory is cut in whole 2 MiB steps, so hugepages variants stay possible. */
const MEMORY_STEP = 2 * MIB;

/**
 * Fits `shape` to `host`, changing only what does not fit, and says what happened to vCPUs, pinning
 * and memory in one line each (`notes`), whether changed or kept.
 *
 * - Pinning stays as given when every CPU it names is online. Otherwise the study's layout (each vCPU,
 *   the emulator CPUs and the iothread CPUs on CPUs of their own) is laid on this host's CPUs: vCPUs
 *   on the first ones, the emulator on the last, the iothreads just before it, with fewer vCPUs when
 *   needed; when not even min(vCPUs, 2) vCPUs are left beside the emulator and the iothreads, the
 *   pinning is dropped rather than sharing CPUs between thread classes the study kept apart.
 * - Without pinning, vCPUs are at most the host's CPUs.
 * - Memory: all guests together at most HOST_MEMORY_SHARE of the host's RAM, in 2 MiB steps.
 */
export function fitGuestToHost(
  shape: GuestShape,
  host: HostSize,
  /** The least the guest boots with (more under uefi: GUEST_MIN_MEMORY_MIB_UEFI). */
  minMemoryMiB = GUEST_MIN_MEMORY_MIB,
): GuestShape & { notes: string[] } {
  const n = host.cpus.length;
  const cpus = [...host.cpus].sort((a, b) => a - b);
  let vcpus = shape.vcpus;
  let pinning = shape.pinning;
  let pinningNote: string;
  if (!pinning) {
    vcpus = Math.min(shape.vcpus, n);
    pinningNote = 'pinning: none asked';
  } else {
    const named = (list: string | undefined, what: string) => (list ? parseCpuList(list, what) : []);
    const emulator = named(pinning.emulator, 'pinning.emulator');
    const iothreads = named(pinning.iothreads, 'pinning.iothreads');
    const all = [...named(pinning.vcpus, 'pinning.vcpus'), ...emulator, ...iothreads];
    if (all.every((cpu) => cpus.includes(cpu))) {
      pinningNote = `pinning: kept as given (this host has CPUs ${formatCpus(cpus)})`;
    } else {
      const left = n - emulator.length - iothreads.length;
      if (left >= Math.min(shape.vcpus, 2)) {
        vcpus = Math.min(shape.vcpus, left);
        const last = cpus.slice(n - emulator.length - iothreads.length);
        pinning = {
          ...(pinning.vcpus ? { vcpus: formatCpus(cpus.slice(0, vcpus)) } : {}),
          ...(iothreads.length ? { iothreads: formatCpus(last.slice(0, iothreads.length)) } : {}),
          ...(emulator.length ? { emulator: formatCpus(last.slice(iothreads.length)) } : {}),
        };
        pinningNote = `pinning: ${describePinning(shape.pinning!)} → ${describePinning(pinning)} (this host has CPUs ${formatCpus(cpus)}; the same layout, each thread class on CPUs of its own)`;
      } else {
        vcpus = Math.min(shape.vcpus, n);
        pinning = undefined;
        pinningNote = `pinning: dropped (${describePinning(shape.pinning!)} names CPUs this host lacks, and its ${n} CPU(s) cannot give ${Math.min(shape.vcpus, 2)} vCPU(s), the emulator and the iothreads CPUs of their own)`;
      }
    }
  }
  const vcpusNote =
    vcpus === shape.vcpus
      ? `guest.vcpus: ${vcpus} kept (this host has ${n} CPU(s))`
      : `guest.vcpus: ${shape.vcpus} → ${vcpus} (this host has ${n} CPU(s)${pinning ? ', some kept for the emulator and iothreads' : ''}; more vCPUs than CPUs would measure the host's scheduler)`;

  const cap = Math.floor((host.memoryBytes * HOST_MEMORY_SHARE) / shape.count / MEMORY_STEP) * MEMORY_STEP;
  const guests = shape.count > 1 ? `${shape.count} guests` : 'the guest';
  const fits = shape.count > 1 ? 'fit' : 'fits';
  const share = `${Math.round(HOST_MEMORY_SHARE * 100)}% of this host's ${formatBytes(host.memoryBytes)}`;
  let memoryBytes = shape.memoryBytes;
  let memoryNote: string;
  if (memoryBytes <= cap) {
    memoryNote = `guest.memory: ${formatBytes(memoryBytes)} kept (${guests} ${fits} in ${share})`;
  } else {
    memoryBytes = Math.max(cap, minMemoryMiB * MIB);
    memoryNote = `guest.memory: ${formatBytes(shape.memoryBytes)} → ${formatBytes(memoryBytes)} (${guests} at most ${share}${cap < minMemoryMiB * MIB ? `, but not below the guest's minimum of ${minMemoryMiB} MiB` : ''})`;
  }
  const out: GuestShape & { notes: string[] } = {
    vcpus,
    memoryBytes,
    count: shape.count,
    notes: [vcpusNote, pinningNote, memoryNote],
  };
  if (pinning) out.pinning = pinning;
  return out;
}

/** "vcpus 0-7, iothreads 14, emulator 15" */
export function describePinning(p: Pinning): string {
  return (['vcpus', 'iothreads', 'emulator'] as const)
    .flatMap((k) => (p[k] ? [`${k} ${p[k]}`] : []))
    .join(', ');
}
