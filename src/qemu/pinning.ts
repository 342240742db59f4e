import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { parseCpuList } from '../study/cpuset.js';
import { classifyThread } from '../study/qemu-threads.js';
import type { Pinning } from '../study/types.js';
import { UserError } from '../util/errors.js';
import { run } from '../util/proc.js';
import type { QmpClient } from './qmp.js';

/**
 * QEMU does not pin its own threads: like libvirt's cputune, kvmio pins them after start-up with
 * taskset, finding them by the names -name ...,debug-threads=on gives them.
 */

export type ThreadClass = 'vcpu' | 'iothread' | 'emulator';

export interface QemuThread {
  tid: number;
  comm: string;
}

/** Thread ids and names of a process. */
export function qemuThreads(pid: number): QemuThread[] {
  return readdirSync(`/proc/${pid}/task`).flatMap((t) => {
    try {
      return [{ tid: Number(t), comm: readFileSync(`/proc/${pid}/task/${t}/comm`, 'utf8').trim() }];
    } catch {
      return []; // the thread ended meanwhile
    }
  });
}

/**
 * Pinning class of a QEMU thread, from the same naming rules as CPU accounting: vCPUs, disk iothreads
 * (not the monitor's `IO mon_iothread`), and everything else as the emulator.
 */
export function threadClass(comm: string): ThreadClass {
  const cls = classifyThread(comm, -1, 0);
  return cls === 'vcpu' || cls === 'iothread' ? cls : 'emulator';
}

/**
 * Pins emulator threads (everything but vCPUs and iothreads) to pinning.emulator, iothreads to
 * pinning.iothreads, and vCPU i to the i-th CPU of pinning.vcpus (wrapping around).
 */
export async function applyPinning(pid: number, qmp: QmpClient, pinning: Pinning): Promise<void> {
  const vcpus = await qmp.execute<Array<{ 'cpu-index': number; 'thread-id': number }>>('query-cpus-fast');
  const vcpuCpus = pinning.vcpus ? parseCpuList(pinning.vcpus) : [];
  const byTid = new Map(vcpus.map((v) => [v['thread-id'], v['cpu-index']]));
  for (const t of qemuThreads(pid)) {
    const cls = byTid.has(t.tid) ? 'vcpu' : threadClass(t.comm);
    let list: string | undefined;
    if (cls === 'vcpu' && vcpuCpus.length > 0)
      list = String(vcpuCpus[(byTid.get(t.tid) ?? 0) % vcpuCpus.length]);
    else if (cls === 'iothread') list = pinning.iothreads;
    else if (cls === 'emulator') list = pinning.emulator;
    if (list === undefined) continue;
    const r = await run(['taskset', '-pc', list, String(t.tid)], { timeoutMs: 5000, allowFailure: true });
    // Worker threads come and go: a failure only matters if the thread is still there.
    if (r.code !== 0 && existsSync(`/proc/${pid}/task/${t.tid}`)) {
      throw new UserError(`pinning ${cls} thread "${t.comm}" to CPUs ${list} failed: ${r.stderr.trim()}`);
    }
  }
}
