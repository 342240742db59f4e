import { mean, summary } from '../stats/summary.js';
import { HOST_VARIANT_ID, type Variant } from '../study/types.js';
import { variantFormat, variantPath } from '../study/variants.js';
import type { ReportData } from './data.js';
import { slug } from './escape.js';
import { getOr, PointIndex, type Step } from './points.js';
import { buildSeries, type Series } from './series.js';
import {
  type BarDatum,
  type ColorScale,
  groupedBarSpec,
  type LineDatum,
  lineSpec,
  type StackDatum,
  stackedBarSpec,
} from './specs.js';
import { type WorkloadInfo, workloadInfos } from './workloads.js';

export type ChartKind = 'bars' | 'stacked' | 'lines';

/** One chart of the report: its Vega-Lite spec and the values it draws (kept to check against the rows). */
export interface Chart {
  id: string;
  section: string;
  title: string;
  subtitle?: string;
  kind: ChartKind;
  spec: object;
  bars?: BarDatum[];
  lines?: LineDatum[];
  stack?: StackDatum[];
}

/** Everything derived from the rows that charts and the conclusion share. */
export interface ReportModel {
  data: ReportData;
  index: PointIndex;
  series: Map<string, Series>;
  ordered: Series[];
  workloads: WorkloadInfo[];
}

export function buildModel(data: ReportData): ReportModel {
  const series = buildSeries(data);
  return {
    data,
    index: new PointIndex(data.rows),
    series,
    ordered: [...series.values()].sort((a, b) => a.order - b.order),
    workloads: workloadInfos(data),
  };
}

const NS_PER_US = 1000;
const CPU_PARTS: [string, string][] = [
  ['cpu.vcpu_s', 'vCPU'],
  ['cpu.iothread_s', 'IO thread'],
  ['cpu.main_s', 'main loop'],
  ['cpu.worker_s', 'aio workers'],
  ['cpu.other_s', 'other'],
  ['cpu.storage_daemon_s', 'storage daemon'],
];
const CPU_COLORS = ['#4c78a8', '#54a24b', '#e45756', '#f58518', '#bab0ac', '#b279a2'];
const UNSPLIT = 'total (not split by thread)';

function colorsFor(series: Series[]): ColorScale {
  return { domain: series.map((s) => s.label), range: series.map((s) => s.color) };
}

function bar(group: string, s: Series, values: number[], scale: number): BarDatum | undefined {
  if (values.length === 0) return undefined;
  const st = summary(values);
  // One repetition draws as a point without an interval.
  const half = st.n > 1 ? st.ciHalf : 0;
  return {
    group,
    label: s.label,
    mean: st.mean * scale,
    lo: (st.mean - half) * scale,
    hi: (st.mean + half) * scale,
    n: st.n,
  };
}

/** The single step of a fixed fio/rsync point (null), or the only step present. */
function fixedStep(m: ReportModel, s: Series, w: WorkloadInfo): Step | undefined {
  const steps = m.index.steps(s.run, s.variant, w.name);
  if (steps.includes(null)) return null;
  return steps.length === 1 ? steps[0] : undefined;
}

function barsFor(
  m: ReportModel,
  workloads: WorkloadInfo[],
  metricOf: (w: WorkloadInfo, dir: 'read' | 'write') => string,
  scale: number,
  keep: (s: Series) => boolean = () => true,
): BarDatum[] {
  const out: BarDatum[] = [];
  for (const w of workloads) {
    for (const dir of w.dirs) {
      const group = w.dirs.length > 1 ? `${w.rwLabel} (${dir})` : w.rwLabel;
      for (const s of m.ordered) {
        if (!keep(s)) continue;
        const step = fixedStep(m, s, w);
        if (step === undefined) continue;
        const d = bar(group, s, m.index.values(s.run, s.variant, w.name, step, metricOf(w, dir)), scale);
        if (d) out.push(d);
      }
    }
  }
  return out;
}

