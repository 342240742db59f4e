/**
 * Renders the report of a real recorded run (test/fixtures/runs/, see its README) and checks every
 * chart against the rows it came from: the values drawn in each SVG (vega writes each mark's
 * values into its aria-label) must equal the means computed here, independently, from the rows.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { ReportResult } from '../../src/report/index.js';
import {
  type ReportData,
  type RunExport,
  reportDataFromExports,
  writeReport,
} from '../../src/report/index.js';
import type { MetricRow } from '../../src/study/results.js';

const FIXTURE = fileURLToPath(new URL('../../../test/fixtures/runs/report-fixture.json', import.meta.url));
const doc = JSON.parse(readFileSync(FIXTURE, 'utf8')) as RunExport;
const runId = String(doc.run.id);

let out: string;
let result: ReportResult;
let data: ReportData;

before(async () => {
  out = mkdtempSync(join(tmpdir(), 'kvmio-report-'));
  data = reportDataFromExports([doc]);
  result = await writeReport(data, out);
});
after(() => rmSync(out, { recursive: true, force: true }));

/** Mean over repetitions of one point's metric, computed straight from the rows. */
function expectedMean(
  rows: MetricRow[],
  variant: string,
  workload: string,
  metric: string,
  step: MetricRow['step'] = null,
): number {
  const sel = rows.filter(
    (r) => r.variant === variant && r.workload === workload && r.metric === metric && r.step === step,
  );
  assert.ok(sel.length > 0, `no rows for ${variant} ${workload} ${metric}`);
  return sel.reduce((a, r) => a + r.value, 0) / sel.length;
}

/** The aria-labels of the data marks of an SVG (not axes, legends or titles), parsed into key → value. */
function markLabels(svg: string): Record<string, string>[] {
  const out: Record<string, string>[] = [];
  for (const tag of svg.match(/<[a-z]+\b[^>]*aria-label="[^"]*"[^>]*>/g) ?? []) {
    const role = /aria-roledescription="([^"]*)"/.exec(tag)?.[1] ?? '';
    if (/axis|legend|title|container/.test(role)) continue;
    const rec: Record<string, string> = {};
    for (const part of (/aria-label="([^"]*)"/.exec(tag)?.[1] ?? '').split('; ')) {
      const i = part.indexOf(': ');
      if (i > 0) rec[part.slice(0, i).replace(/&amp;/g, '&')] = part.slice(i + 2).replace(/&amp;/g, '&');
    }
    out.push(rec);
  }
  return out;
}

function chartSvg(id: string): string {
  const file = join(out, 'charts', `${id}.svg`);
  assert.ok(existsSync(file), `chart ${id} was not written`);
  return readFileSync(file, 'utf8');
}

function close(actual: number, expected: number, what: string): void {
  assert.ok(
    Math.abs(actual - expected) <= 1e-6 * Math.abs(expected) + 1e-9,
    `${what}: drawn ${actual}, rows say ${expected}`,
  );
}

test('every chart family of the study that the run has data for is drawn, with SVG and PNG', () => {
  const ids = result.charts.map((c) => c.id);
  for (const id of [
    'latency-qd1',
    'iops-qd1',
    'iops-max',
    'throughput',
    'cpu-per-kiops-iops-randread',
    'cpu-per-gbps-bw-read',
    'lat-vs-iops-sweep-randread',
    'iothreads-latency',
    'iothreads-max-iops',
    'iothreads-cpu',
    'iothreads-cpu-usage',
    'bus-latency',
    'bus-iops',
    'bus-lat-vs-iops-sweep-randread',
    'memory-latency',
    'memory-iops',
  ]) {
    assert.ok(ids.includes(id), `missing chart ${id} (have ${ids.join(', ')})`);
  }
  for (const id of ids) {
    assert.ok(existsSync(join(out, 'charts', `${id}.svg`)));
    const png = readFileSync(join(out, 'charts', `${id}.png`));
    assert.equal(png.subarray(1, 4).toString(), 'PNG');
  }
});

