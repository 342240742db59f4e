import { sameGuestTests } from '../helpers/same-guest.js';

/**
 * The same study booted on both backends runs the same guest, on the QEMU kvmio finds (KVMIO_QEMU,
 * else the system's), which libvirt then uses as the domain's <emulator> too.
 */
sameGuestTests();
