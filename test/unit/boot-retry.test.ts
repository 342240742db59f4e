import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { bootRetryingTcgPanic, guestKernelPanic, kernelPanicLine } from '../../src/guest/boot-retry.js';
import { PointFailure } from '../../src/util/errors.js';

/** The boot retry's rule over consoles recorded from real boots (test/fixtures/console/README.md). */

const fixture = (name: string) =>
  readFileSync(fileURLToPath(new URL(`../../../test/fixtures/console/${name}`, import.meta.url)), 'utf8');
const panicked = new PointFailure('QEMU (kvmio-1) exited with code 0 unexpectedly', {
  consoleTail: fixture('rdinit-panic-6.12.txt'),
});
const hung = new PointFailure('the guest agent did not answer within 120 s', {
  consoleTail: '[    2.1] virtio_blk virtio1: [vdb] 131072 512-byte logical blocks\r\n',
});

/** A boot that fails with `failures` in turn, then comes up. */
function boots(...failures: Error[]) {
  let n = 0;
  const boot = async () => {
    const err = failures[n++];
    if (err) throw err;
    return { bootWarning: undefined as string | undefined };
  };
  return { boot, count: () => n };
}

test('the panic line is read from a recorded console, without its carriage return', () => {
  assert.equal(
    kernelPanicLine(fixture('rdinit-panic-6.12.txt')),
    'Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)',
  );
  assert.equal(
    kernelPanicLine(fixture('tcg-int3-panic-6.12.txt')),
    'Kernel panic - not syncing: Fatal exception in interrupt',
  );
  assert.equal(
    kernelPanicLine('---[ end Kernel panic - not syncing: Fatal exception in interrupt ]---'),
    'Kernel panic - not syncing: Fatal exception in interrupt',
  );
  assert.equal(guestKernelPanic(hung), undefined);
  assert.equal(
    guestKernelPanic(new Error(fixture('rdinit-panic-6.12.txt'))),
    undefined,
    'only a point failure',
  );
});

test('under TCG a boot that ended in a guest kernel panic is booted once more, said in the log and on the VM', async () => {
  const lines: string[] = [];
  const b = boots(panicked);
  const vm = await bootRetryingTcgPanic('tcg', 'boot of v1', (l) => lines.push(l), b.boot);
  assert.equal(b.count(), 2);
  assert.equal(lines.length, 1);
  assert.match(
    lines[0] ?? '',
    /^WARNING: boot of v1: the guest kernel panicked while booting under TCG \("Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block\(0,0\)"\); booting it once more$/,
  );
  assert.match(
    vm.bootWarning ?? '',
    /the second boot came up\. The first boot's failure: QEMU \(kvmio-1\) exited with code 0 unexpectedly$/,
  );
});

test('a second panic, a failure without a panic and any failure under KVM are not retried', async () => {
  const twice = boots(panicked, panicked);
  await assert.rejects(bootRetryingTcgPanic('tcg', 'boot', undefined, twice.boot), (e) => e === panicked);
  assert.equal(twice.count(), 2, 'one retry, not more');

  const hang = boots(hung);
  await assert.rejects(bootRetryingTcgPanic('tcg', 'boot', undefined, hang.boot), (e) => e === hung);
  assert.equal(hang.count(), 1);

  const kvm = boots(panicked);
  await assert.rejects(bootRetryingTcgPanic('kvm', 'boot', undefined, kvm.boot), (e) => e === panicked);
  assert.equal(kvm.count(), 1);
});

test('a boot that comes up at once carries no warning', async () => {
  const b = boots();
  const vm = await bootRetryingTcgPanic('tcg', 'boot', undefined, b.boot);
  assert.equal(b.count(), 1);
  assert.equal(vm.bootWarning, undefined);
});
