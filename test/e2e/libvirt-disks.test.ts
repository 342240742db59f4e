import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { ensureGuest, type GuestImage } from '../../src/guest/build.js';
import { Virsh } from '../../src/libvirt/virsh.js';
import { type LibvirtVm, startLibvirtVm } from '../../src/libvirt/vm.js';
import { testDiskPaths } from '../../src/study/disks.js';
import type { Variant } from '../../src/study/types.js';
import { assertDomainsGone, libvirtTestStudy, LIBVIRT_URI as URI } from '../helpers/libvirt.js';
import { shortRandomReadJob } from '../helpers/stack.js';
import { makeSparseFile } from '../helpers/vm.js';

/**
 * One iothread per disk under libvirt (TCG): a 4-disk 2-iothread virtio-blk domain boots, the guest
 * sees the 4 disks by serial, libvirt and QEMU put disk i on iothread (i mod 2) + 1, and fio runs one
 * job across all of them. Disks live in /var/tmp: libvirt's QEMU cannot enter mkdtemp's 0700 dirs.
 */

const virsh = new Virsh(URI);
const name = `kvmio-e2e-lvd-${process.pid}`;
const paths = testDiskPaths(`/var/tmp/kvmio-e2e-lvd-${process.pid}.raw`, 4);
const variant: Variant = {
  id: 'blk-native-io2-d4-4k',
  aio: 'native',
  iothreads: 2,
  disks: 4,
  bus: 'virtio-blk',
  memory: '4k',
  queues: 1,
  cache: 'none',
};
const study = libvirtTestStudy('e2e-libvirt-disks', paths[0] as string, { variants: [variant] });
let image: GuestImage;
let reachable = false;
let vm: LibvirtVm | undefined;
let scsiVm: LibvirtVm | undefined;

before(async () => {
  reachable = (await virsh.tryRun(['version'])) !== undefined;
  if (!reachable) return;
  image = await ensureGuest();
  for (const p of paths) makeSparseFile(p);
});

after(async () => {
  await vm?.stop();
  await scsiVm?.stop();
  for (const p of paths) rmSync(p, { force: true });
  if (reachable) await assertDomainsGone(virsh, [name, `${name}-scsi`]);
});

test('4 disks over 2 iothreads boot under libvirt; each disk on its iothread; fio across all', async (t) => {
  if (!reachable) return t.skip(`libvirt is not reachable at ${URI} (run scripts/services.sh)`);
  vm = await startLibvirtVm({ study, variant, image, accel: 'tcg', uri: URI, name });
  const disks = await vm.testDisks();
  assert.equal(disks.length, 4);
  assert.equal(new Set(disks).size, 4);
  assert.equal(disks[0], await vm.testDisk());

  const live = await virsh.run(['dumpxml', name]);
  const perDisk = [...live.matchAll(/<disk\b[\s\S]*?<\/disk>/g)].map((m) => ({
    iothread: /<driver [^>]*iothread='(\d+)'/.exec(m[0])?.[1],
    serial: /<serial>([^<]+)<\/serial>/.exec(m[0])?.[1],
    alias: /<alias name='([^']+)'\/>/.exec(m[0])?.[1],
  }));
  assert.deepEqual(
    perDisk.map((d) => [d.serial, d.iothread]),
    [
      ['kvmio-test', '1'],
      ['kvmio-test-1', '2'],
      ['kvmio-test-2', '1'],
      ['kvmio-test-3', '2'],
    ],
  );
  for (const [i, d] of perDisk.entries()) {
    const inQemu = await virsh.monitor<string>(name, 'qom-get', {
      path: `/machine/peripheral/${d.alias}`,
      property: 'iothread',
    });
    assert.equal(inQemu, `/objects/iothread${(i % 2) + 1}`, d.serial);
  }

  const { job, result } = await shortRandomReadJob(vm, 'lv-disks', { deadlineMs: 180_000 });
  assert.ok(job.read.io_bytes > 0);
  assert.ok(
    (JSON.parse(result.artifacts?.argv ?? '[]') as string[]).includes(`--filename=${disks.join(':')}`),
  );
});

test('virtio-scsi, 2 disks over 2 iothreads: a controller per disk, verified live; multi-disk variants reboot', async (t) => {
  if (!reachable) return t.skip(`libvirt is not reachable at ${URI} (run scripts/services.sh)`);
  await vm?.stop();
  const scsi: Variant = {
    ...variant,
    id: 'scsi-io_uring-io2-d2-4k',
    bus: 'virtio-scsi',
    aio: 'io_uring',
    disks: 2,
  };
  // startLibvirtVm verifies every disk and controller in the live XML and in QEMU before returning.
  scsiVm = await startLibvirtVm({
    study,
    variant: scsi,
    image,
    accel: 'tcg',
    uri: URI,
    name: `${name}-scsi`,
  });
  const disks = await scsiVm.testDisks();
  assert.equal(disks.length, 2);
  assert.ok(
    disks.every((d) => /^\/dev\/sd[a-z]$/.test(d)),
    disks.join(' '),
  );
  const live = await virsh.run(['dumpxml', `${name}-scsi`]);
  const controllers = [...live.matchAll(/<controller type='scsi' index='(\d)'[\s\S]*?iothread='(\d)'/g)].map(
    (m) => [m[1], m[2]],
  );
  assert.deepEqual(controllers, [
    ['0', '1'],
    ['1', '2'],
  ]);
  assert.equal(
    scsiVm.canSwitchLive({ ...scsi, disks: undefined, iothreads: 1, id: 'scsi-io_uring-io1-4k' }),
    false,
  );
});
