import { uefiDirectTests } from '../helpers/uefi.js';

/**
 * guest.firmware uefi on the direct backend with the host's QEMU (7.2 on Debian 12): OVMF boots the
 * embedded guest's kernel from fw_cfg; checked live from QEMU's side and the guest's.
 * test/e2e/stack-uefi-direct.test.ts runs the same on QEMU 10.
 */
uefiDirectTests('host-qemu');
