import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { kvmio, writeStudy } from '../helpers/kvmio-cli.js';
import { axisStudy, runAndCheckAxis } from '../helpers/qemu-axis.js';
import { studyScratch } from '../helpers/small-study.js';
import { qemu10 } from '../helpers/stack.js';

/**
 * QEMU version as a matrix axis on the direct backend: one study, the system QEMU (7.2 on Debian 12)
 * and QEMU 10 by name from qemus:, aio=native with an iothread on each, 1 repetition, fio 2 s under
 * TCG. Each QEMU boots its own VM (never a live switch across them), each point records the QEMU
 * path and the version its monitor reported, and the report labels the variants by version and has
 * a "QEMU version" section.
 */

const { dir } = studyScratch('qemu-axis');

test('matrix.qemu on the direct backend: both QEMUs measured, recorded and reported by version', {
  timeout: 900_000,
}, () => {
  const study = writeStudy(
    dir,
    'axis',
    axisStudy({ backend: 'qemu', diskPath: join(dir, 'disk.raw'), qemu10: qemu10() }),
  );
  const plan = kvmio(['plan', study]);
  assert.equal(plan.status, 0, plan.stderr);
  assert.match(plan.stdout, /VM boots: 2 {3}live switches: 0/);
  runAndCheckAxis(study, dir);
});
