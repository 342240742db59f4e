import { accessSync, constants, readFileSync } from 'node:fs';
import type { GuestVm } from '../../src/guest/vm.js';
import { type FioRunOutcome, runFioJob } from '../../src/workloads/fio.js';

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

/**
 * A 2 s 4 KiB random read at QD4 in the guest, in `numjobs` jobs, over every test disk the guest has
 * (one job reads them all); fio's job and kvmio's record of the run. `deadlineMs`: how long it may take.
 */
export function shortRandomReadJob(
  vm: GuestVm,
  name: string,
  opts: { numjobs?: number; deadlineMs?: number } = {},
): Promise<FioRunOutcome> {
  return runFioJob(
    { kind: 'guest', vm },
    {
      name,
      rw: 'randread',
      bs: 4096,
      iodepth: 4,
      numjobs: opts.numjobs ?? 1,
      runtimeSeconds: 2,
      rampSeconds: 0,
      ioengine: 'libaio',
      extra: {},
    },
    null,
    { deadline: Date.now() + (opts.deadlineMs ?? 120_000), log: () => undefined, series: false },
  );
}

/** Bytes a 2 s 4 KiB random read at QD4 in the guest moved, in `numjobs` jobs. */
export async function shortRandomRead(vm: GuestVm, name: string, numjobs = 1): Promise<number> {
  return (await shortRandomReadJob(vm, name, { numjobs })).job.read.io_bytes;
}

/**
 * The same read in 2 jobs, so that on 2 vCPUs the guest submits on two queues and a disk spread
 * over two iothreads keeps both busy.
 */
export function readOnTwoQueues(vm: GuestVm, name: string): Promise<number> {
  return shortRandomRead(vm, name, 2);
}
