import { type Comparison, compareSamples, controlFamily, mean } from '../stats/index.js';
import type { Store } from '../store/store.js';
import type { MetricRow } from '../study/results.js';
import type { Variant } from '../study/types.js';
import { idWithoutQemu } from '../study/variants.js';
import { UserError } from '../util/errors.js';

/**
 * `kvmio compare RUN_A RUN_B`: every (variant, workload, step, metric) both runs measured, the means,
 * the relative change of B over A, and the statistics module's verdict (Welch test, Holm-controlled
 * over the whole table) when both sides have at least two repetitions.
 */

/** The figures a comparison shows unless asked for all: what the study's charts lead with. */
export const KEY_METRICS = [
  /^(read|write)\.iops$/,
  /^(read|write)\.bw_bytes$/,
  /^(read|write)\.clat_mean_ns$/,
  /^(read|write)\.clat_p99_ns$/,
  /^cpu\.total_s$/,
  /^cpu\.pct_per_kiops$/,
  /^pgbench\.(tps|lat_mean_ms)$/,
  /^rsync\.seconds$/,
];

export interface CompareLine {
  variant: string;
  workload: string;
  step: MetricRow['step'];
  metric: string;
  unit: string;
  a: number[];
  b: number[];
  meanA: number;
  meanB: number;
  /** (meanB - meanA) / meanA. */
  delta: number;
  verdict: string;
}

function keyOf(r: MetricRow): string {
  return JSON.stringify([r.variant, r.workload, r.step, r.metric]);
}

function samples(
  rows: readonly MetricRow[],
): Map<string, { rows: MetricRow[]; perRep: Map<number, number> }> {
  const out = new Map<string, { rows: MetricRow[]; perRep: Map<number, number> }>();
  for (const r of rows) {
    const k = keyOf(r);
    const e = out.get(k) ?? { rows: [], perRep: new Map<number, number>() };
    e.rows.push(r);
    // Several guests of one repetition add up (their IOPS together are the variant's IOPS).
    e.perRep.set(r.rep, (e.perRep.get(r.rep) ?? 0) + r.value);
    out.set(k, e);
  }
  return out;
}

/**
 * A run's rows, or one host's (`RUN@HOST`, e.g. `latest@hv2`): hosts of one run compare with each
 * other like two runs.
 */
export function hostRows(store: Store, ref: string): MetricRow[] {
  const at = ref.lastIndexOf('@');
  const host = at > 0 ? ref.slice(at + 1) : undefined;
  const id = store.requireRun(at > 0 ? ref.slice(0, at) : ref).id;
  const rows = store.metricRows(id);
  if (host === undefined) return rows;
  const names = store.hosts(id).map((h) => h.name);
  if (!names.includes(host))
    throw new UserError(`run ${id} has no host "${host}"; its hosts: ${names.join(', ') || '(none)'}`);
  return rows.filter((r) => r.host === host);
}

/**
 * Two runs whose variants differ only in their QEMU: each pair named `ID (QEMU A -> B)` on both
 * sides, or undefined when no variant of A has its disk configuration in B.
 */
function acrossQemus(a: readonly Variant[], b: readonly Variant[]): Map<string, string> | undefined {
  const out = new Map<string, string>();
  const version = (v: Variant) => (typeof v.qemu?.version === 'string' ? v.qemu.version : 'default');
  for (const va of a) {
    const matches = b.filter((vb) => idWithoutQemu(vb) === idWithoutQemu(va));
    if (matches.length !== 1 || !(va.qemu || matches[0]?.qemu)) continue;
    const vb = matches[0] as Variant;
    const label = `${idWithoutQemu(va)} (QEMU ${version(va)} -> ${version(vb)})`;
    out.set(va.id, label);
    out.set(vb.id, label);
  }
  return out.size > 0 ? out : undefined;
}

export function compareRuns(
  store: Store,
  runA: string,
  runB: string,
  opts: { all?: boolean } = {},
): CompareLine[] {
  let rowsA = hostRows(store, runA);
  let rowsB = hostRows(store, runB);
  const variantsOf = (rows: MetricRow[]) => new Set(rows.map((r) => r.variant));
  const va = variantsOf(rowsA);
  const vb = variantsOf(rowsB);
  if (![...va].some((v) => vb.has(v))) {
    // Runs on different QEMUs (the matrix's qemu axis): the same disk configuration on each.
    const runOf = (ref: string) =>
      store.requireRun(ref.lastIndexOf('@') > 0 ? ref.slice(0, ref.lastIndexOf('@')) : ref).id;
    const across = acrossQemus(store.variants(runOf(runA)), store.variants(runOf(runB)));
    if (across) {
      rowsA = rowsA.map((r) => ({ ...r, variant: across.get(r.variant) ?? r.variant }));
      rowsB = rowsB.map((r) => ({ ...r, variant: across.get(r.variant) ?? r.variant }));
    }
  }
  if (
    va.size === 1 &&
    vb.size === 1 &&
    ![...va].some((v) => vb.has(v)) &&
    !rowsA.some((r) => rowsB.some((b) => b.variant === r.variant))
  ) {
    // Two single-variant runs (say two imported fio files): compare them with each other.
    const label = `${[...va][0]} -> ${[...vb][0]}`;
    rowsA = rowsA.map((r) => ({ ...r, variant: label }));
    rowsB = rowsB.map((r) => ({ ...r, variant: label }));
  }
  const a = samples(rowsA);
  const b = samples(rowsB);
  const shared = [...a.keys()].filter((k) => b.has(k));
  const lines: Omit<CompareLine, 'verdict'>[] = [];
  for (const k of shared) {
    const [variant, workload, step, metric] = JSON.parse(k) as [string, string, MetricRow['step'], string];
    if (!opts.all && !KEY_METRICS.some((re) => re.test(metric))) continue;
    const sa = [...(a.get(k)?.perRep.values() ?? [])];
    const sb = [...(b.get(k)?.perRep.values() ?? [])];
    const meanA = mean(sa);
    const meanB = mean(sb);
    lines.push({
      variant,
      workload,
      step,
      metric,
      unit: a.get(k)?.rows[0]?.unit ?? '',
      a: sa,
      b: sb,
      meanA,
      meanB,
      delta: meanB / meanA - 1,
    });
  }
  const testable = lines.filter((l) => l.a.length >= 2 && l.b.length >= 2);
  const verdicts = new Map<(typeof lines)[number], Comparison>();
  const family = controlFamily(testable.map((l) => compareSamples(l.a, l.b, { metric: l.metric })));
  testable.forEach((l, i) => {
    verdicts.set(l, family[i] as Comparison);
  });
  return lines.map((l) => ({
    ...l,
    // The statistics module's words for every line, so compare and the report say the same thing.
    verdict: (verdicts.get(l) ?? compareSamples(l.a, l.b, { metric: l.metric })).phrase,
  }));
}
