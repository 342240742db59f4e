/**
 * Vega-Lite spec builders shared by every chart: grouped bars, stacked bars, lines; all with 95% CI bars.
 *
 * Names (variants, workloads) come from stores someone else made and may be `valueOf`, `constructor`
 * or `__proto__`: vega-lite turns a `sort` array into an object keyed by the names, and vega's stack
 * transform groups in a plain object, so both break on such names. Order is therefore given by scale
 * domains only, and stacks are laid out here.
 */

export const FONT = 'DejaVu Sans';
const WIDTH = 560;
const HEIGHT = 300;

export interface BarDatum {
  group: string;
  label: string;
  mean: number;
  lo: number;
  hi: number;
  n: number;
}

export interface LineDatum {
  label: string;
  /** Sub-series (e.g. the workload) drawn with a different dash. */
  dash?: string;
  x: number;
  y: number;
  ylo: number;
  yhi: number;
  n: number;
  step: string;
  /** Drawing order along the line: the load step (rate, clients), not the measured x. */
  ord: number;
}

export interface StackDatum {
  label: string;
  part: string;
  value: number;
}

export interface ColorScale {
  domain: string[];
  range: string[];
}

const config = {
  font: FONT,
  background: 'white',
  view: { stroke: null },
  axis: { labelFontSize: 11, titleFontSize: 12, grid: true, gridColor: '#e6e6e6' },
  legend: { orient: 'bottom', columns: 3, labelFontSize: 11, titleFontSize: 11, labelLimit: 260 },
  title: { fontSize: 15, subtitleFontSize: 12, anchor: 'start' },
};

/**
 * The y scale follows the drawn values (bars, points), not the error bars: with 2 repetitions the
 * t factor is 12.7 and one wide CI would flatten every bar; error bars are clipped at the frame.
 */
function yScale(values: number[]): { domain: [number, number]; nice: boolean } | { zero: boolean } {
  const finite = values.filter(Number.isFinite);
  const max = Math.max(...finite);
  const min = Math.min(...finite);
  if (finite.length === 0 || max <= 0) return { zero: true };
  return { domain: [Math.min(0, min * 1.1), max * 1.25], nice: true };
}

/** What every chart's spec begins with: the Vega-Lite schema, its title and its size. */
function chartFrame(t: { title: string; subtitle?: string }) {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: t.subtitle ? { text: t.title, subtitle: t.subtitle } : { text: t.title },
    width: WIDTH,
    height: HEIGHT,
  };
}

export function groupedBarSpec(
  data: BarDatum[],
  colors: ColorScale,
  t: { title: string; subtitle?: string; yTitle: string },
): object {
  const x = { field: 'group', type: 'nominal', title: null, axis: { labelAngle: 0 }, sort: null };
  const xOffset = { field: 'label', type: 'nominal', scale: { domain: colors.domain } };
  return {
    ...chartFrame(t),
    data: { values: data },
    layer: [
      {
        mark: { type: 'bar' },
        encoding: {
          x,
          xOffset,
          y: { field: 'mean', type: 'quantitative', title: t.yTitle, scale: yScale(data.map((d) => d.mean)) },
          color: { field: 'label', type: 'nominal', title: null, scale: colors },
        },
      },
      {
        mark: { type: 'rule', color: '#222', strokeWidth: 1.5, clip: true },
        transform: [{ filter: 'datum.n > 1' }],
        encoding: {
          x,
          xOffset,
          y: { field: 'lo', type: 'quantitative' },
          y2: { field: 'hi' },
        },
      },
    ],
    config,
  };
}

export function stackedBarSpec(
  data: StackDatum[],
  totals: BarDatum[],
  parts: ColorScale,
  labels: string[],
  t: { title: string; subtitle?: string; yTitle: string },
): object {
  const x = {
    field: 'label',
    type: 'nominal',
    title: null,
    scale: { domain: labels },
    axis: { labelAngle: -25, labelLimit: 400 },
  };
  // The stack is laid out here, not by vega's stack transform: that groups a stack by its x value in
  // a plain object, where a label such as `valueOf` finds Object.prototype's member.
  const order = (part: string) => parts.domain.indexOf(part);
  const tops = new Map<string, number>();
  const placed = data
    .filter((d) => Number.isFinite(d.value))
    .sort((a, b) => order(a.part) - order(b.part))
    .map((d) => {
      const start = tops.get(d.label) ?? 0;
      tops.set(d.label, start + d.value);
      return { ...d, start, end: start + d.value };
    });
  return {
    ...chartFrame(t),
    layer: [
      {
        data: { values: placed },
        mark: { type: 'bar' },
        encoding: {
          x,
          y: {
            field: 'start',
            type: 'quantitative',
            title: t.yTitle,
            scale: yScale(totals.map((d) => d.mean)),
          },
          y2: { field: 'end' },
          color: { field: 'part', type: 'nominal', title: 'QEMU thread', scale: parts },
        },
      },
      {
        data: { values: totals },
        mark: { type: 'rule', color: '#222', strokeWidth: 1.5, clip: true },
        transform: [{ filter: 'datum.n > 1' }],
        encoding: { x, y: { field: 'lo', type: 'quantitative' }, y2: { field: 'hi' } },
      },
    ],
    config,
  };
}

export function lineSpec(
  data: LineDatum[],
  colors: ColorScale,
  t: { title: string; subtitle?: string; xTitle: string; yTitle: string; xType?: 'quantitative' | 'ordinal' },
): object {
  const xType = t.xType ?? 'quantitative';
  const x = {
    field: 'x',
    type: xType,
    title: t.xTitle,
    ...(xType === 'ordinal' ? { axis: { labelAngle: 0 } } : {}),
  };
  const color = { field: 'label', type: 'nominal', title: null, scale: colors };
  const hasDash = data.some((d) => d.dash !== undefined);
  const dash = hasDash ? { strokeDash: { field: 'dash', type: 'nominal', title: null } } : {};
  return {
    ...chartFrame(t),
    data: { values: data },
    layer: [
      {
        mark: { type: 'line', strokeWidth: 2 },
        encoding: {
          x,
          y: { field: 'y', type: 'quantitative', title: t.yTitle, scale: yScale(data.map((d) => d.y)) },
          color,
          order: { field: 'ord' },
          ...dash,
        },
      },
      {
        mark: { type: 'point', filled: true, size: 45 },
        encoding: { x, y: { field: 'y', type: 'quantitative' }, color },
      },
      {
        mark: { type: 'rule', strokeWidth: 1.2, clip: true },
        transform: [{ filter: 'datum.n > 1' }],
        encoding: { x, y: { field: 'ylo', type: 'quantitative' }, y2: { field: 'yhi' }, color },
      },
    ],
    config,
  };
}
