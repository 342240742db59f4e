import { uefiLibvirtTests } from '../helpers/uefi.js';

/**
 * guest.firmware uefi on the host's libvirt with its default QEMU (libvirt 9.0 and QEMU 7.2 on
 * Debian 12; phase 2 of make test runs it again on libvirt 11.3). test/e2e/stack-uefi-libvirt.test.ts
 * runs the same with QEMU 10 as the <emulator>.
 */
uefiLibvirtTests('host');
