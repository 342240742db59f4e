/**
 * QEMU's thread names (`-name …,debug-threads=on`) sorted into classes: the unit of CPU accounting
 * (metrics) and of pinning (backends) alike.
 */

/**
 * `storage-daemon` is no QEMU thread: it is every thread of the qemu-storage-daemon serving a
 * variant's disks (paths vhost-user-blk and nbd), measured beside QEMU so that a path's CPU cost
 * counts whole.
 */
export const THREAD_CLASSES = ['vcpu', 'iothread', 'main', 'worker', 'other', 'storage-daemon'] as const;
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
