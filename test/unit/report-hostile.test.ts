/**
 * Reports of a store someone else made: names are hostile text. The recorded run
 * (test/fixtures/runs/report-fixture.json, see its README) with its names replaced by path escapes,
 * markup and spreadsheet formulas must give a report that stays inside --out and shows the names as
 * text in every output (HTML, SVG, Markdown, CSV).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type RunExport, reportDataFromExports, writeReport } from '../../src/report/index.js';
import { csvToRows, rowsToCsv } from '../../src/store/export.js';
import { importFio } from '../../src/store/import-fio.js';
import { Store } from '../../src/store/store.js';
import type { MetricRow } from '../../src/study/results.js';
import type { Study } from '../../src/study/types.js';
import { UserError } from '../../src/util/errors.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const bin = join(ROOT, 'bin/kvmio.js');
const dir = mkdtempSync(join(tmpdir(), 'kvmio-report-hostile-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const MARKUP = `q"><img src=x onerror=alert(7)>`;

/** The recorded run with every name replaced by hostile text (the same mapping everywhere). */
function hostileExport(): RunExport {
  const doc = JSON.parse(
    readFileSync(join(ROOT, 'test/fixtures/runs/report-fixture.json'), 'utf8'),
  ) as RunExport & {
    run: { study: Study; name: string };
  };
  const workloads = new Map<string, string>();
  const variants = new Map<string, string>();
  const formulas = ['=HYPERLINK("http://x")', '+cmd|calc', '-2+3', '@SUM(1)'];
  for (const [i, x] of doc.run.study.workloads.entries())
    workloads.set(x.name, `w${i}/../../../escaped-${i}${MARKUP}`);
  (doc.variants ?? []).forEach((v, i) => {
    if (v.id !== 'host') variants.set(v.id, `${formulas[i % formulas.length]}${MARKUP}${i}`);
  });
  const w = (n: string) => workloads.get(n) ?? n;
  const v = (n: string) => variants.get(n) ?? n;
  doc.run.name = `<script>alert(1)</script>${MARKUP}`;
  for (const x of doc.run.study.workloads) x.name = w(x.name);
  for (const x of doc.run.study.variants) x.id = v(x.id);
  for (const x of doc.variants ?? []) x.id = v(x.id);
  for (const r of doc.rows) {
    r.workload = w(r.workload);
    r.variant = v(r.variant);
  }
  return doc;
}

/** Every file under `root`, relative to it. */
function tree(root: string): string[] {
  return readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((e) => !e.isDirectory())
    .map((e) => relative(root, join(e.parentPath, e.name)))
    .sort();
}