function barChart(
  m: ReportModel,
  id: string,
  section: string,
  titleText: string,
  subtitle: string | undefined,
  yTitle: string,
  bars: BarDatum[],
): Chart | undefined {
  if (bars.length === 0) return undefined;
  const present = m.ordered.filter((s) => bars.some((b) => b.label === s.label));
  return {
    id,
    section,
    title: titleText,
    subtitle,
    kind: 'bars',
    bars,
    spec: groupedBarSpec(bars, colorsFor(present), { title: titleText, subtitle, yTitle }),
  };
}

const paramsOf = (ws: WorkloadInfo[]) => [...new Set(ws.map((w) => w.params))].join(', ');

function cpuStack(
  m: ReportModel,
  w: WorkloadInfo,
  perMetric: 'cpu.pct_per_kiops' | 'cpu.pct_per_gbps',
  titleText: string,
  id: string,
): Chart | undefined {
  const stack: (StackDatum & { partIndex: number })[] = [];
  const totals: BarDatum[] = [];
  for (const s of m.ordered) {
    if (s.variant === HOST_VARIANT_ID) continue;
    const step = fixedStep(m, s, w);
    if (step === undefined || !m.index.has(s.run, s.variant, w.name, step, perMetric)) continue;
    const total = m.index.values(s.run, s.variant, w.name, step, perMetric);
    const t = bar(s.label, s, total, 1);
    if (t) totals.push(t);
    const before = stack.length;
    CPU_PARTS.forEach(([metric, part], partIndex) => {
      const shares = m.index.derive(
        s.run,
        s.variant,
        w.name,
        step,
        [perMetric, metric, 'cpu.total_s'],
        ([per, cls, tot]) => (tot ? (per as number) * ((cls as number) / tot) : Number.NaN),
      );
      if (shares.length === 0) return;
      stack.push({
        label: s.label,
        part,
        partIndex,
        value: mean(shares),
      });
    });
    // Without per-class figures the total is drawn whole rather than not at all.
    if (stack.length === before && t)
      stack.push({ label: s.label, part: UNSPLIT, partIndex: CPU_PARTS.length, value: t.mean });
  }
  if (totals.length === 0) return undefined;
  const labels = totals.map((t) => t.label);
  const partNames = [...CPU_PARTS.map((p) => p[1]), UNSPLIT].filter((p) => stack.some((d) => d.part === p));
  const parts = {
    domain: partNames,
    range: partNames.map((p) => CPU_COLORS[CPU_PARTS.findIndex((c) => c[1] === p)] ?? '#555'),
  };
  const subtitle = `${w.rwLabel}, ${w.params}; stacked by QEMU thread class, bars = 95% CI of the total`;
  const yTitle = perMetric === 'cpu.pct_per_kiops' ? 'CPU % per 1000 IOPS' : 'CPU % per GB/s';
  return {
    id,
    section: 'CPU',
    title: titleText,
    subtitle,
    kind: 'stacked',
    stack,
    bars: totals,
    spec: stackedBarSpec(stack, totals, parts, labels, { title: titleText, subtitle, yTitle }),
  };
}

/** A step's place on its curve: numeric steps in order, 'max' (the unthrottled run) last. */
function stepOrder(step: Step): number {
  const n = Number.parseFloat(String(step));
  return Number.isFinite(n) ? n : Number.MAX_SAFE_INTEGER;
}

/**
 * A sweep's load steps by their rank within each repetition. Rate-limited steps are shares of the
 * maximum each repetition measured first, so their target rates differ between repetitions: the
 * k-th step of every repetition is the same point of the curve, whatever its rate.
 */
