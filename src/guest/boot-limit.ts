import { availableParallelism, loadavg } from 'node:os';
import type { Accel } from '../study/results.js';

/**
 * How long a guest may take from start until its agent answers, on both backends. The builtin guest
 * boots in well under a minute on KVM, and in about a minute under TCG when each vCPU has a host CPU
 * to itself. Every vCPU of a TCG guest is a thread that wants a CPU, and the host's load is threads
 * that already want one: the limit grows with how far both together overcommit the host's CPUs
 * (a 4-vCPU TCG guest on a 2-CPU host at load 2 gets 3 × 120 s).
 */

export const BOOT_BASE_SECONDS: Record<Accel, number> = { kvm: 60, tcg: 120 };
/** Beyond this a guest is hung, not slow. */
export const BOOT_MAX_FACTOR = 8;
/**
 * Around the agent's wait: starting QEMU or creating the domain, and the live verification after;
 * the run's outer guard on a boot is the boot limit plus this.
 */
export const BOOT_SETUP_SECONDS = 120;

export interface BootShape {
  accel: Accel;
  /** vCPUs booting at the same time (every guest of a group). */
  vcpus: number;
  hostCpus: number;
  /** The host's 1-minute load average when the boot starts; unknown for a remote host. */
  load?: number;
}

export interface BootLimit {
  ms: number;
  /** The rule's terms, for the error that reports the limit. */
  why: string;
}

export function bootLimit(shape: BootShape): BootLimit {
  const base = BOOT_BASE_SECONDS[shape.accel];
  const cpus = Math.max(1, shape.hostCpus);
  const load = Math.max(0, shape.load ?? 0);
  const factor = Math.min(BOOT_MAX_FACTOR, Math.max(1, (shape.vcpus + load) / cpus));
  const seconds = Math.round(base * factor);
  const loadText = shape.load === undefined ? '' : ` + load ${load.toFixed(1)}`;
  return {
    ms: seconds * 1000,
    why: `${base} s for ${shape.accel.toUpperCase()} × ${factor.toFixed(2)}: ${shape.vcpus} vCPU(s)${loadText} on ${cpus} host CPU(s)`,
  };
}

/** The limit for booting a study's guests (all of a group at once) on this machine, now. */
export function localBootLimit(accel: Accel, guest: { vcpus: number; count: number }): BootLimit {
  return bootLimit({
    accel,
    vcpus: guest.vcpus * guest.count,
    hostCpus: availableParallelism(),
    load: loadavg()[0],
  });
}

/** The line a boot that ran out of time fails with. */
export function bootLimitMessage(what: string, limit: BootLimit): string {
  return `${what} did not answer within ${Math.round(limit.ms / 1000)} s (the boot limit: ${limit.why})`;
}
