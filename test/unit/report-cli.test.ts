/**
 * `kvmio report` end to end through the results store: the recorded run (test/fixtures/runs/) is
 * written back into a fresh store point by point, then the CLI renders it.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadReportData, type RunExport } from '../../src/report/index.js';
import { Store } from '../../src/store/store.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const doc = JSON.parse(
  readFileSync(join(ROOT, 'test/fixtures/runs/report-fixture.json'), 'utf8'),
) as RunExport & {
  run: { id: string; name: string; accelerator: string; acceleratorReason: string; study: never };
  hosts: { name: string; uri: string | null; facts: Record<string, unknown> }[];
};
let dir: string;
let db: string;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'kvmio-report-cli-'));
  db = join(dir, 'runs.sqlite');
  const store = Store.open(db);
  const id = store.createRun({
    id: doc.run.id,
    name: doc.run.name,
    source: 'test/fixtures/runs/report-fixture.study.yaml',
    study: doc.run.study,
    kvmioVersion: '0.1.0',
    accelerator: doc.run.accelerator,
    acceleratorReason: doc.run.acceleratorReason,
  });
  for (const h of doc.hosts) store.setHost(id, h.name, h.uri, h.facts);
  store.setVariants(id, doc.variants ?? []);
  const points = new Map<string, typeof doc.rows>();
  for (const r of doc.rows) {
    const key = `${r.host}\u0000${r.variant}\u0000${r.workload}\u0000${r.rep}`;
    points.set(key, [...(points.get(key) ?? []), r]);
  }
  let index = 0;
  for (const rows of points.values()) {
    const first = rows[0];
    if (!first) continue;
    const p = store.startPoint(id, {
      index: index++,
      round: first.rep,
      host: first.host,
      variant: first.variant,
      workload: first.workload,
    });
    store.finishPoint(p, {
      status: 'ok',
      measurements: rows.map((r) => ({
        guest: r.guest,
        step: r.step,
        metric: r.metric,
        value: r.value,
        unit: r.unit,
      })),
    });
  }
  store.setRunStatus(id, 'complete');
  store.close();
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('loadReportData reads the run back from the store as it was recorded', () => {
  const store = Store.open(db, { readonly: true });
  try {
    const data = loadReportData(store, ['latest', doc.run.id]);
    assert.equal(data.runs.length, 1, '"latest" and its id are the same run');
    assert.equal(data.runs[0]?.accelerator, 'tcg');
    assert.equal(data.runs[0]?.variants.length, doc.variants?.length);
    assert.equal(data.rows.length, doc.rows.length);
  } finally {
    store.close();
  }
});

test('kvmio report latest writes index.html, summary.md and every chart', () => {
  const out = join(dir, 'report');
  const stdout = execFileSync(
    process.execPath,
    [join(ROOT, 'bin/kvmio.js'), 'report', 'latest', '--db', db, '--out', out],
    {
      encoding: 'utf8',
    },
  );
  assert.match(stdout, /index\.html/);
  assert.match(stdout, /\d+ charts in /);
  assert.ok(existsSync(join(out, 'index.html')));
  assert.match(readFileSync(join(out, 'summary.md'), 'utf8'), /TCG/);
  assert.ok(existsSync(join(out, 'charts', 'latency-qd1.svg')));
  assert.ok(existsSync(join(out, 'charts', 'latency-qd1.png')));
});

test('an unknown run is a user error naming what there is', () => {
  const r = spawnSync(
    process.execPath,
    [join(ROOT, 'bin/kvmio.js'), 'report', 'nope', '--db', db, '--out', join(dir, 'x')],
    {
      encoding: 'utf8',
    },
  );
  assert.equal(r.status, 2);
  assert.match(r.stderr, /no run "nope".*recent runs: /);
});
