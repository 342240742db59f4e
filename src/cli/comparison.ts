import type { CompareLine } from '../engine/compare.js';
import { formatNumber, formatTable } from './table.js';

/** `kvmio compare`'s table: means of both runs, the change of B over A and the verdict. */
export function formatComparison(lines: readonly CompareLine[], runA: string, runB: string): string {
  if (lines.length === 0) return `runs ${runA} and ${runB} share no (variant, workload, step, metric)`;
  const rows = lines.map((l) => [
    l.variant,
    l.step === null ? l.workload : `${l.workload} @${l.step}`,
    l.metric,
    formatNumber(l.meanA),
    formatNumber(l.meanB),
    Number.isFinite(l.delta) ? `${l.delta >= 0 ? '+' : ''}${(l.delta * 100).toFixed(1)}%` : '-',
    l.verdict,
  ]);
  return formatTable(
    ['variant', 'workload', 'metric', `A ${runA}`, `B ${runB}`, 'B vs A', 'verdict'],
    rows,
    '',
  );
}
