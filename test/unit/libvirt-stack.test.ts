import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseVirshVersion, vqMappingAbilities } from '../../src/libvirt/stack.js';

// Recorded from `virsh -c qemu:///system version --daemon` on the test machine (libvirt 11.3.0 from
// bookworm-backports, system QEMU 7.2); without --daemon the last line is missing.
const recorded = `Compiled against library: libvirt 11.3.0
Using library: libvirt 11.3.0
Using API: QEMU 11.3.0
Running hypervisor: QEMU 7.2.22
Running against daemon: 11.3.0
`;

test('the daemon and hypervisor versions come from virsh version --daemon', () => {
  assert.deepEqual(parseVirshVersion(recorded), { daemon: [11, 3, 0], hypervisor: [7, 2, 22] });
});

test('without the daemon line the daemon version is unknown, never the client library', () => {
  const withoutDaemon = recorded.replace(/Running against daemon.*\n/, '');
  assert.deepEqual(parseVirshVersion(withoutDaemon), { daemon: undefined, hypervisor: [7, 2, 22] });
});

test('one disk over several iothreads: virtio-blk from libvirt 10.0 with QEMU 9.0, virtio-scsi from libvirt 11.2 with QEMU 10.0', () => {
  const can = (libvirt: [number, number, number], qemu: [number, number, number]) => {
    const a = vqMappingAbilities(libvirt, qemu);
    return [a.iothreadVqMapping, a.scsiIothreadVqMapping];
  };
  // This machine's system stack (recorded above): libvirt 11.3 with QEMU 7.2 can do neither.
  const recordedVersions = parseVirshVersion(recorded);
  assert.deepEqual(vqMappingAbilities(recordedVersions.daemon, recordedVersions.hypervisor), {
    iothreadVqMapping: false,
    scsiIothreadVqMapping: false,
  });
  assert.deepEqual(can([9, 0, 0], [10, 0, 2]), [false, false]);
  assert.deepEqual(can([10, 0, 0], [9, 0, 0]), [true, false]);
  assert.deepEqual(can([10, 0, 0], [8, 2, 0]), [false, false]);
  assert.deepEqual(can([11, 1, 0], [10, 0, 2]), [true, false]);
  assert.deepEqual(can([11, 2, 0], [9, 2, 0]), [true, false]);
  assert.deepEqual(can([11, 2, 0], [10, 0, 0]), [true, true]);
  assert.deepEqual(can([11, 3, 0], [10, 0, 2]), [true, true]);
  // An unknown libvirt version can do nothing; a probed QEMU answers for itself, not its version.
  assert.deepEqual(vqMappingAbilities(undefined, [10, 0, 2]), {
    iothreadVqMapping: false,
    scsiIothreadVqMapping: false,
  });
  assert.deepEqual(
    vqMappingAbilities([11, 3, 0], [10, 0, 2], { iothreadVqMapping: true, scsiIothreadVqMapping: false }),
    { iothreadVqMapping: true, scsiIothreadVqMapping: false },
  );
});
