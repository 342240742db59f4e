import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { Store } from '../../src/store/store.js';
import { sleep } from '../../src/util/proc.js';
import { startKvmio, writeStudy } from '../helpers/kvmio-cli.js';
import { studyScratch } from '../helpers/small-study.js';
import { pgrep } from '../helpers/vm.js';

/**
 * A fault costs a point, not the run: QEMU is killed with SIGKILL while fio runs in the guest; that
 * point is recorded failed with a reason, the other variant is measured on a fresh VM, and no QEMU
 * is left behind. Real QEMU under TCG, the embedded guest, fio 2 s.
 */

const { dir } = studyScratch('run-fault');
const study = writeStudy(
  dir,
  'fault',
  `name: fault
backend: qemu
guest: { vcpus: 1, memory: 512MiB }
disk: { path: ${join(dir, 'disk.raw')}, size: 64MiB }
matrix: { aio: [threads, native], iothreads: [0] }
baseline: false
repetitions: 1
workloads:
  - { kind: fio, name: rr, rw: randread, bs: 4k, iodepth: 1, runtime: 2s, ramp: 0s }
`,
);
const db = join(dir, 'results.sqlite');

test('QEMU killed with SIGKILL mid-point: that point fails with a reason, the other variant finishes, no QEMU left', {
  timeout: 600_000,
}, async () => {
  const kvmioRun = startKvmio(['run', study, '--db', db, '--json']);
  const vmPattern = `-name kvmio-${kvmioRun.child.pid}-`;
  const vmPids = () => pgrep(['-f', '--', vmPattern]);
  // fio has been started in the guest of the first point: kill its QEMU a second into the job.
  await kvmioRun.next((e) => e.event === 'log' && /^guest: .*fio/.test(String(e.line)));
  await sleep(1000);
  const [killed] = vmPids();
  assert.ok(killed, "the run's QEMU is running");
  process.kill(killed, 'SIGKILL');
  const { code, stderr } = await kvmioRun.exit;
  assert.ok(killed > 0, `QEMU was found and killed (stderr: ${stderr})`);
  assert.equal(code, 1, 'a partial run exits 1');

  const store = Store.open(db);
  const run = store.getRun('latest');
  assert.ok(run);
  assert.equal(run.status, 'partial');
  const points = store.points(run.id);
  assert.deepEqual(
    points.map((p) => p.status),
    ['failed', 'ok'],
  );
  const [failed, ok] = points;
  assert.ok(failed?.error && failed.error.length > 0, 'a reason');
  assert.match(failed.error, /QEMU|SIGKILL|killed|exited|agent/i);
  assert.notEqual(failed.variant, ok?.variant);
  const failures = store.failures(run.id);
  assert.equal(failures.length, 1);
  const rows = store.metricRows(run.id);
  assert.ok(rows.some((r) => r.variant === ok?.variant && r.metric === 'read.iops' && r.value > 0));
  assert.ok(
    rows.every((r) => r.variant === ok?.variant),
    'no figure from the killed point',
  );
  store.close();
  assert.deepEqual(vmPids(), [], 'no QEMU left');
});
