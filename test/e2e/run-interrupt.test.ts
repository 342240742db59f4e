import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { Store } from '../../src/store/store.js';
import { kvmio, startKvmio, writeStudy } from '../helpers/kvmio-cli.js';
import { studyScratch } from '../helpers/small-study.js';
import { pgrep } from '../helpers/vm.js';

/**
 * SIGINT to a real `kvmio run` in the middle of a point, then `--resume`: the run ends up complete with
 * every planned point measured exactly once. The points are host-baseline fio runs (real fio on a file
 * on this host, 2 s each), so the test does not depend on a guest booting.
 */

const { dir } = studyScratch('run-interrupt');

const study = writeStudy(
  dir,
  'interrupt',
  `name: interrupt
backend: qemu
guest: { vcpus: 1, memory: 512MiB }
disk: { path: ${join(dir, 'disk.raw')}, size: 64MiB }
matrix: { aio: [threads], iothreads: [0] }
baseline: true
repetitions: 3
workloads:
  - { kind: fio, name: rr, rw: randread, bs: 4k, iodepth: 1, runtime: 2s, ramp: 0s }
  - { kind: fio, name: rw, rw: randwrite, bs: 4k, iodepth: 4, runtime: 2s, ramp: 0s }
`,
);
const db = join(dir, 'results.sqlite');
const startRun = (args: string[]) => startKvmio(['run', study, '--db', db, '--json', ...args]);
const fioOnDisk = () => pgrep(['-f', join(dir, 'disk.raw')]);

test('SIGINT mid-point stops within 5 s, leaves a consistent store, and resume finishes every point once', {
  timeout: 180_000,
}, async () => {
  const first = startRun(['--only', 'host']);
  const start = await first.next((e) => e.event === 'run-start');
  const runId = String(start.run);
  assert.equal(start.total, 6);
  await first.next((e) => e.event === 'point-end' && e.index === 0);
  const second = await first.next((e) => e.event === 'point-start' && e.index === 1);
  assert.equal(second.variant, 'host');
  // A second run on the same disk cannot collide with the first: it is refused, nothing measured.
  const other = kvmio(['run', study, '--only', 'host', '--db', join(dir, 'other.sqlite')]);
  assert.equal(other.status, 2, other.stderr);
  assert.match(other.stderr, /pid \d+/);
  first.child.kill('SIGINT');
  const ended = await first.exit;
  assert.equal(ended.code, 130);
  assert.ok(ended.ms < 5000, `stopped in ${ended.ms} ms`);
  const interrupted = first.events.find((e) => e.event === 'interrupted');
  assert.ok(interrupted, 'an interrupted event');
  assert.match(String(interrupted.resume), new RegExp(`^kvmio run .* --resume ${runId} --db `));
  // fio runs its jobs as threads (--thread), so nothing of it outlives kvmio.
  assert.deepEqual(fioOnDisk(), [], 'no fio job outlives kvmio');

  let store = Store.open(db);
  assert.equal(store.getRun(runId)?.status, 'interrupted');
  const before = store.points(runId);
  assert.deepEqual(
    before.map((p) => [p.index, p.status]),
    [[0, 'ok']],
    'the finished point is kept, the interrupted one removed',
  );
  const okRowsBefore = store.metricRows(runId);
  store.close();

  const resumed = startRun(['--resume', runId]);
  const rs = await resumed.next((e) => e.event === 'run-start');
  assert.equal(rs.run, runId);
  assert.equal(rs.resumed, true);
  assert.equal(rs.alreadyDone, 1);
  assert.equal(rs.todo, 5);
  const done = await resumed.exit;
  assert.equal(done.code, 0, done.stderr);
  const starts = resumed.events.filter((e) => e.event === 'point-start').map((e) => e.index);
  assert.deepEqual(starts, [1, 2, 3, 4, 5], 'the ok point is not redone');

  store = Store.open(db);
  assert.equal(store.getRun(runId)?.status, 'complete');
  const points = store.points(runId);
  assert.deepEqual(
    points.map((p) => [p.index, p.status]),
    [0, 1, 2, 3, 4, 5].map((i) => [i, 'ok']),
  );
  const attempts = store.db
    .prepare('SELECT idx, COUNT(*) AS n FROM points WHERE run_id = ? GROUP BY idx')
    .all(runId) as { idx: number; n: number }[];
  assert.ok(
    attempts.every((a) => a.n === 1),
    'one attempt per point: no duplicates',
  );
  const rows = store.metricRows(runId);
  const keys = rows.map((r) => JSON.stringify([r.variant, r.workload, r.rep, r.step, r.guest, r.metric]));
  assert.equal(new Set(keys).size, keys.length, 'no duplicate figure');
  assert.deepEqual([...new Set(rows.map((r) => `${r.workload}#${r.rep}`))].sort(), [
    'rr#0',
    'rr#1',
    'rr#2',
    'rw#0',
    'rw#1',
    'rw#2',
  ]);
  // The figures measured before the interruption are the ones kept.
  assert.deepEqual(
    rows.filter((r) =>
      okRowsBefore.some((o) => o.metric === r.metric && o.workload === r.workload && o.rep === r.rep),
    ),
    okRowsBefore,
  );
  assert.ok(rows.some((r) => r.metric === 'write.iops' && r.value > 0));
  store.close();
  assert.deepEqual(fioOnDisk(), []);
});