export function stepsByRank(
  m: ReportModel,
  s: Series,
  workload: string,
  xMetric: string,
  yMetric: string,
): { rank: number; steps: Step[]; xs: number[]; ys: number[] }[] {
  const perRep = new Map<number, { step: Step; x: number; y: number }[]>();
  for (const step of m.index.steps(s.run, s.variant, workload)) {
    const ys = m.index.byRep(s.run, s.variant, workload, step, yMetric);
    for (const [rep, x] of m.index.byRep(s.run, s.variant, workload, step, xMetric)) {
      const y = ys.get(rep);
      if (y !== undefined) getOr(perRep, rep, () => []).push({ step, x, y });
    }
  }
  const ranks: { rank: number; steps: Step[]; xs: number[]; ys: number[] }[] = [];
  for (const points of perRep.values()) {
    points.sort((p, q) => stepOrder(p.step) - stepOrder(q.step));
    points.forEach((p, rank) => {
      ranks[rank] ??= { rank, steps: [], xs: [], ys: [] };
      const r = ranks[rank];
      if (!r.steps.includes(p.step)) r.steps.push(p.step);
      r.xs.push(p.x);
      r.ys.push(p.y);
    });
  }
  return ranks.filter(Boolean);
}

/** Latency (µs) against achieved IOPS per load step, one line per series. */
function curve(m: ReportModel, w: WorkloadInfo, keep: (s: Series) => boolean): LineDatum[] {
  const dir = w.dirs[0] ?? 'read';
  const out: LineDatum[] = [];
  for (const s of m.ordered) {
    if (!keep(s)) continue;
    for (const r of stepsByRank(m, s, w.name, `${dir}.iops`, `${dir}.clat_mean_ns`)) {
      const lat = bar('', s, r.ys, 1 / NS_PER_US);
      if (!lat) continue;
      out.push({
        label: s.label,
        x: mean(r.xs),
        y: lat.mean,
        ylo: lat.lo,
        yhi: lat.hi,
        n: lat.n,
        step: r.steps.join('/'),
        ord: r.rank,
      });
    }
  }
  return out;
}

function lineChart(
  m: ReportModel,
  id: string,
  section: string,
  titleText: string,
  subtitle: string | undefined,
  axes: { xTitle: string; yTitle: string; xType?: 'quantitative' | 'ordinal' },
  lines: LineDatum[],
  colors?: ColorScale,
): Chart | undefined {
  if (lines.length === 0) return undefined;
  const present = m.ordered.filter((s) => lines.some((l) => l.label === s.label));
  return {
    id,
    section,
    title: titleText,
    subtitle,
    kind: 'lines',
    lines,
    spec: lineSpec(lines, colors ?? colorsFor(present), { title: titleText, subtitle, ...axes }),
  };
}

/** Variants of one run that differ from each other only in `field`. */
export function pairsDifferingIn(m: ReportModel, field: keyof Variant): [Series, Series][] {
  const pairs: [Series, Series][] = [];
  const list = m.ordered.filter((s) => s.def);
  for (let i = 0; i < list.length; i++) {
    for (let j = i + 1; j < list.length; j++) {
      const a = list[i] as Series;
      const b = list[j] as Series;
      if (a.run !== b.run || !a.def || !b.def) continue;
      const keys: (keyof Variant)[] = (
        ['aio', 'iothreads', 'bus', 'memory', 'queues', 'cache'] as const
      ).filter((k) => a.def?.[k] !== b.def?.[k]);
      if (variantFormat(a.def) !== variantFormat(b.def)) keys.push('format');
      if (variantPath(a.def) !== variantPath(b.def)) keys.push('path');
      if (a.def.qemu?.name !== b.def.qemu?.name) keys.push('qemu');
      if (keys.length === 1 && keys[0] === field) pairs.push([a, b]);
    }
  }
  return pairs;
}

const latencyOf = (_w: WorkloadInfo, dir: 'read' | 'write') => `${dir}.clat_mean_ns`;
const iopsOf = (_w: WorkloadInfo, dir: 'read' | 'write') => `${dir}.iops`;