test('hostile names: files only inside --out, named from slugs; names are text in HTML, SVG and Markdown', async () => {
  const base = join(dir, 'names');
  const out = join(base, 'deep', 'out');
  mkdirSync(out, { recursive: true });
  const result = await writeReport(reportDataFromExports([hostileExport()]), out, { png: false });
  assert.ok(result.charts.length >= 10, `${result.charts.length} charts`);
  // Nothing outside --out: base holds only the out directory's files.
  assert.deepEqual(
    tree(base).filter((f) => !f.startsWith(join('deep', 'out'))),
    [],
  );
  for (const c of result.charts) assert.match(c.id, /^[A-Za-z0-9_-]+$/);
  assert.ok(result.charts.some((c) => c.id.startsWith('cpu-per-kiops-w2-escaped-2')));
  const html = readFileSync(join(out, 'index.html'), 'utf8');
  assert.doesNotMatch(html, /<img|<script/i);
  assert.match(html, /&lt;img src=x onerror=alert\(7\)&gt;/);
  for (const f of tree(join(out, 'charts'))) {
    const svg = readFileSync(join(out, 'charts', f), 'utf8');
    assert.doesNotMatch(svg, /<img|<script/i, f);
  }
  const md = readFileSync(join(out, 'summary.md'), 'utf8');
  // Every < in the Markdown is escaped (\<) or inside the fenced libvirt XML.
  const prose = md.replace(/```xml[\s\S]*?```/g, '');
  assert.doesNotMatch(prose, /(?<!\\)</);
  assert.match(md, /\\<img src=x onerror=alert\(7\)\\>/);
  assert.match(md, /## Which backend/);
});

test('CSV export neutralises cells a spreadsheet would run as formulas, and reads them back', () => {
  const rows = hostileExport().rows as MetricRow[];
  const csv = rowsToCsv(rows);
  for (const line of csv.split('\n').slice(1, -1)) {
    for (const cell of line.split(',')) assert.doesNotMatch(cell, /^"?[=+\-@]/, line);
  }
  assert.match(csv, /'=HYPERLINK/);
  assert.deepEqual(csvToRows(csv), rows);
});

test('--out that is a file, empty, under /proc or holding symbolic links is refused, nothing followed', async () => {
  const data = reportDataFromExports([hostileExport()]);
  const file = join(dir, 'a-file');
  writeFileSync(file, 'mine');
  await assert.rejects(
    writeReport(data, file, { png: false }),
    (e) => e instanceof UserError && /is not a directory/.test(e.message),
  );
  await assert.rejects(
    writeReport(data, '', { png: false }),
    (e) => e instanceof UserError && /--out ''/.test(e.message),
  );
  await assert.rejects(
    writeReport(data, '/proc/kvmio-x', { png: false }),
    (e) => e instanceof UserError && /cannot create \/proc\/kvmio-x/.test(e.message),
  );
  assert.equal(readFileSync(file, 'utf8'), 'mine');

  const target = join(dir, 'precious');
  writeFileSync(target, 'precious data');
  const planted = join(dir, 'planted');
  mkdirSync(planted);
  symlinkSync(target, join(planted, 'index.html'));
  await assert.rejects(
    writeReport(data, planted, { png: false }),
    (e) => e instanceof UserError && /index\.html is a symbolic link/.test(e.message),
  );
  assert.equal(readFileSync(target, 'utf8'), 'precious data');

  const chartsLink = join(dir, 'charts-link');
  mkdirSync(chartsLink);
  const elsewhere = join(dir, 'elsewhere');
  mkdirSync(elsewhere);
  symlinkSync(elsewhere, join(chartsLink, 'charts'));
  await assert.rejects(
    writeReport(data, chartsLink, { png: false }),
    (e) => e instanceof UserError && /charts is a symbolic link/.test(e.message),
  );
  assert.deepEqual(readdirSync(elsewhere), []);

  // Through the CLI: exit 2 with one line, promptly (a recursive mkdir under /proc never returns).
  const store = Store.open(join(dir, 'cli.sqlite'));
  importFio(store, [join(ROOT, 'test/fixtures/fio/randread-qd1.json')]);
  store.close();
  for (const [out, re] of [
    ['/proc/kvmio-x', /cannot create \/proc\/kvmio-x/],
    ['', /--out '': give the directory/],
    [file, /is not a directory/],
  ] as const) {
    const r = spawnSync(
      process.execPath,
      [bin, 'report', 'latest', '--no-png', '--out', out, '--db', join(dir, 'cli.sqlite')],
      {
        encoding: 'utf8',
        timeout: 60_000,
      },
    );
    assert.equal(r.status, 2, `${out}: ${r.stderr}`);
    assert.equal(r.stderr.trimEnd().split('\n').length, 1);
    assert.match(r.stderr, re);
  }
  const exported = spawnSync(
    process.execPath,
    [bin, 'export', 'latest', '--out', join(planted, 'index.html'), '--db', join(dir, 'cli.sqlite')],
    { encoding: 'utf8' },
  );
  assert.equal(exported.status, 2, exported.stderr);
  assert.equal(readFileSync(target, 'utf8'), 'precious data');
});

test('an imported fio run is charted as what it is: no "undefined", no VM configuration recommended', async () => {
  const db = join(dir, 'imported.sqlite');
  const store = Store.open(db);
  const fio = join(ROOT, 'test/fixtures/fio');
  const imported = importFio(store, [join(fio, 'randread-qd1.json'), join(fio, 'two-jobs.json')]);
  store.close();
  const alone = join(dir, 'imported-alone');
  const r = spawnSync(
    process.execPath,
    [bin, 'report', imported.runId, '--no-png', '--out', alone, '--db', db],
    { encoding: 'utf8' },
  );
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /\b[1-9]\d* charts in /);
  const html = readFileSync(join(alone, 'index.html'), 'utf8');
  const md = readFileSync(join(alone, 'summary.md'), 'utf8');
  for (const text of [html, md]) assert.doesNotMatch(text, /undefined/);
  assert.match(md, /Imported fio results: .*no VM configuration/);
  assert.doesNotMatch(md, /<driver/);
  assert.match(html, /imported fio results/);
  // Next to a measured run (the recorded one): both charted, the measured run's recommendation intact.
  const both = await writeReport(
    reportDataFromExports([
      JSON.parse(readFileSync(join(ROOT, 'test/fixtures/runs/report-fixture.json'), 'utf8')) as RunExport,
      JSON.parse(
        spawnSync(process.execPath, [bin, 'export', imported.runId, '--db', db], { encoding: 'utf8' }).stdout,
      ) as RunExport,
    ]),
    join(dir, 'imported-both'),
    { png: false },
  );
  const bothMd = readFileSync(both.summary, 'utf8');
  assert.doesNotMatch(bothMd + readFileSync(both.index, 'utf8'), /undefined/);
  assert.match(bothMd, /<driver name='qemu' type='raw' cache='none' io='(native|io_uring|threads)'/);
  assert.ok(
    both.charts.some((c) => (c.bars ?? []).some((b) => b.label.includes('randread-qd1'))),
    'the imported figures are drawn',
  );
  assert.equal(existsSync(join(dir, 'imported-both', 'index.html')), true);
});
