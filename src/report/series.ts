import { HOST_VARIANT_ID, type Variant } from '../study/types.js';
import type { ReportData } from './data.js';

/** One line/bar family of the report: a variant of a run. */
export interface Series {
  key: string;
  run: string;
  variant: string;
  /** The study's wording: "native (iothread)", "io_uring", "threads", "host"; prefixed by the run label when several runs. */
  label: string;
  color: string;
  /** Position in legends: study order, host last. */
  order: number;
  def?: Variant;
}

export const HOST_GREY = '#8c8c8c';

/** The study's four backends keep their colours in every report. */
const CANONICAL: Record<string, string> = {
  threads: '#f58518',
  'native (no iothread)': '#72b7b2',
  'native (iothread)': '#4c78a8',
  io_uring: '#54a24b',
  // When a report has both iothread forms of threads or io_uring, each keeps its family's hue.
  'threads (iothread)': '#f58518',
  'threads (no iothread)': '#ffbf79',
  'io_uring (iothread)': '#54a24b',
  'io_uring (no iothread)': '#88d27a',
};
const PALETTE = [
  '#b279a2',
  '#e45756',
  '#9467bd',
  '#eeca3b',
  '#ff9da6',
  '#17becf',
  '#bcbd22',
  '#d67195',
  '#e377c2',
  '#1f3d7a',
  '#a0cbe8',
  '#8cd17d',
];

export function seriesKey(run: string, variant: string): string {
  return `${run}\u0000${variant}`;
}

function isBaseForm(v: Variant): boolean {
  return v.bus === 'virtio-blk' && v.memory === '4k' && v.cache === 'none';
}

/**
 * Knobs named in a label when they vary. `threads-iothreads` / `io_uring-iothreads`: the study's short
 * "threads" and "io_uring" leave the iothread out, which is ambiguous once a report has both forms.
 */
export type LabelKnob = 'bus' | 'memory' | 'queues' | 'cache' | 'threads-iothreads' | 'io_uring-iothreads';
const ALL_KNOBS: ReadonlySet<'bus' | 'memory' | 'queues' | 'cache'> = new Set([
  'bus',
  'memory',
  'queues',
  'cache',
]);

/** The knobs whose value differs between the given variants: only those need naming in labels. */
export function varyingKnobs(variants: readonly Variant[]): Set<LabelKnob> {
  const out = new Set<LabelKnob>();
  for (const k of ALL_KNOBS) if (new Set(variants.map((v) => v[k])).size > 1) out.add(k);
  for (const aio of ['threads', 'io_uring'] as const) {
    const counts = new Set(variants.filter((v) => v.aio === aio).map((v) => Math.min(v.iothreads, 2)));
    if (counts.size > 1) out.add(`${aio}-iothreads`);
  }
  return out;
}

/**
 * The study's legend wording for a variant ("native (iothread)", "io_uring", "threads", "host");
 * knobs that vary in the report are appended ("· scsi", "· hugepages").
 */
export function variantLabel(
  v: Variant | undefined,
  id: string,
  varying: ReadonlySet<LabelKnob> = new Set(),
): string {
  if (id === HOST_VARIANT_ID) return 'host';
  if (!v) return id;
  let label: string;
  if ((v.aio === 'threads' || v.aio === 'io_uring') && v.iothreads <= 1 && varying.has(`${v.aio}-iothreads`))
    label = `${v.aio} (${v.iothreads === 0 ? 'no iothread' : 'iothread'})`;
  else if (v.aio === 'threads') label = v.iothreads > 1 ? `threads (${v.iothreads} iothreads)` : 'threads';
  else if (v.iothreads === 0) label = `${v.aio} (no iothread)`;
  else if (v.iothreads === 1) label = v.aio === 'io_uring' ? 'io_uring' : `${v.aio} (iothread)`;
  else label = `${v.aio} (${v.iothreads} iothreads)`;
  const extra: string[] = [];
  if (v.bus === 'virtio-scsi') extra.push('scsi');
  if (v.memory === 'hugepages') extra.push('hugepages');
  if (varying.has('queues')) extra.push(`${v.queues} queue${v.queues === 1 ? '' : 's'}`);
  if (varying.has('cache') || v.cache !== 'none') extra.push(`cache=${v.cache}`);
  return [label, ...extra].join(' · ');
}