test('bar charts draw the mean of the repetitions for every variant and the host', () => {
  const checks: [string, string, (dir: string) => string, number][] = [
    ['latency-qd1', 'lat-randread', () => 'read.clat_mean_ns', 1e-3],
    ['latency-qd1', 'lat-randwrite', () => 'write.clat_mean_ns', 1e-3],
    ['iops-qd1', 'lat-randread', () => 'read.iops', 1],
    ['iops-max', 'iops-randread', () => 'read.iops', 1],
    ['throughput', 'bw-read', () => 'read.bw_bytes', 1e-6],
  ];
  for (const [id, workload, metric, scale] of checks) {
    const chart = result.charts.find((c) => c.id === id);
    assert.ok(chart?.bars);
    const marks = markLabels(chartSvg(id));
    const variants = [...new Set(doc.rows.filter((r) => r.workload === workload).map((r) => r.variant))];
    assert.ok(variants.includes('host'), 'the host bar is there');
    for (const variant of variants) {
      const expected = expectedMean(doc.rows, variant, workload, metric('')) * scale;
      const datum = chart.bars.find(
        (b) => b.mean !== undefined && Math.abs(b.mean - expected) <= 1e-6 * expected,
      );
      assert.ok(datum, `${id}: no bar with the mean of ${variant} ${workload} (${expected})`);
      const drawn = marks.find(
        (m) =>
          m.label === datum.label &&
          m.group === datum.group &&
          m[Object.keys(m).find((k) => k !== 'label' && k !== 'group') ?? ''] !== undefined,
      );
      assert.ok(drawn, `${id}: bar ${datum.label} / ${datum.group} not in the SVG`);
      const value = Number(Object.entries(drawn).find(([k]) => k !== 'label' && k !== 'group')?.[1]);
      close(value, expected, `${id} ${variant}`);
    }
  }
});

test('the CPU chart stacks thread classes that add up to the CPU per 1000 IOPS of each variant', () => {
  const chart = result.charts.find((c) => c.id === 'cpu-per-kiops-iops-randread');
  assert.ok(chart?.stack && chart.bars);
  for (const total of chart.bars) {
    const parts = chart.stack.filter((s) => s.label === total.label);
    assert.ok(parts.length >= 2, `${total.label}: split by thread class`);
    const sum = parts.reduce((a, p) => a + p.value, 0);
    // Shares are computed per repetition, so their sum equals the mean total up to rounding.
    assert.ok(
      Math.abs(sum - total.mean) <= 0.01 * total.mean,
      `${total.label}: parts ${sum} vs total ${total.mean}`,
    );
  }
  const variants = [
    ...new Set(
      doc.rows
        .filter(
          (r) => r.workload === 'iops-randread' && r.metric === 'cpu.pct_per_kiops' && r.variant !== 'host',
        )
        .map((r) => r.variant),
    ),
  ];
  assert.equal(chart.bars.length, variants.length);
  for (const v of variants) {
    const expected = expectedMean(doc.rows, v, 'iops-randread', 'cpu.pct_per_kiops');
    assert.ok(
      chart.bars.some((b) => Math.abs(b.mean - expected) <= 1e-9 * expected),
      `CPU total of ${v}`,
    );
  }
  assert.ok(markLabels(chartSvg(chart.id)).length >= chart.stack.length);
  // CPU usage vs iothreads: QEMU's CPU seconds over the window, per repetition, then the mean.
  const usage = result.charts.find((c) => c.id === 'iothreads-cpu-usage');
  assert.ok(usage?.lines);
  for (const variant of ['blk-native-io0-4k', 'blk-native-io1-4k']) {
    const at = (metric: string, rep: number) =>
      doc.rows.find(
        (r) =>
          r.variant === variant && r.workload === 'iops-randread' && r.metric === metric && r.rep === rep,
      )?.value as number;
    const reps = [
      ...new Set(
        doc.rows.filter((r) => r.variant === variant && r.workload === 'iops-randread').map((r) => r.rep),
      ),
    ];
    const pct = reps.map((rep) => (100 * at('cpu.total_s', rep)) / at('cpu.window_s', rep));
    const expected = pct.reduce((a, b) => a + b, 0) / pct.length;
    const iothreads = variant.includes('io0') ? 0 : 1;
    const datum = usage.lines.find((l) => l.x === iothreads);
    assert.ok(datum);
    close(datum.y, expected, `CPU usage of ${variant}`);
  }
});

