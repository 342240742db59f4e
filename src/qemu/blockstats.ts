/**
 * Read and write requests QEMU completed on all of a VM's block devices, from a `query-blockstats`
 * reply: the host sees from it when a workload in the guest starts its I/O (under emulation, fio can
 * take seconds between its launch and its first request).
 */
export function blockRequests(reply: unknown): number {
  if (!Array.isArray(reply)) throw new Error('query-blockstats: not a list');
  let total = 0;
  for (const entry of reply) {
    const stats = (entry as { stats?: Record<string, unknown> } | null)?.stats;
    for (const key of ['rd_operations', 'wr_operations']) {
      const v = stats?.[key];
      if (typeof v === 'number' && Number.isFinite(v)) total += v;
    }
  }
  return total;
}
