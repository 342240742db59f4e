import assert from 'node:assert/strict';
import { test } from 'node:test';
import { guestKernelPanic } from '../../src/guest/boot-retry.js';
import { embeddedGuestImage, startQemuVm } from '../../src/qemu/vm.js';
import { makeTestDisk, pointFailureOf, qemuPids, testAccel, testStudy, testVariant } from '../helpers/vm.js';

/**
 * A guest kernel that panics while it boots: under TCG kvmio boots it once more, loudly (QEMU's
 * multi-threaded TCG has a rare race that kills a guest at boot), and a kernel that panics again is
 * the failure, with the panic in its console. The panic here is a real one: the guest kernel is told
 * to run an init its initramfs does not have, and has no root device to fall back to.
 */

test('a guest kernel panicking at boot is booted once more under TCG, and a second panic is the failure', {
  timeout: 600_000,
}, async () => {
  const accel = testAccel();
  const disk = makeTestDisk();
  const lines: string[] = [];
  const image = await embeddedGuestImage();
  try {
    const failure = await pointFailureOf(
      startQemuVm({
        study: { ...testStudy(disk.path), guest: { ...testStudy(disk.path).guest, vcpus: 1 } },
        variant: testVariant(),
        accel,
        image: { ...image, cmdline: `${image.cmdline} rdinit=/kvmio-no-such-init` },
        log: (line) => lines.push(line),
      }),
      'a guest whose kernel panics',
    );
    assert.equal(
      guestKernelPanic(failure),
      'Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)',
    );
    assert.match(
      failure.message,
      /exited with code 0 after the guest kernel panicked \("Kernel panic - not syncing: VFS/,
    );
    const starts = lines.filter((l) => / starting blk-threads-io0-4k$/.test(l));
    const retries = lines.filter((l) =>
      /WARNING: .*the guest kernel panicked while booting under TCG .*booting it once more/.test(l),
    );
    assert.equal(starts.length, accel === 'tcg' ? 2 : 1, lines.join('\n'));
    assert.equal(retries.length, accel === 'tcg' ? 1 : 0, lines.join('\n'));
  } finally {
    disk.remove();
  }
  assert.deepEqual(qemuPids(), [], 'no QEMU left');
});
