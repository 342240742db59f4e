import type { SweepWorkload } from '../study/types.js';
import { type FioJobSpec, type RunContext, runFioJob } from './fio.js';
import { fioJobThroughput } from './fio-json.js';
import type { SingleTarget, StepResult, WorkloadResult } from './types.js';

/**
 * The latency-vs-load curve. Rate form: one unlimited run at `iodepth` finds the maximum IOPS (step
 * "max"), then `steps` runs limited to a share of it, evenly from `fromShare` to 100% (step = the
 * target IOPS of the whole job). Queue-depth form: one run per iodepth (step = the iodepth).
 */

function baseSpec(w: SweepWorkload): FioJobSpec {
  return {
    name: w.name,
    rw: w.rw,
    bs: w.bs,
    iodepth: w.iodepth,
    numjobs: w.numjobs,
    runtimeSeconds: w.runtimeSeconds,
    rampSeconds: w.rampSeconds,
    sizeBytes: w.sizeBytes,
    ioengine: 'libaio',
    extra: {},
  };
}

/** Evenly spaced shares from `from` to 1 (a single step is the maximum itself). */
export function sweepShares(steps: number, from: number): number[] {
  if (steps <= 1) return [1];
  return Array.from({ length: steps }, (_, i) => from + ((1 - from) * i) / (steps - 1));
}

/** Number of fio runs a sweep makes (for time estimates). */
export function sweepRuns(w: SweepWorkload): number {
  return w.iodepths?.length ? w.iodepths.length : 1 + (w.steps ?? 0);
}

export async function runSweep(
  target: SingleTarget,
  w: SweepWorkload,
  ctx: RunContext,
): Promise<WorkloadResult> {
  const steps: StepResult[] = [];
  if (w.iodepths?.length) {
    for (const iodepth of w.iodepths) {
      const { result } = await runFioJob(target, { ...baseSpec(w), iodepth }, iodepth, ctx);
      steps.push(result);
    }
    return { steps };
  }
  const max = await runFioJob(target, baseSpec(w), 'max', ctx);
  steps.push(max.result);
  const maxIops = fioJobThroughput(max.job).iops;
  ctx.log(`sweep ${w.name}: maximum ${Math.round(maxIops)} IOPS`);
  for (const share of sweepShares(w.steps ?? 0, w.fromShare)) {
    const targetIops = Math.max(1, Math.round(maxIops * share));
    // fio's rate_iops limits each job; the step's target is for the whole group.
    const perJob = Math.max(1, Math.ceil(targetIops / w.numjobs));
    const { result } = await runFioJob(target, { ...baseSpec(w), rateIops: perJob }, targetIops, ctx);
    result.metrics.push(
      { metric: 'sweep.target_iops', value: targetIops, unit: 'IOPS' },
      { metric: 'sweep.share', value: share, unit: 'ratio' },
    );
    steps.push(result);
  }
  return { steps };
}
