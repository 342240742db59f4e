import type { GuestVm } from '../guest/vm.js';
import type { HostAccess } from '../host/access.js';
import type { MetricValue, Step } from '../study/results.js';

export type { MetricValue };

/**
 * Where a workload runs: inside a guest, on the host against the same disk (the "host" baseline; `host`
 * is how to reach that host, this machine when absent), or on
 * several guests at once through fio client/server (fio workloads; `server` is the host address
 * forwarded to the guest's fio server port, FIO_SERVER_PORT).
 */
export type WorkloadTarget =
  | { kind: 'guest'; vm: GuestVm }
  | { kind: 'host'; diskPath: string; host?: HostAccess }
  | { kind: 'guests'; guests: Array<{ vm: GuestVm; server: { host: string; port: number } }> };

export interface StepResult {
  step: Step;
  /** Which guest (client/server mode); undefined for a single guest. */
  guest?: number | string;
  metrics: MetricValue[];
  /** Raw tool output and exact argv, kept so every figure can be checked against what the tool printed. */
  artifacts?: Record<string, string>;
}

export interface WorkloadResult {
  steps: StepResult[];
}

export interface RunWorkloadOptions {
  timeoutMs?: number;
  log?: (line: string) => void;
  /** Record a 1 s CPU time series per thread class (artifact `cpu_series`). */
  series?: boolean;
}

/** One machine: a guest, or the host baseline. */
export type SingleTarget = Exclude<WorkloadTarget, { kind: 'guests' }>;
