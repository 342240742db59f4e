import type { GuestExecResult, GuestVm } from '../guest/vm.js';
import { PointFailure } from '../util/errors.js';

/** Runs argv in the guest and fails the point (with the command's own words) unless it exits 0. */
export async function guestRun(
  vm: GuestVm,
  argv: string[],
  timeoutMs: number,
  input?: string,
): Promise<GuestExecResult> {
  const r = await vm.exec(argv, { timeoutMs, input });
  if (r.timedOut || r.exitCode !== 0) {
    const why = r.timedOut
      ? `timed out after ${Math.round(timeoutMs / 1000)} s`
      : `exited with ${r.exitCode}`;
    const tail = (r.stderr || r.stdout).trim().split('\n').slice(-8).join('\n');
    throw new PointFailure(`in the guest, ${argv.join(' ')} ${why}${tail ? `:\n${tail}` : ''}`, {
      stderrTail: tail,
      consoleTail: vm.consoleTail(20),
    });
  }
  return r;
}

/** Best effort (cleanup paths): never throws. */
export async function guestTry(vm: GuestVm, argv: string[], timeoutMs = 60_000): Promise<boolean> {
  try {
    const r = await vm.exec(argv, { timeoutMs });
    return r.exitCode === 0;
  } catch {
    return false;
  }
}

/** Makes an ext4 filesystem on the test disk and mounts it; returns the mount point. */
export async function mkfsAndMount(vm: GuestVm, mountPoint: string, timeoutMs: number): Promise<string> {
  const disk = await vm.testDisk();
  // Initialise inode tables and journal now: otherwise ext4lazyinit writes in the background while we measure.
  await guestRun(
    vm,
    ['mkfs.ext4', '-F', '-q', '-E', 'lazy_itable_init=0,lazy_journal_init=0', disk],
    timeoutMs,
  );
  await guestRun(vm, ['mkdir', '-p', mountPoint], 30_000);
  await guestRun(vm, ['mount', '-t', 'ext4', disk, mountPoint], 60_000);
  return disk;
}

/** Unmounts (retrying once lazily when busy); never throws. */
export async function unmount(vm: GuestVm, mountPoint: string): Promise<void> {
  if (!(await guestTry(vm, ['umount', mountPoint]))) await guestTry(vm, ['umount', '-l', mountPoint]);
}

/** Flushes dirty pages and drops the guest page cache, so a run starts cold. */
export async function dropCaches(vm: GuestVm): Promise<void> {
  await guestRun(vm, ['sync'], 300_000);
  await vm.writeFile('/proc/sys/vm/drop_caches', '3\n');
}

/** Wall time inside the guest from busybox `time -p` (stderr: "real 1.23"), seconds. */
export function parseTimeP(stderr: string): number | undefined {
  const m = /^real\s+(\d+(?:\.\d+)?)\s*$/m.exec(stderr);
  return m ? Number(m[1]) : undefined;
}
