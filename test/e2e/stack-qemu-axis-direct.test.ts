import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { axisStudy, checkAxisRun, kvmio, SYSTEM_QEMU, versionOf } from '../helpers/qemu-axis.js';
import { qemu10 } from '../helpers/stack.js';

/**
 * QEMU version as a matrix axis on the direct backend: one study, the system QEMU (7.2 on Debian 12)
 * and QEMU 10 by name from qemus:, aio=native with an iothread on each, 1 repetition, fio 2 s under
 * TCG. Each QEMU boots its own VM (never a live switch across them), each point records the QEMU
 * path and the version its monitor reported, and the report labels the variants by version and has
 * a "QEMU version" section.
 */

const dir = mkdtempSync(join(tmpdir(), 'kvmio-qemu-axis-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('matrix.qemu on the direct backend: both QEMUs measured, recorded and reported by version', {
  timeout: 900_000,
}, () => {
  const study = join(dir, 'axis.yaml');
  writeFileSync(study, axisStudy({ backend: 'qemu', diskPath: join(dir, 'disk.raw'), qemu10: qemu10() }));
  const plan = kvmio(['plan', study]);
  assert.equal(plan.status, 0, plan.stderr);
  assert.match(plan.stdout, /VM boots: 2 {3}live switches: 0/);
  const db = join(dir, 'results.sqlite');
  const run = kvmio(['run', study, '--db', db, '--quiet']);
  assert.equal(run.status, 0, `${run.stdout}\n${run.stderr}`);
  checkAxisRun(db, join(dir, 'report'), {
    q72: versionOf(SYSTEM_QEMU),
    q10: versionOf(qemu10()),
    qemu10: qemu10(),
  });
});
