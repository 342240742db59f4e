import {
  AIO_MODES,
  BUSES,
  CACHE_MODES,
  HOST_VARIANT_ID,
  IMAGE_FORMATS,
  MEMORY_BACKINGS,
  SERVE_PATHS,
  type Variant,
} from '../study/types.js';
import { variantFormat, variantPath } from '../study/variants.js';
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

/**
 * The study's four backends keep their colours in every report ("threads" is the study's threads in
 * the main loop, "io_uring" its io_uring in an iothread); the other iothread form of a family takes
 * the family's second shade.
 */
const CANONICAL: Record<string, readonly string[]> = {
  threads: ['#f58518', '#ffbf79'],
  'threads (no iothread)': ['#f58518', '#ffbf79'],
  'threads (iothread)': ['#f58518', '#ffbf79'],
  'native (no iothread)': ['#72b7b2'],
  'native (iothread)': ['#4c78a8'],
  'io_uring (iothread)': ['#54a24b', '#88d27a'],
  'io_uring (no iothread)': ['#54a24b', '#88d27a'],
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
  return (
    v.bus === 'virtio-blk' &&
    v.memory === '4k' &&
    v.cache === 'none' &&
    variantFormat(v) === 'raw' &&
    variantPath(v) === 'qemu'
  );
}

/**
 * Knobs named in a label when they vary. `threads-iothreads`: the study's short "threads" (no
 * iothread) is ambiguous once a report also has threads in an iothread.
 */
export type LabelKnob = 'bus' | 'memory' | 'queues' | 'cache' | 'threads-iothreads';
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
  const threads = new Set(variants.filter((v) => v.aio === 'threads').map((v) => Math.min(v.iothreads, 2)));
  if (threads.size > 1) out.add('threads-iothreads');
  return out;
}

/**
 * A run's variant as kvmio measured it: a VM disk configuration with every knob in its allowed set.
 * Anything else (an imported fio file or job, a store edited by hand) has no VM configuration.
 */
export function vmVariant(v: unknown): Variant | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const x = v as Partial<Variant>;
  const count = (n: unknown) => typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 1024;
  const ok =
    typeof x.id === 'string' &&
    AIO_MODES.includes(x.aio as never) &&
    BUSES.includes(x.bus as never) &&
    MEMORY_BACKINGS.includes(x.memory as never) &&
    CACHE_MODES.includes(x.cache as never) &&
    count(x.iothreads) &&
    count(x.queues) &&
    (x.format === undefined || IMAGE_FORMATS.includes(x.format)) &&
    (x.path === undefined || SERVE_PATHS.includes(x.path)) &&
    (x.qemu === undefined || isVariantQemu(x.qemu));
  return ok ? (x as Variant) : undefined;
}

/** A stored variant's QEMU: a name and a version of the forms a study allows, and a path. */
function isVariantQemu(q: unknown): boolean {
  if (typeof q !== 'object' || q === null) return false;
  const { name, path, version } = q as Record<string, unknown>;
  return (
    typeof name === 'string' &&
    /^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$/.test(name) &&
    typeof version === 'string' &&
    /^\d{1,4}\.\d{1,4}\.\d{1,4}$/.test(version) &&
    typeof path === 'string' &&
    path.length <= 4096
  );
}

/**
 * The study's legend wording for a variant ("native (iothread)", "io_uring (iothread)", "threads",
 * "host"); an iothread is named for every aio mode alike; knobs that vary in the report are appended
 * ("· scsi", "· hugepages"), and the QEMU version on the matrix's qemu axis ("· QEMU 10.0.2"). A
 * variant without a VM configuration is labelled by its id.
 */
export function variantLabel(
  v: Variant | undefined,
  id: string,
  varying: ReadonlySet<LabelKnob> = new Set(),
): string {
  if (id === HOST_VARIANT_ID) return 'host';
  if (!v) return id;
  let label: string;
  if (v.iothreads === 1) label = `${v.aio} (iothread)`;
  else if (v.iothreads > 1) label = `${v.aio} (${v.iothreads} iothreads)`;
  // The study's "threads" runs in the main loop; the others name it.
  else if (v.aio === 'threads' && !varying.has('threads-iothreads')) label = 'threads';
  else label = `${v.aio} (no iothread)`;
  const extra: string[] = [];
  if (v.bus === 'virtio-scsi') extra.push('scsi');
  if (v.memory === 'hugepages') extra.push('hugepages');
  if (variantFormat(v) !== 'raw') extra.push(variantFormat(v));
  if (variantPath(v) !== 'qemu') extra.push(variantPath(v));
  if (varying.has('queues')) extra.push(`${v.queues} queue${v.queues === 1 ? '' : 's'}`);
  if (varying.has('cache') || v.cache !== 'none') extra.push(`cache=${v.cache}`);
  // Variants of the qemu axis are told apart by the version they ran on.
  if (v.qemu) extra.push(`QEMU ${v.qemu.version}`);
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
    for (const spec of run.variants) {
      const v = vmVariant(spec);
      if (v) defs.set(v.id, v);
      const id = String((spec as { id?: unknown }).id);
      if (!variantOrder.has(id)) variantOrder.set(id, variantOrder.size);
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
    const shades = def && isBaseForm(def) ? CANONICAL[label] : undefined;
    const canonical = shades?.find((c) => !used.has(c));
    if (canonical) {
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
