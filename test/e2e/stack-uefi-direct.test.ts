import assert from 'node:assert/strict';
import { test } from 'node:test';
import { qemu10 } from '../helpers/stack.js';
import { uefiDirectTests } from '../helpers/uefi.js';

/**
 * guest.firmware uefi on the direct backend with the study's QEMU 10: OVMF (Debian's ovmf package)
 * boots the embedded guest's kernel from fw_cfg; checked live from QEMU's side and the guest's.
 */
const { vm } = uefiDirectTests('qemu10', qemu10);

test('QEMU 10 is what runs', () => {
  assert.equal(vm().capabilities.version.major, 10);
});
