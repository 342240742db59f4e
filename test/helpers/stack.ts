import { accessSync, constants, readFileSync } from 'node:fs';

/**
 * The tests' second stack (scripts/test-stack.sh, run by `make test`): QEMU 10 from Debian's
 * bookworm-backports in a prefix, beside the system's QEMU. KVMIO_TEST_QEMU10 overrides the path.
 */
export const QEMU10 = process.env.KVMIO_TEST_QEMU10 ?? '/opt/kvmio/qemu-10/bin/qemu-system-x86_64';

/** QEMU 10's launcher; throws (the test fails) when the test stack is not set up. */
export function qemu10(): string {
  try {
    accessSync(QEMU10, constants.X_OK);
  } catch {
    throw new Error(`${QEMU10} is missing: run "bash scripts/test-stack.sh" (make test does)`);
  }
  return QEMU10;
}

/** CPU time (ns) one thread of a process has run so far, from /proc/PID/task/TID/schedstat. */
export function threadCpuNs(pid: number, tid: number): number {
  return Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
}
