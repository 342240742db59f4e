import type { Accel } from '../study/results.js';
import { PointFailure } from '../util/errors.js';

/**
 * One more boot, said loudly, when a TCG guest's kernel panics while it boots.
 *
 * QEMU 7.2's multi-threaded TCG can let one vCPU run kernel text that another vCPU has just patched
 * (a static key flipped at late init): the guest dies with `Oops: int3` and
 * `Kernel panic - not syncing: Fatal exception in interrupt`, rarely, and more often on a loaded host.
 * That is the emulator's race, not the variant's fault, and a second boot all but never meets it. A kernel
 * that panics for any other reason panics again, and the second failure is the point's. KVM guests
 * are never booted twice: a panic there says something about the host.
 */

/** The line where the guest kernel gave up, as its console printed it. */
const KERNEL_PANIC = /Kernel panic - not syncing: [^\n\]]*/;

/** The line where the guest kernel gave up, if its console shows one. */
export function kernelPanicLine(console: string): string | undefined {
  return KERNEL_PANIC.exec(console)?.[0]?.trim();
}

/** The guest kernel's panic line in a failed boot's console, if the boot ended that way. */
export function guestKernelPanic(err: unknown): string | undefined {
  return err instanceof PointFailure ? kernelPanicLine(err.detail.consoleTail ?? '') : undefined;
}

/** What a VM booted a second time keeps: why, for the run's warnings and the point's log. */
export interface RebootedVm {
  bootWarning?: string;
}

export async function bootRetryingTcgPanic<V extends RebootedVm>(
  accel: Accel,
  what: string,
  log: ((line: string) => void) | undefined,
  boot: () => Promise<V>,
): Promise<V> {
  try {
    return await boot();
  } catch (err) {
    const panic = accel === 'tcg' ? guestKernelPanic(err) : undefined;
    if (!panic) throw err;
    const why = `the guest kernel panicked while booting under TCG ("${panic}")`;
    log?.(`WARNING: ${what}: ${why}; booting it once more`);
    const vm = await boot();
    vm.bootWarning = `${what}: ${why}; the second boot came up. The first boot's failure: ${(err as Error).message.split('\n')[0]}`;
    return vm;
  }
}
