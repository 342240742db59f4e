import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { csvToRows, exportJson, rowsToCsv } from '../../src/store/export.js';
import { Store } from '../../src/store/store.js';

const dir = mkdtempSync(join(tmpdir(), 'kvmio-store-rows-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A small run as the engine writes it: two ok points (one a sweep with steps), a failure retried, a failure left. */
function seeded(): { store: Store; id: string } {
  const store = Store.open(join(dir, `rows-${Math.random().toString(36).slice(2)}.sqlite`));
  const id = store.createRun({
    name: 'seeded',
    source: 'test.yaml',
    kvmioVersion: '0.1.0',
    accelerator: 'tcg',
    acceleratorReason: 'probe',
  });
  store.setHost(id, 'local', 'qemu:///system', { cpu: { model: 'test cpu' } });
  store.setVariants(id, [{ id: 'blk-native-io1-4k' }, { id: 'blk-threads-io0-4k' }]);
  const p0 = store.startPoint(id, {
    index: 0,
    round: 0,
    host: 'local',
    variant: 'blk-native-io1-4k',
    workload: 'lat',
  });
  store.finishPoint(p0, {
    status: 'ok',
    measurements: [
      { step: null, metric: 'read.iops', value: 1500.123456, unit: 'IOPS' },
      { step: null, metric: 'read.clat_mean_ns', value: 650000.25, unit: 'ns' },
      { step: null, metric: 'cpu.total_s', value: Number.NaN, unit: 's' }, // not a figure: dropped
    ],
    artifacts: { 'fio.json': '{"jobs":[]}', argv: '["fio","--name=x"]' },
    series: [{ t: 1, metric: 'cpu.vcpu_s', value: 0.5 }],
  });
  const p1 = store.startPoint(id, {
    index: 1,
    round: 0,
    host: 'local',
    variant: 'blk-threads-io0-4k',
    workload: 'sweep, "odd" name',
  });
  store.finishPoint(p1, {
    status: 'ok',
    measurements: [
      { step: 'max', metric: 'read.iops', value: 9000, unit: 'IOPS' },
      { step: 450, metric: 'read.iops', value: 449.9, unit: 'IOPS' },
      { guest: 'g2', step: 450, metric: 'read.iops', value: 451.1, unit: 'IOPS' },
    ],
  });
  const p2a = store.startPoint(id, {
    index: 2,
    round: 1,
    host: 'local',
    variant: 'blk-native-io1-4k',
    workload: 'lat',
  });
  store.finishPoint(p2a, { status: 'failed', error: 'QEMU was killed by SIGKILL', consoleTail: 'last line' });
  const p2b = store.startPoint(id, {
    index: 2,
    round: 1,
    host: 'local',
    variant: 'blk-native-io1-4k',
    workload: 'lat',
  });
  store.finishPoint(p2b, {
    status: 'ok',
    measurements: [{ step: null, metric: 'read.iops', value: 1490, unit: 'IOPS' }],
  });
  const p3 = store.startPoint(id, {
    index: 3,
    round: 1,
    host: 'local',
    variant: 'blk-threads-io0-4k',
    workload: 'lat',
  });
  store.finishPoint(p3, { status: 'failed', error: 'guest agent did not answer within 60 s' });
  store.setRunStatus(id, 'partial');
  return { store, id };
}

test('metricRows follow the export contract, only from ok points, numbers and text kept as they were', () => {
  const { store, id } = seeded();
  const rows = store.metricRows(id);
  assert.deepEqual(rows[0], {
    run: id,
    host: 'local',
    variant: 'blk-native-io1-4k',
    guest: 0,
    workload: 'lat',
    step: null,
    rep: 0,
    metric: 'read.iops',
    value: 1500.123456,
    unit: 'IOPS',
  });
  assert.equal(rows.length, 6, 'NaN dropped, failed attempt has no rows');
  assert.deepEqual(
    rows.filter((r) => r.workload.startsWith('sweep')).map((r) => [r.guest, r.step]),
    [
      [0, 'max'],
      [0, 450],
      ['g2', 450],
    ],
  );
  store.close();
});

test('points show the latest attempt; failures keep every failed attempt and say which were retried', () => {
  const { store, id } = seeded();
  const points = store.points(id);
  assert.deepEqual(
    points.map((p) => [p.index, p.attempt, p.status]),
    [
      [0, 1, 'ok'],
      [1, 1, 'ok'],
      [2, 2, 'ok'],
      [3, 1, 'failed'],
    ],
  );
  const failures = store.failures(id);
  assert.deepEqual(
    failures.map((f) => [f.index, f.reason, f.retried, f.consoleTail]),
    [
      [2, 'QEMU was killed by SIGKILL', true, 'last line'],
      [3, 'guest agent did not answer within 60 s', false, null],
    ],
  );
  const p0 = points[0];
  assert.ok(p0);
  assert.deepEqual(store.artifacts(p0.id), { argv: '["fio","--name=x"]', 'fio.json': '{"jobs":[]}' });
  assert.deepEqual(store.series(p0.id), [{ t: 1, metric: 'cpu.vcpu_s', value: 0.5 }]);
  store.close();
});

test('listRuns gives { id, name, status, points, failed, started, host }; latest resolves', () => {
  const { store, id } = seeded();
  const [listing] = store.listRuns();
  assert.deepEqual(Object.keys(listing ?? {}).sort(), [
    'failed',
    'host',
    'id',
    'name',
    'points',
    'started',
    'status',
  ]);
  assert.equal(listing?.id, id);
  assert.equal(listing?.points, 4);
  assert.equal(listing?.failed, 1);
  assert.equal(listing?.status, 'partial');
  assert.equal(listing?.host, 'local');
  assert.equal(store.getRun('latest')?.id, id);
  assert.equal(store.getRun('latest')?.accelerator, 'tcg');
  assert.deepEqual(store.getRun(id)?.hostFacts, { cpu: { model: 'test cpu' } });
  store.close();
});

test('export csv and json round trip to the same rows', () => {
  const { store, id } = seeded();
  const rows = store.metricRows(id);
  const csv = rowsToCsv(rows);
  assert.match(csv.split('\n')[0] ?? '', /^run,host,variant,guest,workload,step,rep,metric,value,unit$/);
  assert.deepEqual(csvToRows(csv), rows);
  const doc = JSON.parse(JSON.stringify(exportJson(store, 'latest')));
  assert.deepEqual(doc.rows, rows);
  assert.equal(doc.run.id, id);
  assert.equal(doc.failures.length, 2);
  store.close();
});

test('discardRunningPoints removes what an interruption left half-done', () => {
  const { store, id } = seeded();
  store.startPoint(id, { index: 4, round: 2, host: 'local', variant: 'blk-native-io1-4k', workload: 'lat' });
  assert.equal(store.points(id).at(-1)?.status, 'running');
  assert.equal(store.discardRunningPoints(id), 1);
  assert.equal(
    store.points(id).some((p) => p.status === 'running'),
    false,
  );
  store.close();
});