/** Every chart of the study that the data support, in the study's order. */
export function buildCharts(m: ReportModel): Chart[] {
  const charts: (Chart | undefined)[] = [];
  const of = (cls: WorkloadInfo['cls']) => m.workloads.filter((w) => w.cls === cls);
  const qd1 = of('qd1');
  const iops = of('iops');
  const tput = of('throughput');
  const sweeps = of('sweep');

  charts.push(
    barChart(
      m,
      'latency-qd1',
      'Backends',
      `Latency, ${paramsOf(qd1)} (lower is better)`,
      'mean completion latency, bars = 95% CI',
      'latency (µs)',
      barsFor(m, qd1, latencyOf, 1 / NS_PER_US),
    ),
    barChart(
      m,
      'iops-qd1',
      'Backends',
      `IOPS, ${paramsOf(qd1)}`,
      'higher is better',
      'IOPS',
      barsFor(m, qd1, iopsOf, 1),
    ),
    barChart(
      m,
      'iops-max',
      'Backends',
      `Max IOPS, ${paramsOf(iops)}`,
      'higher is better',
      'IOPS',
      barsFor(m, iops, iopsOf, 1),
    ),
    barChart(
      m,
      'throughput',
      'Backends',
      `Throughput, ${paramsOf(tput)}`,
      'higher is better',
      'MB/s',
      barsFor(m, tput, (_w, d) => `${d}.bw_bytes`, 1e-6),
    ),
  );
  for (const w of iops)
    charts.push(cpuStack(m, w, 'cpu.pct_per_kiops', 'CPU usage per 1000 IOPS', `cpu-per-kiops-${w.name}`));
  for (const w of tput)
    charts.push(cpuStack(m, w, 'cpu.pct_per_gbps', 'CPU usage per 1 GB/s', `cpu-per-gbps-${w.name}`));
  for (const w of sweeps) {
    // Guests only, as in the study: the bare host's curve would squash the guests' onto the axis.
    const lines = curve(m, w, (s) => s.variant !== HOST_VARIANT_ID);
    const sub = `${w.rwLabel}, ${w.params}; mean completion latency at each load step`;
    charts.push(
      lineChart(
        m,
        `lat-vs-iops-${w.name}`,
        'Latency vs load',
        'Latency vs. IOPS',
        sub,
        { xTitle: 'IOPS', yTitle: 'latency (µs)' },
        lines,
      ),
    );
    // The zoom keeps the low-load part, where the backends' fixed costs show (the study's second view).
    const maxX = Math.max(...lines.map((l) => l.x));
    const low = lines.filter((l) => l.x <= 0.6 * maxX);
    if (low.length >= 2 && low.length < lines.length)
      charts.push(
        lineChart(
          m,
          `lat-vs-iops-${w.name}-zoom`,
          'Latency vs load',
          'Latency vs. IOPS (zoomed in)',
          `${sub}; up to 60% of the highest IOPS`,
          { xTitle: 'IOPS', yTitle: 'latency (µs)' },
          low,
        ),
      );
  }
  for (const w of of('rsync')) {
    const bars = barsFor(
      m,
      [{ ...w, dirs: ['read'], rwLabel: w.params || 'rsync' }],
      () => 'rsync.seconds',
      1,
    );
    charts.push(
      barChart(
        m,
        `rsync-${w.name}`,
        'Applications',
        'rsync time (lower is better)',
        w.params,
        'seconds',
        bars,
      ),
    );
  }
  for (const w of of('pgbench'))
    charts.push(
      pgbenchChart(m, w, () => true, `pgbench-${w.name}`, 'Applications', 'pgbench - Latency vs. TPS'),
    );
  charts.push(...iothreadCharts(m, qd1, iops));
  charts.push(...pairCharts(m, 'bus', 'virtio-blk vs virtio-scsi', qd1, iops, sweeps));
  charts.push(...pairCharts(m, 'memory', 'Huge pages vs 4k pages', qd1, iops, []));
  charts.push(...pairCharts(m, 'format', 'Image format: raw vs qcow2', qd1, iops, sweeps));
  charts.push(
    ...pairCharts(m, 'path', 'Where the I/O is served: QEMU, vhost-user-blk, NBD', qd1, iops, sweeps),
  );
  charts.push(...pairCharts(m, 'qemu', 'QEMU version', qd1, iops, sweeps));
  return withFileSafeIds(charts.filter((c): c is Chart => c !== undefined));
}

