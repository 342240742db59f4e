import { summary } from '../stats/summary.js';
import type { MetricRow } from '../study/results.js';
import type { AdaptiveSpec, Workload } from '../study/types.js';

/**
 * Adaptive repetitions: after the planned rounds, a variant+workload gets another round while the 95%
 * confidence interval of its main metric is wider than ±ciShare of the mean, up to maxRepetitions.
 */

/** The figure a workload is judged by: what its chart leads with. */
export function mainMetric(w: Workload, rows: readonly MetricRow[]): string | undefined {
  switch (w.kind) {
    case 'pgbench':
      return 'pgbench.tps';
    case 'rsync':
      return 'rsync.seconds';
    default: {
      const wantsWrite = /write|trim/.test(w.rw) && !/rw|readwrite/.test(w.rw);
      const preferred = wantsWrite ? 'write.iops' : 'read.iops';
      if (rows.some((r) => r.metric === preferred)) return preferred;
      return rows.find((r) => r.metric.endsWith('.iops'))?.metric;
    }
  }
}

export interface AdaptiveNeed {
  variant: string;
  workload: string;
  n: number;
  /** Half-width of the CI as a share of the mean; NaN with fewer than two values. */
  share: number;
}

/**
 * Which (variant, workload) pairs need another round. Values of one repetition are summed over steps
 * and guests for a single number per repetition (a sweep's steps are judged together, as one curve).
 */
export function adaptiveNeeds(
  spec: AdaptiveSpec,
  pairs: ReadonlyArray<{ variant: string; workload: Workload }>,
  rows: readonly MetricRow[],
  roundsSoFar: number,
): AdaptiveNeed[] {
  if (roundsSoFar >= spec.maxRepetitions) return [];
  const needs: AdaptiveNeed[] = [];
  for (const { variant, workload } of pairs) {
    const mine = rows.filter((r) => r.variant === variant && r.workload === workload.name);
    const metric = mainMetric(workload, mine);
    if (!metric) continue; // nothing measured yet (every attempt failed): more rounds would not help
    const perRep = new Map<number, number>();
    for (const r of mine) if (r.metric === metric) perRep.set(r.rep, (perRep.get(r.rep) ?? 0) + r.value);
    const values = [...perRep.values()];
    const s = summary(values);
    const share = values.length >= 2 && s.mean !== 0 ? Math.abs(s.ciHalf / s.mean) : Number.NaN;
    if (!(share <= spec.ciShare)) needs.push({ variant, workload: workload.name, n: values.length, share });
  }
  return needs;
}
