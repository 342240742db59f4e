import assert from 'node:assert/strict';
import { test } from 'node:test';
import { testDiskNames } from '../../src/qemu/argv.js';
import type { Variant } from '../../src/study/types.js';
import { UserError } from '../../src/util/errors.js';
import { shortRandomReadJob } from '../helpers/stack.js';
import { makeTestDisk, qemuVmForFile, testAccel, testStudy, testVariant } from '../helpers/vm.js';

/**
 * One iothread per disk (the fallback for QEMU without iothread-vq-mapping), on one real guest: a
 * 4-disk 2-iothread variant boots, each disk sits on the right iothread, a live switch moves to 4
 * iothreads and back to one disk, and fio runs one job across all disks.
 */

const disk = makeTestDisk(64 * 1024 * 1024, 4);
const d4io2 = testVariant({ aio: 'native', iothreads: 2, disks: 4 });
const d4io4 = testVariant({ aio: 'io_uring', iothreads: 4, disks: 4 });
const d1io1 = testVariant({ aio: 'native', iothreads: 1, bus: 'virtio-scsi' });
// variants: the VM is given root ports for the study's most disks, as the engine does.
const study = { ...testStudy(disk.path, { memoryMiB: 512 }), variants: [d4io2, d4io4, d1io1] };
const theVm = qemuVmForFile(
  () => ({ study, variant: d4io2, accel: testAccel(), name: 'kvmio-e2e-disks' }),
  disk,
);

/** The iothread each test disk's device runs in, as QMP reports it ('' = main loop). */
async function iothreadsInQmp(variant: Variant): Promise<string[]> {
  const vm = theVm();
  const out: string[] = [];
  for (let i = 0; i < (variant.disks ?? 1); i++) {
    out.push(
      await vm.qmp.execute<string>('qom-get', {
        path: `/machine/peripheral/${testDiskNames(i).device}`,
        property: 'iothread',
      }),
    );
  }
  return out;
}

test('4 disks over 2 iothreads: the guest sees 4 disks, disk i runs in iothread i mod 2', async () => {
  const vm = theVm();
  const disks = await vm.testDisks();
  assert.equal(disks.length, 4);
  assert.equal(new Set(disks).size, 4);
  assert.ok(
    disks.every((d) => /^\/dev\/vd[a-z]$/.test(d)),
    disks.join(' '),
  );
  assert.equal(disks[0], await vm.testDisk());
  assert.deepEqual(await iothreadsInQmp(d4io2), [
    '/objects/kvmio-iot0',
    '/objects/kvmio-iot1',
    '/objects/kvmio-iot0',
    '/objects/kvmio-iot1',
  ]);
});

test('fio runs one job across all 4 disks', async () => {
  const vm = theVm();
  const { result, job } = await shortRandomReadJob(vm, 'disks-randread');
  const argv = JSON.parse(result.artifacts?.argv ?? '[]') as string[];
  assert.ok(argv.includes(`--filename=${(await vm.testDisks()).join(':')}`), argv.join(' '));
  assert.ok(job.read.io_bytes > 0);
  // Every disk got I/O: fio reports per-disk utilisation for each file of the job.
  const util = JSON.parse(result.artifacts?.fio_json ?? '{}').disk_util as Array<{
    name: string;
    read_ios: number;
  }>;
  const names = (await vm.testDisks()).map((d) => d.replace('/dev/', ''));
  for (const name of names) assert.ok((util.find((u) => u.name === name)?.read_ios ?? 0) > 0, name);
});

test('live switch to 4 disks / 4 iothreads, then to one disk; a one-disk multi-iothread variant is refused plainly', async () => {
  const vm = theVm();
  assert.ok(vm.canSwitchLive(d4io4));
  await vm.switchVariant(d4io4); // verifies every disk's nodes, device and iothread through QMP
  assert.equal((await vm.testDisks()).length, 4);
  assert.deepEqual(
    await iothreadsInQmp(d4io4),
    [0, 1, 2, 3].map((i) => `/objects/kvmio-iot${i}`),
  );

  await vm.switchVariant(d1io1);
  assert.deepEqual(await vm.testDisks(), [await vm.testDisk()]);
  assert.match(await vm.testDisk(), /^\/dev\/sd[a-z]$/);

  const oneDiskTwoThreads = testVariant({ aio: 'native', iothreads: 2, queues: 2 });
  if (!vm.capabilities.iothreadVqMapping) {
    await assert.rejects(
      vm.switchVariant(oneDiskTwoThreads),
      (e: Error) =>
        e instanceof UserError &&
        /this QEMU \(\d+\.\d+\.\d+\) cannot spread one virtio-blk disk over 2 iothreads: that needs iothread-vq-mapping \(QEMU 9\.0 or later\)\. Use matrix disks: \[2\]/.test(
          e.message,
        ),
    );
    assert.equal(vm.variant.id, d1io1.id, 'the refused switch left the VM as it was');
  }
  assert.equal(vm.canSwitchLive(testVariant({ disks: 5 })), false, 'no root port for a fifth disk');
});