function hashString(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619) >>> 0;
  return h;
}

/** Mixes a #rrggbb colour towards white (share > 0) or black (share < 0): later runs get shades. */
function shade(hex: string, share: number): string {
  const n = Number.parseInt(hex.slice(1), 16);
  const ch = [(n >> 16) & 255, (n >> 8) & 255, n & 255].map((c) =>
    Math.round(share >= 0 ? c + (255 - c) * share : c * (1 + share)),
  );
  return `#${ch.map((c) => c.toString(16).padStart(2, '0')).join('')}`;
}

function present0(data: ReportData): Set<string> {
  const ids = new Set<string>();
  for (const r of data.rows) ids.add(r.variant);
  for (const f of data.failures) ids.add(f.variant);
  return ids;
}

const RUN_SHADES = [0, -0.35, 0.4, -0.6, 0.6];

/**
 * Every series of the report with a colour fixed for the whole report: the study's backends have
 * fixed colours, other variants hash into a palette (probing on collision), host is always grey, and
 * the same variant of a second run gets a shade of the first run's colour.
 */
export function buildSeries(data: ReportData): Map<string, Series> {
  const variantIds: string[] = [];
  const defs = new Map<string, Variant>();
  const variantOrder = new Map<string, number>();
  for (const run of data.runs) {
    for (const v of run.variants) {
      defs.set(v.id, v);
      if (!variantOrder.has(v.id)) variantOrder.set(v.id, variantOrder.size);
    }
  }
  const varying = varyingKnobs([...defs.values()].filter((v) => present0(data).has(v.id)));
  const present = new Set<string>();
  for (const r of data.rows) present.add(seriesKey(r.run, r.variant));
  for (const f of data.failures) present.add(seriesKey(f.run, f.variant));
  for (const key of present) {
    const variant = key.split('\u0000')[1] ?? '';
    if (!variantIds.includes(variant)) variantIds.push(variant);
  }
  const baseColor = new Map<string, string>();
  const used = new Set<string>();
  for (const id of variantIds) {
    if (id === HOST_VARIANT_ID) continue;
    const def = defs.get(id);
    const label = variantLabel(def, id, varying);
    const canonical = def && isBaseForm(def) ? CANONICAL[label] : undefined;
    if (canonical && !used.has(canonical)) {
      baseColor.set(id, canonical);
      used.add(canonical);
    }
  }
  for (const id of [...variantIds].sort()) {
    if (id === HOST_VARIANT_ID || baseColor.has(id)) continue;
    let i = hashString(id) % PALETTE.length;
    for (let probe = 0; probe < PALETTE.length && used.has(PALETTE[i] as string); probe++)
      i = (i + 1) % PALETTE.length;
    const color = PALETTE[i] as string;
    baseColor.set(id, color);
    used.add(color);
  }
  const multiRun = data.runs.length > 1;
  const labelSet = new Map<string, number>();
  const out = new Map<string, Series>();
  data.runs.forEach((run, runIndex) => {
    for (const key of present) {
      const [runId, variant] = key.split('\u0000') as [string, string];
      if (runId !== run.id) continue;
      const def = defs.get(variant);
      const vLabel = variantLabel(def, variant, varying);
      let label = multiRun ? `${run.label} · ${vLabel}` : vLabel;
      const seen = labelSet.get(label) ?? 0;
      labelSet.set(label, seen + 1);
      if (seen > 0) label = `${label} [${variant}]`;
      const base = variant === HOST_VARIANT_ID ? HOST_GREY : (baseColor.get(variant) ?? PALETTE[0]!);
      const order =
        runIndex * 1000 +
        (variant === HOST_VARIANT_ID
          ? 999
          : (variantOrder.get(variant) ?? 500 + variantIds.indexOf(variant)));
      out.set(key, {
        key,
        run: runId,
        variant,
        label,
        color: shade(base, RUN_SHADES[runIndex % RUN_SHADES.length] ?? 0),
        order,
        def,
      });
    }
  });
  return out;
}
