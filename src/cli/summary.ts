import { mean } from '../stats/index.js';
import type { MetricRow } from '../study/results.js';
import { formatNumber, formatTable } from './table.js';

/**
 * The table `kvmio run` ends with: per variant, per workload (and step), the mean over repetitions of
 * what the workload is about: IOPS and mean/p99 completion latency for fio, TPS and latency for
 * pgbench, seconds for rsync.
 */

const usec = (ns: number | undefined) => (ns === undefined ? undefined : ns / 1000);

export function variantTables(rows: readonly MetricRow[]): string {
  const byVariant = new Map<string, MetricRow[]>();
  for (const r of rows) byVariant.set(r.variant, [...(byVariant.get(r.variant) ?? []), r]);
  const blocks: string[] = [];
  for (const [variant, vrows] of byVariant) {
    const groups = new Map<string, MetricRow[]>();
    for (const r of vrows) {
      const key = JSON.stringify([r.workload, r.step, r.guest]);
      groups.set(key, [...(groups.get(key) ?? []), r]);
    }
    const table: string[][] = [];
    for (const [key, grows] of groups) {
      const [workload, step] = JSON.parse(key) as [string, string | number | null];
      const values = (metric: string) => grows.filter((r) => r.metric === metric).map((r) => r.value);
      const reps = new Set(grows.map((r) => r.rep)).size;
      const label = step === null ? workload : `${workload} @${step}`;
      const dirs = (['read', 'write'] as const).filter((d) => values(`${d}.iops`).length > 0);
      for (const d of dirs) {
        table.push([
          dirs.length > 1 ? `${label} (${d})` : label,
          String(reps),
          formatNumber(mean(values(`${d}.iops`))),
          formatNumber(usec(mean(values(`${d}.clat_mean_ns`)))),
          formatNumber(usec(mean(values(`${d}.clat_p99_ns`)))),
          '',
        ]);
      }
      if (values('pgbench.tps').length > 0) {
        const lat = mean(values('pgbench.lat_mean_ms'));
        table.push([
          label,
          String(reps),
          '-',
          '-',
          '-',
          `${formatNumber(mean(values('pgbench.tps')))} TPS, ${formatNumber(lat)} ms`,
        ]);
      }
      if (values('rsync.seconds').length > 0) {
        table.push([label, String(reps), '-', '-', '-', `${formatNumber(mean(values('rsync.seconds')))} s`]);
      }
    }
    const hasOther = table.some((r) => r[5] !== '');
    const header = [
      'workload',
      'reps',
      'IOPS',
      'clat mean µs',
      'clat p99 µs',
      ...(hasOther ? ['result'] : []),
    ];
    blocks.push(`${variant}\n${formatTable(header, hasOther ? table : table.map((r) => r.slice(0, 5)))}`);
  }
  return blocks.join('\n\n');
}
