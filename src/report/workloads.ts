import type { FioWorkload, Workload } from '../study/types.js';
import { FIO_RW } from '../study/workload-schema.js';
import { formatSizeForTool, parseSize } from '../util/units.js';
import { type ReportData, workloadOf } from './data.js';
import { getOr } from './points.js';

export type WorkloadClass = 'qd1' | 'iops' | 'throughput' | 'sweep' | 'pgbench' | 'rsync' | 'other';

export interface WorkloadInfo {
  name: string;
  cls: WorkloadClass;
  /** Directions the workload measures, in the metric names' words. */
  dirs: ('read' | 'write')[];
  /** "Random Read", "Sequential Write", … */
  rwLabel: string;
  /** "BS=4k QD=64" */
  params: string;
  def?: Workload;
}

const THROUGHPUT_BS = 1024 * 1024;

function rwWords(rw: string): { dirs: ('read' | 'write')[]; label: string } {
  const random = rw.startsWith('rand');
  const prefix = random ? 'Random' : 'Sequential';
  if (/read$/.test(rw) && !/rw|readwrite/.test(rw)) return { dirs: ['read'], label: `${prefix} Read` };
  if (/write$/.test(rw) && rw !== 'readwrite') return { dirs: ['write'], label: `${prefix} Write` };
  return { dirs: ['read', 'write'], label: `${prefix} Read/Write` };
}

/** Classifies by the workload's parameters in the run's study (rw, bs, iodepth, kind), not by its name. */
export function classify(
  name: string,
  def: Workload | undefined,
  metrics: ReadonlySet<string>,
): WorkloadInfo {
  if (def?.kind === 'pgbench' || (!def && metrics.has('pgbench.tps')))
    return {
      name,
      cls: 'pgbench',
      dirs: [],
      rwLabel: 'pgbench',
      params: def?.kind === 'pgbench' ? `scale ${def.scale}` : '',
      def,
    };
  if (def?.kind === 'rsync' || (!def && metrics.has('rsync.seconds')))
    return {
      name,
      cls: 'rsync',
      dirs: [],
      rwLabel: 'rsync',
      params: def?.kind === 'rsync' ? `${def.files} files` : '',
      def,
    };
  if (def?.kind === 'sweep' || def?.kind === 'fio') {
    const { dirs, label } = rwWords(def.rw);
    const depth = def.iodepth * Math.max(def.numjobs, 1);
    const params = `BS=${formatSizeForTool(def.bs)} QD=${def.kind === 'fio' ? depth : def.iodepth}${def.numjobs > 1 ? ` (${def.numjobs} jobs)` : ''}`;
    if (def.kind === 'sweep') return { name, cls: 'sweep', dirs, rwLabel: label, params, def };
    if (def.bs >= THROUGHPUT_BS) return { name, cls: 'throughput', dirs, rwLabel: label, params, def };
    if (depth === 1 && !def.rateIops) return { name, cls: 'qd1', dirs, rwLabel: label, params, def };
    if (!def.rateIops) return { name, cls: 'iops', dirs, rwLabel: label, params, def };
    return { name, cls: 'other', dirs, rwLabel: label, params, def };
  }
  // No study definition (e.g. imported fio files): fall back on what was measured.
  const dirs = (['read', 'write'] as const).filter((d) => metrics.has(`${d}.iops`));
  return { name, cls: 'other', dirs: [...dirs], rwLabel: name, params: '', def };
}

/** A positive integer option of fio's, or the default when absent or not one. */
function count(value: string | undefined, fallback: number): number {
  const n = Number(value);
  return value !== undefined && Number.isInteger(n) && n >= 1 ? n : fallback;
}

/**
 * An imported fio job's workload as a study would define it, read from the job options fio recorded
 * (values checked, never trusted), so imported results are classified and charted like measured ones.
 */
export function importedWorkload(data: ReportData, name: string): FioWorkload | undefined {
  const row = data.rows.find((r) => r.workload === name);
  const run = data.runs.find((r) => r.id === row?.run);
  const spec = run?.variants.find((v) => v.id === row?.variant) as
    | { source?: unknown; options?: unknown }
    | undefined;
  if (spec?.source !== 'fio' || typeof spec.options !== 'object' || spec.options === null) return undefined;
  const o = spec.options as Record<string, string | undefined>;
  const rw = (o.rw ?? o.readwrite ?? 'read') as FioWorkload['rw'];
  if (!FIO_RW.includes(rw)) return undefined;
  let bs: number;
  try {
    bs = parseSize((o.bs ?? o.blocksize ?? '4k').split(',')[0] ?? '4k');
  } catch {
    return undefined;
  }
  const rate = count(o.rate_iops, 0);
  return {
    kind: 'fio',
    name,
    rw,
    bs,
    iodepth: count(o.iodepth, 1),
    numjobs: count(o.numjobs, 1),
    runtimeSeconds: 0,
    rampSeconds: 0,
    ioengine: typeof o.ioengine === 'string' ? o.ioengine : '',
    extra: {},
    ...(rate > 0 ? { rateIops: rate } : {}),
  };
}

/** Every workload that has rows, classified (the first run defining a name wins). */
export function workloadInfos(data: ReportData): WorkloadInfo[] {
  const metricsOf = new Map<string, Set<string>>();
  for (const r of data.rows) {
    getOr(metricsOf, r.workload, () => new Set<string>()).add(r.metric);
  }
  const studyOrder = new Map<string, number>();
  for (const run of data.runs)
    for (const w of run.study?.workloads ?? [])
      if (!studyOrder.has(w.name)) studyOrder.set(w.name, studyOrder.size);
  const names = [...metricsOf.keys()].sort(
    (a, b) => (studyOrder.get(a) ?? 1e9) - (studyOrder.get(b) ?? 1e9) || a.localeCompare(b),
  );
  return names.map((name) => {
    const def =
      data.runs.map((r) => workloadOf(r, name)).find((w) => w !== undefined) ?? importedWorkload(data, name);
    return classify(name, def, metricsOf.get(name) ?? new Set());
  });
}
