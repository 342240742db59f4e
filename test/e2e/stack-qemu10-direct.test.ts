import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Variant } from '../../src/study/types.js';
import { qemu10, readOnTwoQueues, threadCpuNs } from '../helpers/stack.js';
import { makeTestDisk, qemuVmForFile, testAccel, testStudy, testVariant } from '../helpers/vm.js';

/**
 * The study's QEMU (10.0, from Debian's bookworm-backports) on the direct backend, one boot: aio
 * native and io_uring with 0, 1 and 2 iothreads on one virtio-blk disk, and virtio-scsi with 2
 * iothreads, each switched live, verified live (aio context, iothread-vq-mapping: which iothread
 * serves which queue) and measured with a short fio run; on a spread disk every iothread works.
 */

const disk = makeTestDisk(64 * 1024 * 1024);
const blk = (aio: Variant['aio'], iothreads: number) => testVariant({ aio, iothreads, queues: 2 });
const variants = [
  ...(['native', 'io_uring'] as const).flatMap((aio) => [0, 1, 2].map((n) => blk(aio, n))),
  testVariant({ aio: 'native', iothreads: 2, queues: 2, bus: 'virtio-scsi' }),
];
const study = { ...testStudy(disk.path, { memoryMiB: 512 }), variants };
const theVm = qemuVmForFile(
  () => ({ study, variant: variants[0]!, accel: testAccel(), binary: qemu10(), name: 'kvmio-e2e-qemu10' }),
  disk,
);

test('QEMU 10 is what runs, with iothread-vq-mapping for virtio-blk and virtio-scsi', () => {
  const vm = theVm();
  assert.equal(vm.capabilities.version.major, 10);
  assert.ok(vm.capabilities.aioModes.includes('io_uring'));
  assert.ok(vm.capabilities.iothreadVqMapping);
  assert.ok(vm.capabilities.scsiIothreadVqMapping);
});

for (const variant of variants) {
  test(`${variant.id}: switched live, verified live, fio runs${variant.iothreads === 2 ? ', both iothreads work' : ''}`, async () => {
    const vm = theVm();
    if (vm.variant.id !== variant.id)
      await vm.switchVariant(variant); // verifies (throws on a mismatch)
    else await vm.verifyLive({ fresh: false });
    const threads = await vm.qmp.execute<Array<{ id: string; 'thread-id': number }>>('query-iothreads');
    assert.equal(threads.length, variant.iothreads);
    const before = threads.map((t) => threadCpuNs(vm.qemuPid(), t['thread-id']));
    assert.ok((await readOnTwoQueues(vm, 'qemu10-randread')) > 0);
    if (variant.iothreads === 2) {
      const mapping = await vm.qmp.execute('qom-get', {
        path: '/machine/peripheral/kvmio-test-dev',
        property: 'iothread-vq-mapping',
      });
      assert.deepEqual(mapping, [
        { iothread: 'kvmio-iot0', vqs: [0] },
        { iothread: 'kvmio-iot1', vqs: [1] },
      ]);
      // numjobs 2 on 2 vCPUs: the guest submits on both queues, so both iothreads run.
      threads.forEach((t, i) => {
        const used = threadCpuNs(vm.qemuPid(), t['thread-id']) - before[i]!;
        assert.ok(used > 0, `${t.id} ran ${used} ns during fio`);
      });
    }
  });
}
