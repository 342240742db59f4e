import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { importFio } from '../../src/store/import-fio.js';
import { Store } from '../../src/store/store.js';
import { UserError } from '../../src/util/errors.js';

// Fixtures recorded with fio 3.33 on this host: see test/fixtures/fio/README.md.
const fixtures = fileURLToPath(new URL('../../../test/fixtures/fio/', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'kvmio-store-import-'));
after(() => rmSync(dir, { recursive: true, force: true }));

interface FioDir {
  iops: number;
  bw_bytes: number;
  total_ios: number;
  clat_ns: { mean: number; percentile: Record<string, number> };
  lat_ns: { mean: number };
}
interface FioJobJson {
  jobname: string;
  read: FioDir;
  write: FioDir;
  usr_cpu: number;
  sys_cpu: number;
}

/** What fio itself printed, metric by metric, read straight from the JSON. */
function fioFigures(job: FioJobJson, dir: 'read' | 'write'): Record<string, number> {
  const d = job[dir];
  return {
    [`${dir}.iops`]: d.iops,
    [`${dir}.bw_bytes`]: d.bw_bytes,
    [`${dir}.clat_mean_ns`]: d.clat_ns.mean,
    [`${dir}.clat_p50_ns`]: d.clat_ns.percentile['50.000000'] as number,
    [`${dir}.clat_p99_ns`]: d.clat_ns.percentile['99.000000'] as number,
    [`${dir}.clat_p999_ns`]: d.clat_ns.percentile['99.900000'] as number,
    [`${dir}.lat_mean_ns`]: d.lat_ns.mean,
    'guest.usr_pct': job.usr_cpu,
    'guest.sys_pct': job.sys_cpu,
  };
}

test("a fio JSON file imports as a complete run with every figure equal to fio's own", () => {
  const file = join(fixtures, 'randread-qd1.json');
  const job = (JSON.parse(readFileSync(file, 'utf8')) as { jobs: FioJobJson[] }).jobs[0] as FioJobJson;
  const store = Store.open(join(dir, 'one.sqlite'));
  const r = importFio(store, [file], { label: 'laptop' });
  const run = store.getRun(r.runId);
  assert.equal(run?.status, 'complete');
  assert.equal(run?.name, 'laptop');
  assert.deepEqual(r.variants, ['randread-qd1']);
  const rows = store.metricRows(r.runId);
  const got = Object.fromEntries(rows.map((x) => [x.metric, x.value]));
  const want = fioFigures(job, 'read');
  for (const [metric, value] of Object.entries(want)) assert.equal(got[metric], value, metric);
  assert.ok(want['read.iops'] && want['read.iops'] > 0);
  assert.ok(rows.every((x) => x.workload === 'randread-4k-qd1' && x.step === null && x.rep === 0));
  // The raw file is kept with the point.
  const [point] = store.points(r.runId);
  assert.ok(point);
  assert.equal(store.artifacts(point.id)['fio.json'], readFileSync(file, 'utf8'));
  store.close();
});

test('a file with several jobs gives one variant per job, each with its own figures', () => {
  const file = join(fixtures, 'two-jobs.json');
  const jobs = (JSON.parse(readFileSync(file, 'utf8')) as { jobs: FioJobJson[] }).jobs;
  const store = Store.open(join(dir, 'two.sqlite'));
  const r = importFio(store, [file, join(fixtures, 'randread-qd1.json')]);
  assert.deepEqual(r.variants, ['two-jobs:randwrite-qd16', 'two-jobs:read-seq', 'randread-qd1']);
  const rows = store.metricRows(r.runId);
  const figures = (variant: string) =>
    Object.fromEntries(rows.filter((x) => x.variant === variant).map((x) => [x.metric, x.value]));
  const [w, s] = jobs as [FioJobJson, FioJobJson];
  for (const [m, v] of Object.entries(fioFigures(w, 'write')))
    assert.equal(figures('two-jobs:randwrite-qd16')[m], v, m);
  for (const [m, v] of Object.entries(fioFigures(s, 'read')))
    assert.equal(figures('two-jobs:read-seq')[m], v, m);
  // A write-only job reports no read figures, even though fio prints a zeroed read section.
  assert.equal(figures('two-jobs:randwrite-qd16')['read.iops'], undefined);
  assert.deepEqual(
    [...new Set(rows.filter((x) => x.variant.startsWith('two-jobs')).map((x) => x.workload))],
    ['randwrite-4k-qd16', 'read-1M-qd4'],
  );
  store.close();
});

test('a file that is not fio JSON is a user error naming the file', () => {
  const store = Store.open(join(dir, 'bad.sqlite'));
  const bad = join(fixtures, 'README.md');
  assert.throws(
    () => importFio(store, [bad]),
    (e: unknown) => e instanceof UserError && e.message.startsWith(bad),
  );
  assert.equal(store.listRuns().length, 0, 'nothing half-imported');
  store.close();
});
