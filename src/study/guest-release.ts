/** The guest a study may ask for: the study validates these, the guest builder makes them. */

/**
 * The Debian releases the guest can be made from: trixie (kernel 6.12, fio 3.39, PostgreSQL 17, as
 * the study's guest) or bookworm (kernel 6.1, fio 3.33, PostgreSQL 15).
 */
export const GUEST_RELEASES = ['trixie', 'bookworm'] as const;
export type GuestRelease = (typeof GUEST_RELEASES)[number];
/**
 * trixie, the study's guest. Several guests are driven by fio's client/server protocol, which only
 * connects equal versions: the client is the built guest's own fio (src/guest/fio-bundle.ts), not
 * the host's.
 */
export const DEFAULT_GUEST_RELEASE: GuestRelease = 'trixie';

/**
 * Guest RAM below which the guest cannot boot: the ~115 MiB initramfs is unpacked into RAM while its
 * packed copy is still there, and the root filesystem (with /tmp) is RAM too.
 */
export const GUEST_MIN_MEMORY_MIB = 512;

/**
 * The guest's firmware: bios (SeaBIOS, QEMU's default) or uefi (OVMF on q35, as the study's pc-q35
 * UEFI guest). UEFI boots the same kernel and initrd, loaded by the firmware from QEMU's fw_cfg.
 */
export const GUEST_FIRMWARES = ['bios', 'uefi'] as const;
export type GuestFirmware = (typeof GUEST_FIRMWARES)[number];
export const DEFAULT_GUEST_FIRMWARE: GuestFirmware = 'bios';
/**
 * Guest RAM a uefi guest needs: OVMF keeps its own copy of the initramfs (read from fw_cfg) beside the
 * one the kernel's EFI stub loads, so 512 MiB leaves the unpacking without room ("Initramfs unpacking
 * failed: write error", seen on QEMU 10 with OVMF 2022.11); 768 MiB boots.
 */
export const GUEST_MIN_MEMORY_MIB_UEFI = 768;
