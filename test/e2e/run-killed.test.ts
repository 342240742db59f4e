import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { Store } from '../../src/store/store.js';
import { sleep } from '../../src/util/proc.js';
import { kvmio, startKvmio, writeStudy } from '../helpers/kvmio-cli.js';
import { studyScratch } from '../helpers/small-study.js';
import { pgrep } from '../helpers/vm.js';

/**
 * kvmio killed with SIGKILL (the OOM killer, a CI timeout) runs no cleanup at all: its QEMU must still
 * end with it, so that the disk is free and `--resume` finishes the run instead of refusing a disk held
 * by a VM whose owner is gone.
 */

const { dir } = studyScratch('run-killed');
const disk = join(dir, 'disk.raw');
const study = writeStudy(
  dir,
  'killed',
  `name: killed
backend: qemu
guest: { vcpus: 1, memory: 512MiB }
disk: { path: ${disk}, size: 64MiB }
matrix: { aio: [threads], iothreads: [0] }
repetitions: 2
workloads:
  - { kind: fio, name: rr, rw: randread, bs: 4k, iodepth: 1, runtime: 2s, ramp: 0s }
`,
);
const db = join(dir, 'results.sqlite');

/** Processes whose command line names the test disk: the QEMU serving it. */
const holders = () => pgrep(['-f', `filename.*${disk}`]);

test('SIGKILL of kvmio mid-run ends its QEMU, and --resume completes the run', {
  timeout: 420_000,
}, async () => {
  const run = startKvmio(['run', study, '--db', db, '--json']);
  const { child } = run;

  // Wait until the VM serves the disk (QEMU started for the first point).
  const deadline = Date.now() + 300_000;
  while (holders().length === 0 && Date.now() < deadline && child.exitCode === null) await sleep(200);
  const qemu = holders();
  assert.ok(qemu.length > 0, `QEMU never started:\n${run.stderr()}`);
  const runId = run.runId();
  assert.ok(runId, 'the run started');
  child.kill('SIGKILL');
  await run.exit;

  const gone = Date.now() + 5000;
  while (qemu.some((pid) => existsSync(`/proc/${pid}`)) && Date.now() < gone) await sleep(100);
  assert.deepEqual(
    qemu.filter((pid) => existsSync(`/proc/${pid}`)),
    [],
    'QEMU ends with the kvmio that started it',
  );

  const resumed = kvmio(['run', study, '--db', db, '--resume', runId, '--quiet'], { timeoutMs: 360_000 });
  assert.equal(resumed.status, 0, resumed.stderr);
  const store = Store.open(db);
  try {
    assert.equal(store.getRun(runId)?.status, 'complete');
    assert.deepEqual(
      store.points(runId).map((p) => p.status),
      ['ok', 'ok'],
    );
  } finally {
    store.close();
  }
  assert.deepEqual(holders(), [], 'nothing left on the disk');
});
