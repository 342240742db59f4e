import type { Measurement } from '../store/store.js';
import type { WorkloadResult } from '../workloads/types.js';

/**
 * A workload's result as store rows: every step's metrics as measurements, its artifacts under
 * step-qualified names when there are several steps, and the optional 1 s CPU series.
 */
export function stepMeasurements(result: WorkloadResult): {
  measurements: Measurement[];
  artifacts: Record<string, string>;
  series: { t: number; metric: string; value: number }[];
} {
  const measurements: Measurement[] = [];
  const artifacts: Record<string, string> = {};
  const series: { t: number; metric: string; value: number }[] = [];
  const several = result.steps.length > 1;
  for (const s of result.steps) {
    for (const m of s.metrics) {
      measurements.push({ guest: s.guest, step: s.step, metric: m.metric, value: m.value, unit: m.unit });
    }
    const prefix =
      several || s.guest !== undefined
        ? `step=${s.step ?? '-'}${s.guest !== undefined ? ` guest=${s.guest}` : ''}/`
        : '';
    for (const [name, text] of Object.entries(s.artifacts ?? {})) {
      artifacts[`${prefix}${name}`] = text;
      if (name === 'cpu_series') series.push(...parseSeries(text, s.step));
    }
  }
  return { measurements, artifacts, series };
}

/** `cpu_series` is JSON: [{ t, vcpu, iothread, ... }] (seconds since the window opened, CPU seconds). */
function parseSeries(
  text: string,
  step: number | string | null,
): { t: number; metric: string; value: number }[] {
  let samples: unknown;
  try {
    samples = JSON.parse(text);
  } catch {
    return [];
  }
  if (!Array.isArray(samples)) return [];
  const suffix = step === null ? '' : `@${step}`;
  const out: { t: number; metric: string; value: number }[] = [];
  for (const s of samples as Array<Record<string, unknown>>) {
    const t = Number(s.t);
    if (!Number.isFinite(t)) continue;
    for (const [k, v] of Object.entries(s)) {
      if (k !== 't' && typeof v === 'number') out.push({ t, metric: `cpu.${k}_s${suffix}`, value: v });
    }
  }
  return out;
}
