import { mean, type Summary, summary } from '../stats/summary.js';
import type { MetricRow } from '../study/results.js';

export type { Step } from '../study/results.js';

import type { Step } from '../study/results.js';

const SEP = '\u0000';
const pointId = (run: string, variant: string, workload: string, step: Step) =>
  [run, variant, workload, step === null ? '' : String(step)].join(SEP);

/** The map's value for key, created by make() when missing. */
export function getOr<K, V>(map: Map<K, V>, key: K, make: () => V): V {
  let v = map.get(key);
  if (v === undefined) {
    v = make();
    map.set(key, v);
  }
  return v;
}

/** Rates add up over guests; everything else (latency, CPU share, times) is averaged. */
const isRate = (metric: string) => /\.(iops|bw_bytes)$|^pgbench\.tps$/.test(metric);

function combineGuests(metric: string, guests: Map<string, number[]>): number {
  const all = guests.get('all');
  if (all) return mean(all);
  if (guests.size === 1) return mean(guests.values().next().value as number[]);
  const perGuest = [...guests.values()].map(mean);
  return isRate(metric) ? perGuest.reduce((a, b) => a + b, 0) : mean(perGuest);
}

/**
 * Metric rows indexed by point (run, variant, workload, step), metric and repetition. With several
 * guests per variant the guests of one repetition are combined (a guest named "all" — fio's client
 * aggregate — wins when present).
 */
export class PointIndex {
  private readonly reps = new Map<string, Map<string, Map<number, number>>>();
  private readonly stepsOf = new Map<string, Step[]>();
  readonly units = new Map<string, string>();

  constructor(rows: readonly MetricRow[]) {
    // point → metric → rep → guest → values; one string key per row keeps 100k rows fast.
    const acc = new Map<string, Map<string, Map<number, Map<string, number[]>>>>();
    for (const r of rows) {
      if (!Number.isFinite(r.value)) continue;
      const pid = pointId(r.run, r.variant, r.workload, r.step);
      let metrics = acc.get(pid);
      if (!metrics) {
        metrics = new Map();
        acc.set(pid, metrics);
        const seriesId = [r.run, r.variant, r.workload].join(SEP);
        const steps = getOr(this.stepsOf, seriesId, (): Step[] => []);
        if (!steps.includes(r.step)) steps.push(r.step);
      }
      const guests = getOr(
        getOr(metrics, r.metric, () => new Map()),
        r.rep,
        () => new Map<string, number[]>(),
      );
      getOr(guests, String(r.guest), (): number[] => []).push(r.value);
      if (!this.units.has(r.metric)) this.units.set(r.metric, r.unit);
    }
    for (const [pid, metrics] of acc) {
      const out = getOr(this.reps, pid, () => new Map<string, Map<number, number>>());
      for (const [metric, reps] of metrics) {
        const byRep = getOr(out, metric, () => new Map<number, number>());
        for (const [rep, guests] of reps) byRep.set(rep, combineGuests(metric, guests));
      }
    }
  }

  byRep(run: string, variant: string, workload: string, step: Step, metric: string): Map<number, number> {
    return this.reps.get(pointId(run, variant, workload, step))?.get(metric) ?? new Map();
  }

  values(run: string, variant: string, workload: string, step: Step, metric: string): number[] {
    return [...this.byRep(run, variant, workload, step, metric).values()];
  }

  summary(run: string, variant: string, workload: string, step: Step, metric: string): Summary | undefined {
    const v = this.values(run, variant, workload, step, metric);
    return v.length > 0 ? summary(v) : undefined;
  }

  has(run: string, variant: string, workload: string, step: Step, metric: string): boolean {
    return this.byRep(run, variant, workload, step, metric).size > 0;
  }

  steps(run: string, variant: string, workload: string): Step[] {
    return this.stepsOf.get([run, variant, workload].join(SEP)) ?? [];
  }

  /** Per-repetition values of f(metrics of that repetition), for derived figures (CPU shares). */
  derive(
    run: string,
    variant: string,
    workload: string,
    step: Step,
    metrics: readonly string[],
    f: (values: number[]) => number,
  ): number[] {
    const maps = metrics.map((m) => this.byRep(run, variant, workload, step, m));
    const out: number[] = [];
    for (const rep of maps[0]?.keys() ?? []) {
      const vals = maps.map((m) => m.get(rep));
      if (vals.every((v): v is number => v !== undefined)) {
        const x = f(vals);
        if (Number.isFinite(x)) out.push(x);
      }
    }
    return out;
  }
}
