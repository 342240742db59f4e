import { qemu10 } from '../helpers/stack.js';
import { uefiLibvirtTests } from '../helpers/uefi.js';

/**
 * guest.firmware uefi under libvirt 11.3 with the study's QEMU 10 as the domain's <emulator>;
 * test/e2e/libvirt-uefi.test.ts runs the same on the host's libvirt and its QEMU.
 */
uefiLibvirtTests('qemu10', qemu10);