/** Chart ids name files (charts/ID.svg): a slug of the names in them, unique within the report. */
function withFileSafeIds(charts: Chart[]): Chart[] {
  const taken = new Set<string>();
  return charts.map((c) => {
    const base = slug(c.id);
    let id = base;
    for (let n = 2; taken.has(id); n++) id = `${base}-${n}`;
    taken.add(id);
    return id === c.id ? c : { ...c, id };
  });
}

function pgbenchChart(
  m: ReportModel,
  w: WorkloadInfo,
  keep: (s: Series) => boolean,
  id: string,
  section: string,
  titleText: string,
): Chart | undefined {
  const lines: LineDatum[] = [];
  for (const s of m.ordered) {
    if (!keep(s)) continue;
    for (const step of m.index.steps(s.run, s.variant, w.name)) {
      const tps = m.index.values(s.run, s.variant, w.name, step, 'pgbench.tps');
      const lat = bar('', s, m.index.values(s.run, s.variant, w.name, step, 'pgbench.lat_mean_ms'), 1);
      if (tps.length === 0 || !lat) continue;
      lines.push({
        label: s.label,
        x: mean(tps),
        y: lat.mean,
        ylo: lat.lo,
        yhi: lat.hi,
        n: lat.n,
        step: String(step),
        ord: stepOrder(step),
      });
    }
  }
  return lineChart(
    m,
    id,
    section,
    titleText,
    `${w.params}; one point per client count`,
    { xTitle: 'TPS', yTitle: 'latency (ms)' },
    lines,
  );
}

