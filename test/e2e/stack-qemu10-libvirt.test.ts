import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Virsh } from '../../src/libvirt/virsh.js';
import type { Variant } from '../../src/study/types.js';
import { emulatorProblem, LIBVIRT_URI, libvirtTestStudy, libvirtVmForFile } from '../helpers/libvirt.js';
import { qemu10, readOnTwoQueues, threadCpuNs } from '../helpers/stack.js';
import { testVariant } from '../helpers/vm.js';

/**
 * The study's stack under libvirt: libvirt 11.3 running QEMU 10 (the domain's <emulator>, from
 * KVMIO_QEMU), a q35 domain, one boot: aio native and io_uring with 0, 1 and 2 iothreads on one
 * virtio-blk disk (<driver><iothreads>), and a virtio-scsi controller over 2 iothreads, each switched
 * live, verified live (libvirt's XML and QEMU's own iothread-vq-mapping) and measured with fio.
 * The disk lives in /var/tmp: libvirt's QEMU cannot enter mkdtemp's 0700 dirs.
 */

const virsh = new Virsh(LIBVIRT_URI);
const name = `kvmio-e2e-lv10-${process.pid}`;
const diskPath = `/var/tmp/kvmio-e2e-lv10-${process.pid}.raw`;
const blk = (aio: Variant['aio'], iothreads: number) => testVariant({ aio, iothreads, queues: 2 });
const variants = [
  ...(['native', 'io_uring'] as const).flatMap((aio) => [0, 1, 2].map((n) => blk(aio, n))),
  testVariant({ aio: 'native', iothreads: 2, queues: 2, bus: 'virtio-scsi' }),
];
const study = libvirtTestStudy('e2e-libvirt-qemu10', diskPath, { guest: { vcpus: 2 }, variants });
const domain = libvirtVmForFile({
  study,
  variant: variants[0]!,
  name,
  qemu: qemu10,
  // scripts/test-stack.sh makes QEMU 10's prefix whole (every module of its own build) so that
  // libvirt's probe of it works; where it still fails, the tests fail with libvirt's own words.
  beforeStart: () => {
    const problem = emulatorProblem(qemu10());
    if (problem) throw new Error(problem);
  },
});

test('libvirt 11.3 runs QEMU 10 as the emulator of a q35 domain, with both vq mappings', async () => {
  const stack = domain.stack();
  assert.match(stack.libvirt, /^11\.([3-9]|\d\d)\./);
  assert.match(stack.qemu, /^10\./);
  assert.equal(stack.emulator, qemu10());
  assert.ok(stack.iothreadVqMapping && stack.scsiIothreadVqMapping);
  const xml = await virsh.run(['dumpxml', name]);
  assert.match(xml, /<type arch='x86_64' machine='pc-q35-10\.0'>hvm<\/type>/);
  assert.ok(xml.includes(`<emulator>${qemu10()}</emulator>`));
});

for (const variant of variants) {
  test(`${variant.id} under libvirt: switched live, verified live, fio runs${variant.iothreads === 2 ? ', both iothreads work' : ''}`, async () => {
    const vm = domain.vm();
    if (vm.variant.id !== variant.id) await vm.switchVariant(variant); // verifies (throws on a mismatch)
    const threads = await virsh.monitor<Array<{ id: string; 'thread-id': number }>>(name, 'query-iothreads');
    assert.equal(threads.length, variant.iothreads);
    const before = threads.map((t) => threadCpuNs(vm.qemuPid(), t['thread-id']));
    if (variant.iothreads === 2) {
      const xml = await virsh.run(['dumpxml', name]);
      const element =
        variant.bus === 'virtio-blk'
          ? /<disk\b[\s\S]*?<\/disk>/.exec(xml)?.[0]
          : /<controller type='scsi'[\s\S]*?<\/controller>/.exec(xml)?.[0];
      assert.match(
        element ?? '',
        /<iothreads>\s*<iothread id='1'>\s*<queue id='0'\/>\s*<\/iothread>\s*<iothread id='2'>\s*<queue id='1'\/>/,
      );
      // QEMU's own view of the device libvirt made: which iothread serves which virtqueue.
      const alias = /<alias name='([^']+)'\/>/.exec(element ?? '')?.[1];
      const mapping = await virsh.monitor(name, 'qom-get', {
        path: `/machine/peripheral/${alias}`,
        property: 'iothread-vq-mapping',
      });
      assert.deepEqual(mapping, [
        { iothread: 'iothread1', vqs: [0] },
        { iothread: 'iothread2', vqs: [1] },
      ]);
    }
    assert.ok((await readOnTwoQueues(vm, 'lv10-randread')) > 0);
    if (variant.iothreads === 2) {
      // numjobs 2 on 2 vCPUs: the guest submits on both queues, so both iothreads run.
      threads.forEach((t, i) => {
        const used = threadCpuNs(vm.qemuPid(), t['thread-id']) - before[i]!;
        assert.ok(used > 0, `${t.id} ran ${used} ns during fio`);
      });
    }
  });
}
