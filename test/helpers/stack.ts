import { accessSync, constants, readFileSync } from 'node:fs';
import type { GuestVm } from '../../src/guest/vm.js';
import { runFioJob } from '../../src/workloads/fio.js';

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

/** Bytes a 2 s 4 KiB random read at QD4 in the guest moved, in `numjobs` jobs. */
export async function shortRandomRead(vm: GuestVm, name: string, numjobs = 1): Promise<number> {
  const { job } = await runFioJob(
    { kind: 'guest', vm },
    {
      name,
      rw: 'randread',
      bs: 4096,
      iodepth: 4,
      numjobs,
      runtimeSeconds: 2,
      rampSeconds: 0,
      ioengine: 'libaio',
      extra: {},
    },
    null,
    { deadline: Date.now() + 120_000, log: () => undefined, series: false },
  );
  return job.read.io_bytes;
}

/**
 * The same read in 2 jobs, so that on 2 vCPUs the guest submits on two queues and a disk spread
 * over two iothreads keeps both busy.
 */
export function readOnTwoQueues(vm: GuestVm, name: string): Promise<number> {
  return shortRandomRead(vm, name, 2);
}