test('latency-vs-IOPS points are the mean achieved IOPS and latency of each load step', () => {
  const chart = result.charts.find((c) => c.id === 'lat-vs-iops-sweep-randread');
  assert.ok(chart?.lines);
  const marks = markLabels(chartSvg(chart.id));
  // The curves are the guests' (the study's chart has no host line). A step is the k-th load of its
  // repetition: rate-limited steps are shares of each repetition's own maximum, so rates differ.
  const sweepRows = doc.rows.filter((r) => r.workload === 'sweep-randread' && r.variant !== 'host');
  const order = (step: MetricRow['step']) =>
    Number.isFinite(Number(step)) ? Number(step) : Number.POSITIVE_INFINITY;
  let expectedPoints = 0;
  for (const variant of new Set(sweepRows.map((r) => r.variant))) {
    const byRank = new Map<number, { x: number[]; y: number[] }>();
    for (const rep of new Set(sweepRows.filter((r) => r.variant === variant).map((r) => r.rep))) {
      const mine = sweepRows.filter((r) => r.variant === variant && r.rep === rep);
      const steps = [...new Set(mine.map((r) => r.step))].sort((a, b) => order(a) - order(b));
      steps.forEach((step, rank) => {
        const at = (metric: string) =>
          mine.find((r) => r.step === step && r.metric === metric)?.value as number;
        const slot = byRank.get(rank) ?? { x: [], y: [] };
        slot.x.push(at('read.iops'));
        slot.y.push(at('read.clat_mean_ns') / 1000);
        byRank.set(rank, slot);
      });
    }
    for (const [rank, { x, y }] of byRank) {
      expectedPoints++;
      const mx = x.reduce((a, b) => a + b, 0) / x.length;
      const my = y.reduce((a, b) => a + b, 0) / y.length;
      const datum = chart.lines.find((l) => l.ord === rank && Math.abs(l.x - mx) <= 1e-9 * mx);
      assert.ok(datum, `no point for ${variant} load step ${rank}`);
      close(datum.y, my, `latency of ${variant} load step ${rank}`);
      assert.ok(
        marks.some((m) => m.label === datum.label && Math.abs(Number(m.IOPS) - mx) <= 1e-6 * mx),
        `point ${variant} ${rank} drawn`,
      );
    }
  }
  assert.equal(chart.lines.length, expectedPoints);
});

/** Every colour scale keyed by series label in a spec: encoding.color with field "label". */
function labelColorScales(node: unknown, out: { domain: string[]; range: string[] }[] = []): typeof out {
  if (Array.isArray(node)) for (const x of node) labelColorScales(x, out);
  else if (node && typeof node === 'object') {
    const o = node as Record<string, unknown>;
    const color = o.color as { field?: string; scale?: { domain: string[]; range: string[] } } | undefined;
    if (color?.field === 'label' && color.scale?.range) out.push(color.scale);
    for (const v of Object.values(o)) labelColorScales(v, out);
  }
  return out;
}

test('colours are fixed per variant across all charts, host is grey', () => {
  const colorOf = new Map<string, string>();
  for (const c of result.charts) {
    for (const scale of labelColorScales(c.spec)) {
      scale.domain.forEach((label, i) => {
        const color = scale.range[i] as string;
        if (colorOf.has(label)) assert.equal(colorOf.get(label), color, `${label} in ${c.id}`);
        else colorOf.set(label, color);
      });
    }
  }
  assert.equal(colorOf.get('host'), '#8c8c8c');
  for (const l of ['threads (iothread)', 'native (no iothread)', 'native (iothread)', 'io_uring (iothread)'])
    assert.ok(colorOf.has(l), `legend "${l}"`);
});