/** Latency, max IOPS and CPU against the number of iothreads, one line per otherwise-equal family. */
function iothreadCharts(m: ReportModel, qd1: WorkloadInfo[], iops: WorkloadInfo[]): (Chart | undefined)[] {
  const families = new Map<string, Series[]>();
  for (const s of m.ordered) {
    if (!s.def) continue;
    const { aio, bus, memory, queues, cache } = s.def;
    const key = [
      s.run,
      aio,
      bus,
      memory,
      queues,
      cache,
      variantFormat(s.def),
      variantPath(s.def),
      s.def.qemu?.name ?? '',
    ].join('|');
    families.set(key, [...(families.get(key) ?? []), s]);
  }
  const multi = [...families.values()].filter((f) => new Set(f.map((s) => s.def?.iothreads)).size >= 2);
  if (multi.length === 0) return [];
  // A family is its members' label without the iothread part: "native", "io_uring · scsi".
  const familyLabel = (f: Series[]) =>
    (f[0] as Series).label.replace(/ \((no iothread|iothread|\d+ iothreads)\)/, '');
  const colors: ColorScale = {
    domain: multi.map(familyLabel),
    range: multi.map((f) => (f.find((s) => s.def?.iothreads === 1) ?? f[0])?.color ?? '#333'),
  };
  const linesFor = (
    ws: WorkloadInfo[],
    metric: (dir: 'read' | 'write') => string,
    scale: number,
    derived?: (s: Series, w: WorkloadInfo, step: Step) => number[],
  ) => {
    const out: LineDatum[] = [];
    for (const f of multi) {
      for (const w of ws) {
        for (const dir of w.dirs) {
          for (const s of f) {
            const step = fixedStep(m, s, w);
            if (step === undefined) continue;
            const values = derived
              ? derived(s, w, step)
              : m.index.values(s.run, s.variant, w.name, step, metric(dir));
            const b = bar('', s, values, scale);
            if (!b) continue;
            out.push({
              label: familyLabel(f),
              dash: w.rwLabel,
              x: s.def?.iothreads ?? 0,
              y: b.mean,
              ylo: b.lo,
              yhi: b.hi,
              n: b.n,
              step: String(step),
              ord: s.def?.iothreads ?? 0,
            });
          }
        }
      }
    }
    return out;
  };
  const axes = (yTitle: string) => ({ xTitle: 'IO threads', yTitle, xType: 'ordinal' as const });
  return [
    lineChart(
      m,
      'iothreads-latency',
      'IO threads',
      'Latency vs number of IO threads (lower is better)',
      paramsOf(qd1),
      axes('latency (µs)'),
      linesFor(qd1, (d) => `${d}.clat_mean_ns`, 1 / NS_PER_US),
      colors,
    ),
    lineChart(
      m,
      'iothreads-max-iops',
      'IO threads',
      'Max IOPS vs number of IO threads',
      paramsOf(iops),
      axes('IOPS'),
      linesFor(iops, (d) => `${d}.iops`, 1),
      colors,
    ),
    lineChart(
      m,
      'iothreads-cpu',
      'IO threads',
      'CPU usage per 1000 IOPS vs number of IO threads',
      paramsOf(iops),
      axes('CPU % per 1000 IOPS'),
      linesFor(iops, () => 'cpu.pct_per_kiops', 1),
      colors,
    ),
    // The study's "CPU usage vs number of IO threads": QEMU's whole CPU time over the window, in %.
    lineChart(
      m,
      'iothreads-cpu-usage',
      'IO threads',
      'CPU usage vs number of IO threads',
      `${paramsOf(iops)}; QEMU's CPU time over the measured window (100% = one core)`,
      axes('CPU %'),
      linesFor(
        iops.slice(0, 1),
        () => 'cpu.total_s',
        1,
        (s, w, step) =>
          m.index.derive(s.run, s.variant, w.name, step, ['cpu.total_s', 'cpu.window_s'], ([t, win]) =>
            win ? (100 * (t as number)) / win : Number.NaN,
          ),
      ),
      colors,
    ),
  ];
}

/** Bars (and curves) restricted to the variants of pairs that differ only in `field`. */
function pairCharts(
  m: ReportModel,
  field: 'bus' | 'memory' | 'format' | 'path' | 'qemu',
  heading: string,
  qd1: WorkloadInfo[],
  iops: WorkloadInfo[],
  sweeps: WorkloadInfo[],
): (Chart | undefined)[] {
  const pairs = pairsDifferingIn(m, field);
  if (pairs.length === 0) return [];
  const keys = new Set(pairs.flatMap(([a, b]) => [a.key, b.key]));
  const keep = (s: Series) => keys.has(s.key);
  const out: (Chart | undefined)[] = [
    barChart(
      m,
      `${field}-latency`,
      heading,
      `${heading} - Latency (lower is better)`,
      paramsOf(qd1),
      'latency (µs)',
      barsFor(m, qd1, latencyOf, 1 / NS_PER_US, keep),
    ),
    barChart(
      m,
      `${field}-iops`,
      heading,
      `${heading} - IOPS`,
      paramsOf(iops),
      'IOPS',
      barsFor(m, iops, iopsOf, 1, keep),
    ),
  ];
  for (const w of sweeps) {
    out.push(
      lineChart(
        m,
        `${field}-lat-vs-iops-${w.name}`,
        heading,
        `${heading} - Latency vs IOPS`,
        `${w.rwLabel}, ${w.params}`,
        { xTitle: 'IOPS', yTitle: 'latency (µs)' },
        curve(m, w, keep),
      ),
    );
  }
  if (field === 'bus')
    for (const w of m.workloads.filter((x) => x.cls === 'pgbench'))
      out.push(
        pgbenchChart(m, w, keep, `bus-pgbench-${w.name}`, heading, `${heading} - pgbench Latency vs TPS`),
      );
  return out;
}
