import { join } from 'node:path';
import { errorMessage } from '../util/errors.js';
import { prepareOutputDir, prepareSubdir, writeFileNoFollow } from '../util/files.js';
import { buildCharts, buildModel, type Chart } from './charts.js';
import { buildConclusion, type Conclusion } from './conclusion.js';
import { loadReportData, type ReportData, type ReportStore } from './data.js';
import { escapeHtml } from './escape.js';
import { type RenderedChart, reportHtml } from './html.js';
import { scopeSvgIds, specToSvg, svgToPng } from './render.js';

export { buildCharts, buildModel, type Chart } from './charts.js';
export { buildConclusion, type Claim, type Conclusion, reportClaims } from './conclusion.js';
export {
  loadReportData,
  type ReportData,
  type ReportRun,
  type RunExport,
  reportDataFromExports,
} from './data.js';

export interface ReportResult {
  outDir: string;
  index: string;
  summary: string;
  charts: Chart[];
  conclusion: Conclusion;
  files: string[];
  millis: number;
}

/** Writes DIR/index.html, DIR/charts/<id>.svg|png and DIR/summary.md from the report's data. */
export async function writeReport(
  data: ReportData,
  outDir: string,
  opts: { png?: boolean } = {},
): Promise<ReportResult> {
  const t0 = performance.now();
  const model = buildModel(data);
  const charts = buildCharts(model);
  const conclusion = buildConclusion(model);
  const out = prepareOutputDir(outDir, '--out');
  const chartDir = prepareSubdir(out, 'charts', '--out');
  const files: string[] = [];
  const rendered: RenderedChart[] = [];
  const pngs: Promise<void>[] = [];
  for (const chart of charts) {
    const svg = await specToSvg(chart.spec).catch((e: unknown) => unrenderedChart(chart, e));
    const svgPath = join(chartDir, `${chart.id}.svg`);
    writeFileNoFollow(svgPath, svg, '--out');
    files.push(svgPath);
    if (opts.png !== false) {
      const pngPath = join(chartDir, `${chart.id}.png`);
      pngs.push(svgToPng(svg).then((png) => writeFileNoFollow(pngPath, png, '--out')));
      files.push(pngPath);
    }
    rendered.push({ chart, svg: scopeSvgIds(svg, `c-${chart.id}`) });
  }
  await Promise.all(pngs);
  const summary = join(out, 'summary.md');
  writeFileNoFollow(summary, conclusion.markdown, '--out');
  const index = join(out, 'index.html');
  writeFileNoFollow(index, reportHtml(data, rendered, conclusion.markdown), '--out');
  files.push(summary, index);
  return { outDir: out, index, summary, charts, conclusion, files, millis: performance.now() - t0 };
}

/** The library entry of `kvmio report`: runs from the store → the report files. */
export async function renderReport(
  store: ReportStore,
  runIds: readonly string[],
  outDir: string,
): Promise<ReportResult> {
  return writeReport(loadReportData(store, runIds), outDir);
}

/**
 * One chart vega cannot draw (names in someone else's store can trip it) costs that chart, not the
 * report: its place shows why, in escaped text.
 */
function unrenderedChart(chart: Chart, err: unknown): string {
  const why = escapeHtml(`${chart.title}: this chart could not be drawn (${errorMessage(err)})`);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="640" height="40"><text x="8" y="24" font-family="sans-serif" font-size="13">${why}</text></svg>`;
}