test('index.html is one self-contained page; summary.md states verdicts with numbers', () => {
  const html = readFileSync(join(out, 'index.html'), 'utf8');
  assert.doesNotMatch(html, /<script/i);
  assert.doesNotMatch(html.replace(/xmlns(:xlink)?="[^"]*"/g, ''), /(src|href)="https?:/);
  assert.match(html, /<meta name="viewport"/);
  assert.equal((html.match(/<figure class="chart"/g) ?? []).length, result.charts.length);
  const ids = [...html.matchAll(/\bid="([^"]+)"/g)].map((m) => m[1]);
  assert.equal(new Set(ids).size, ids.length, 'ids unique across inlined SVGs');
  const md = readFileSync(join(out, 'summary.md'), 'utf8');
  if (doc.run.accelerator === 'tcg') assert.match(md.split('\n').slice(0, 4).join('\n'), /TCG/);
  assert.match(md, /<driver name='qemu' type='raw' cache='none' io='(native|io_uring|threads)'/);
  assert.match(md, /## Which backend/);
  assert.match(md, /## Does an IO thread matter/);
  assert.match(md, /## virtio-blk vs virtio-scsi/);
  assert.match(md, /## Huge pages vs 4k pages/);
  for (const line of md.split('\n').filter((l) => l.startsWith('- ') && l.includes(' vs '))) {
    assert.match(
      line,
      /: (faster|slower|cheaper|costlier|more responsive|less responsive) by \d+(\.\d)?% \(CI [^,]+, p [=<] [\d.]+\)$|: no significant difference \(CI [^,]+, p = [\d.]+\)$|: too noisy to tell \(.*\)$|: no real difference \(.*\)$/,
      line,
    );
  }
});

test('two runs side by side: series are keyed by run label, and a run against itself shows no difference', async () => {
  // The same recorded run twice under two ids: a real run compared with itself must differ in nothing.
  const twin: RunExport = {
    ...doc,
    run: { ...doc.run, id: `${runId}-again` },
    rows: doc.rows.map((r) => ({ ...r, run: `${runId}-again` })),
    failures: [],
  };
  const dir = mkdtempSync(join(tmpdir(), 'kvmio-report2-'));
  try {
    const two = await writeReport(reportDataFromExports([doc, twin]), dir, { png: false });
    const bars = two.charts.find((c) => c.id === 'latency-qd1')?.bars ?? [];
    assert.ok(bars.some((b) => b.label.startsWith(`${runId} · `)));
    assert.ok(bars.some((b) => b.label.startsWith(`${runId}-again · `)));
    const cross = two.conclusion.claims.filter((c) => c.question === 'runs');
    assert.ok(cross.length > 0);
    for (const c of cross) {
      // Identical samples: p = 1 and never a difference; with 2 wide repetitions that reads "too noisy to tell".
      assert.equal(c.comparison.relDiff, 0, `${c.b.label} ${c.measure}`);
      assert.equal(c.comparison.p, 1);
      assert.ok(
        ['no-real-difference', 'no-significant-difference', 'too-noisy'].includes(c.comparison.kind),
        c.comparison.phrase,
      );
    }
    assert.match(readFileSync(join(dir, 'summary.md'), 'utf8'), /## Runs compared/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('pgbench and rsync (a second real run, side by side with the first): points and bars match the rows', async () => {
  const apps = JSON.parse(
    readFileSync(
      fileURLToPath(new URL('../../../test/fixtures/runs/report-fixture-apps.json', import.meta.url)),
      'utf8',
    ),
  ) as RunExport;
  const appsId = String(apps.run.id);
  const dir = mkdtempSync(join(tmpdir(), 'kvmio-report-apps-'));
  try {
    const both = await writeReport(reportDataFromExports([doc, apps]), dir, { png: false });
    const pg = both.charts.find((c) => c.id === 'pgbench-pgbench');
    assert.ok(pg?.lines, 'pgbench chart');
    const pgRows = apps.rows.filter((r) => r.workload === 'pgbench');
    const points = new Set(pgRows.map((r) => `${r.variant}\u0000${r.step}`));
    assert.equal(pg.lines.length, points.size);
    const svg = readFileSync(join(dir, 'charts', 'pgbench-pgbench.svg'), 'utf8');
    const marks = markLabels(svg);
    for (const key of points) {
      const [variant, stepText] = key.split('\u0000') as [string, string];
      const step = pgRows.find((r) => r.variant === variant && String(r.step) === stepText)?.step ?? null;
      const tps = expectedMean(apps.rows, variant, 'pgbench', 'pgbench.tps', step);
      const lat = expectedMean(apps.rows, variant, 'pgbench', 'pgbench.lat_mean_ms', step);
      const datum = pg.lines.find((l) => l.step === stepText && Math.abs(l.x - tps) <= 1e-9 * tps);
      assert.ok(datum, `pgbench point ${variant} clients ${stepText}`);
      assert.ok(datum.label.startsWith(`${appsId} · `), 'series keyed by run label');
      close(datum.y, lat, `pgbench latency ${variant} ${stepText}`);
      assert.ok(marks.some((m) => m.label === datum.label && Math.abs(Number(m.TPS) - tps) <= 1e-6 * tps));
    }
    const rsync = both.charts.find((c) => c.id === 'rsync-rsync-small-files');
    assert.ok(rsync?.bars, 'rsync chart');
    for (const variant of new Set(
      apps.rows.filter((r) => r.workload === 'rsync-small-files').map((r) => r.variant),
    )) {
      const expected = expectedMean(apps.rows, variant, 'rsync-small-files', 'rsync.seconds');
      const datum = rsync.bars.find((b) => Math.abs(b.mean - expected) <= 1e-9 * expected);
      assert.ok(datum, `rsync bar of ${variant}`);
      const drawn = markLabels(readFileSync(join(dir, 'charts', 'rsync-rsync-small-files.svg'), 'utf8')).find(
        (m) => m.label === datum.label,
      );
      assert.ok(drawn);
      close(Number(drawn.seconds), expected, `rsync ${variant}`);
    }
    // Both runs' charts are in the one report.
    assert.ok(both.charts.some((c) => c.id === 'latency-qd1'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
