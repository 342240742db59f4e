import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseStudy } from '../../src/study/load.js';
import { libvirtUnreachable } from '../helpers/libvirt.js';
import { assertEveryPointOk, studyScratch, withStudyRun } from '../helpers/small-study.js';
import { qemuPids } from '../helpers/vm.js';

/**
 * discard and detect_zeroes as matrix axes under TCG, on each backend: two variants share one VM
 * (the second is hot-plugged), live verification reads each test disk's detect_zeroes from
 * query-named-block-nodes (and libvirt's <driver discard detect_zeroes> from the live XML), and a
 * short write job runs on both. libvirt's disk is in /var/tmp: its QEMU cannot enter mkdtemp's
 * 0700 directories.
 */

const { dir, libvirtDisk } = studyScratch('knobs');

const studyText = (backend: string, disk: string) => `name: e2e-knobs-${backend}
backend: ${backend}
guest: { vcpus: 1, memory: 512MiB }
disk: { path: ${disk}, size: 64MiB }
matrix: { aio: [threads], iothreads: [0], discard: [ignore, unmap], detect_zeroes: [on, unmap] }
repetitions: 1
workloads:
  - { kind: fio, name: rw, rw: randwrite, bs: 4k, iodepth: 1, runtime: 2s, ramp: 0s }
`;

async function runKnobs(backend: 'qemu' | 'libvirt', disk: string): Promise<void> {
  const study = parseStudy(studyText(backend, disk), join(dir, `${backend}.yaml`));
  // QEMU refuses detect_zeroes=unmap with discard=ignore: that variant is left out with a note.
  assert.ok(study.notes?.some((n) => n.startsWith('blk-threads-io0-4k-nodiscard-dzunmap left out')));
  await withStudyRun(study, join(dir, `${backend}.sqlite`), (run) =>
    assertEveryPointOk(run, [
      'blk-threads-io0-4k-dz',
      'blk-threads-io0-4k-dzunmap',
      'blk-threads-io0-4k-nodiscard-dz',
    ]),
  );
}

test('discard x detect_zeroes on the direct QEMU backend: every point ok, verified live', {
  timeout: 420_000,
}, async () => {
  await runKnobs('qemu', join(dir, 'disk.raw'));
  assert.deepEqual(qemuPids(), [], 'no QEMU left');
});

test('discard x detect_zeroes on the libvirt backend: every point ok, verified live', {
  timeout: 420_000,
}, async (t) => {
  const unreachable = await libvirtUnreachable();
  if (unreachable) return t.skip(unreachable);
  await runKnobs('libvirt', libvirtDisk);
});
