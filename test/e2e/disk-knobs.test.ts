import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { runStudy } from '../../src/engine/run.js';
import { Virsh } from '../../src/libvirt/virsh.js';
import { Store } from '../../src/store/store.js';
import { parseStudy } from '../../src/study/load.js';
import { qemuPids } from '../helpers/vm.js';

/**
 * discard and detect_zeroes as matrix axes under TCG, on each backend: two variants share one VM
 * (the second is hot-plugged), live verification reads each test disk's detect_zeroes from
 * query-named-block-nodes (and libvirt's <driver discard detect_zeroes> from the live XML), and a
 * short write job runs on both. libvirt's disk is in /var/tmp: its QEMU cannot enter mkdtemp's
 * 0700 directories.
 */

const dir = mkdtempSync(join(tmpdir(), 'kvmio-e2e-knobs-'));
const libvirtDisk = `/var/tmp/kvmio-e2e-knobs-${process.pid}.raw`;
after(() => {
  rmSync(dir, { recursive: true, force: true });
  rmSync(libvirtDisk, { force: true });
});

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
  const store = Store.open(join(dir, `${backend}.sqlite`));
  try {
    const r = await runStudy(study, { store, accelerator: { accel: 'tcg', reason: 'e2e test' } });
    const points = store.points(r.runId);
    const why = JSON.stringify([...points, ...store.failures(r.runId)], null, 1);
    assert.equal(r.status, 'complete', why);
    assert.deepEqual(
      points.map((p) => [p.variant, p.status]).sort(),
      [
        ['blk-threads-io0-4k-dz', 'ok'],
        ['blk-threads-io0-4k-dzunmap', 'ok'],
        ['blk-threads-io0-4k-nodiscard-dz', 'ok'],
      ],
      why,
    );
  } finally {
    store.close();
  }
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
  const virsh = new Virsh('qemu:///system');
  if ((await virsh.tryRun(['version'])) === undefined)
    return t.skip('libvirt is not reachable (run scripts/services.sh)');
  await runKnobs('libvirt', libvirtDisk);
});
