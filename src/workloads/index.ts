import { hostCanRun } from '../study/plan.js';
import type { Workload } from '../study/types.js';
import { UserError } from '../util/errors.js';
import { fioRunTimeoutMs, type RunContext, runFioJob } from './fio.js';
import { runFioOnGuests } from './fio-client.js';
import { runPgbench } from './pgbench.js';
import { runRsync } from './rsync.js';
import { runSweep, sweepRuns } from './sweep.js';
import type { RunWorkloadOptions, WorkloadResult, WorkloadTarget } from './types.js';

export { FIO_SERVER_PORT, type FioServer, runFioClients } from './fio-client.js';
export { type FioJob, type FioReport, fioJobMetrics, parseFioJson } from './fio-json.js';
export type { MetricValue, RunWorkloadOptions, StepResult, WorkloadResult, WorkloadTarget } from './types.js';

/**
 * Runs a study workload on a target and returns its figures, one StepResult per step (sweep rate or
 * iodepth, pgbench client count, or a single null step). Several guests at once (fio client/server)
 * give a step per guest (`guest` 0..N-1) and one with `guest: "all"`.
 */
export async function runWorkload(
  target: WorkloadTarget,
  workload: Workload,
  opts: RunWorkloadOptions = {},
): Promise<WorkloadResult> {
  const ctx: RunContext = {
    deadline: Date.now() + (opts.timeoutMs ?? workloadTimeoutMs(workload)),
    log: opts.log ?? (() => undefined),
    series: opts.series ?? false,
  };
  if (target.kind === 'guests') {
    if (workload.kind !== 'fio') {
      throw new UserError(
        `workload ${workload.name}: several guests at once run fio workloads only, not ${workload.kind}`,
      );
    }
    const { kind: _kind, ...spec } = workload;
    return { steps: await runFioOnGuests(target.guests, spec, ctx) };
  }
  if (target.kind === 'host' && !hostCanRun(workload)) {
    throw new UserError(
      `workload ${workload.name}: the host baseline runs fio and sweep workloads only, not ${workload.kind}`,
    );
  }
  switch (workload.kind) {
    case 'fio': {
      const { kind: _kind, ...spec } = workload;
      const { result } = await runFioJob(target, spec, null, ctx);
      return { steps: [result] };
    }
    case 'sweep':
      return runSweep(target, workload, ctx);
    case 'pgbench':
      return runPgbench(guestOf(target), workload, ctx);
    case 'rsync':
      return runRsync(guestOf(target), workload, ctx);
  }
}

function guestOf(target: WorkloadTarget) {
  if (target.kind !== 'guest') throw new Error('unreachable: host target for a guest-only workload');
  return target.vm;
}

/** A generous upper bound on how long a workload may take, from its own durations (ms). */
export function workloadTimeoutMs(workload: Workload): number {
  switch (workload.kind) {
    case 'fio':
      return fioRunTimeoutMs(workload);
    case 'sweep':
      return sweepRuns(workload) * fioRunTimeoutMs(workload);
    case 'pgbench': {
      const runs = workload.clients.length * Math.max(1, workload.rates?.length ?? 0);
      // Set-up (mkfs, initdb, start) plus `pgbench -i`, which loads 100 000 rows per scale unit.
      return (600 + 30 * workload.scale + runs * (2 * workload.runtimeSeconds + 120)) * 1000;
    }
    case 'rsync': {
      const bytes = workload.files * (workload.sizeMaxBytes ?? workload.sizeBytes);
      // Lay out, copy and sync at a pessimistic 2 MB/s and 200 files/s (emulated guests), plus set-up.
      return (600 + (3 * bytes) / 2e6 + (3 * workload.files) / 200) * 1000;
    }
  }
}
