/**
 * QEMU's thread names (`-name …,debug-threads=on`) sorted into classes: the unit of CPU accounting
 * (metrics) and of pinning (backends) alike.
 */

export const THREAD_CLASSES = ['vcpu', 'iothread', 'main', 'worker', 'other'] as const;
export type ThreadClass = (typeof THREAD_CLASSES)[number];

export function classifyThread(comm: string, tid: number, pid: number): ThreadClass {
  if (/^CPU \d+\/(KVM|TCG|HVF|WHPX)/.test(comm)) return 'vcpu';
  // QEMU's own monitor thread (out-of-band QMP) is named like an iothread but serves no disk.
  if (comm === 'IO mon_iothread') return 'other';
  if (comm.startsWith('IO ')) return 'iothread';
  if (tid === pid) return 'main';
  if (comm === 'worker') return 'worker';
  return 'other';
}
