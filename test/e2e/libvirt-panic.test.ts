import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { guestKernelPanic } from '../../src/guest/boot-retry.js';
import { ensureGuest } from '../../src/guest/build.js';
import { stageGuest } from '../../src/libvirt/stage.js';
import { Virsh } from '../../src/libvirt/virsh.js';
import { startLibvirtVm } from '../../src/libvirt/vm.js';
import { assertDomainsGone, LIBVIRT_URI, libvirtTestStudy, libvirtUnreachable } from '../helpers/libvirt.js';
import { makeSparseFile, pointFailureOf, testVariant } from '../helpers/vm.js';

/**
 * The boot retry under libvirt: a domain whose guest kernel panics at boot (kvmio's kernel with an
 * initramfs that is not one, so it has neither an init nor a root device) is created once more under
 * TCG, and the second panic is the failure, naming the panic from the domain's console. Files live
 * in /var/tmp: libvirt's QEMU cannot enter 0700 directories.
 */

test('a libvirt domain whose guest kernel panics at boot is started once more, and a second panic is the failure', {
  timeout: 600_000,
}, async (t) => {
  const skip = await libvirtUnreachable();
  if (skip) return t.skip(skip);
  const dir = mkdtempSync(`/var/tmp/kvmio-e2e-panic-${process.pid}-`);
  chmodSync(dir, 0o711);
  const name = `kvmio-e2e-panic-${process.pid}`;
  const lines: string[] = [];
  const guest = await ensureGuest();
  try {
    const diskPath = join(dir, 'disk.raw');
    makeSparseFile(diskPath);
    const notAnInitramfs = join(dir, 'initrd');
    writeFileSync(notAnInitramfs, 'not a cpio archive\n'.repeat(64));
    const failure = await pointFailureOf(
      startLibvirtVm({
        study: libvirtTestStudy('e2e-panic', diskPath),
        variant: testVariant(),
        image: { kernel: guest.kernel, initrd: notAnInitramfs, hash: 'not-an-initramfs' },
        accel: 'tcg',
        uri: LIBVIRT_URI,
        name,
        log: (line) => lines.push(line),
      }),
      'a domain whose guest kernel panics',
    );
    assert.match(
      guestKernelPanic(failure) ?? '',
      /^Kernel panic - not syncing: VFS: Unable to mount root fs/,
    );
    assert.match(
      failure.message,
      new RegExp(
        `domain ${name} is .* while booting after the guest kernel panicked \\("Kernel panic - not syncing: VFS`,
      ),
    );
    const retries = lines.filter((l) =>
      /WARNING: boot of blk-threads-io0-4k as .*: the guest kernel panicked while booting under TCG .*booting it once more/.test(
        l,
      ),
    );
    assert.equal(retries.length, 1, lines.join('\n'));
    assert.equal(lines.filter((l) => /^libvirt: .* up in /.test(l)).length, 0);
    await assertDomainsGone(new Virsh(LIBVIRT_URI), [name]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    // Staging the builtin guest again removes the broken one's volumes from kvmio's pool.
    await stageGuest(new Virsh(LIBVIRT_URI), guest);
  }
});
