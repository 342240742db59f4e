/**
 * The shapes of results every layer shares: what a workload measures, how the store keeps it and what
 * `kvmio export` writes. Defined once here; workloads, metrics, store, report and CLI import them.
 */

/** The accelerator VMs ran under. */
export type Accel = 'kvm' | 'tcg';

/**
 * A step within a workload: sweep target rate or iodepth, pgbench client count ("clients@rate" with
 * --rate), 'max', or null for a workload with one step.
 */
export type Step = number | string | null;

/** One figure as a workload or host meter reports it. */
export interface MetricValue {
  metric: string;
  value: number;
  unit: string;
}

/** One figure, the export contract of `kvmio export`. */
export interface MetricRow extends MetricValue {
  run: string;
  host: string;
  variant: string;
  guest: string | number;
  workload: string;
  step: Step;
  rep: number;
}
