import { testDiskSerial, VHOST_USER_BLK_SERIAL } from '../study/disks.js';
import type { Variant } from '../study/types.js';
import { variantDisks, variantPath } from '../study/variants.js';
import { PointFailure } from '../util/errors.js';
import { sleep } from '../util/proc.js';
import type { GuestVm } from './vm.js';

/**
 * Finding the test disks inside the guest, for every backend: by serial through sysfs (the guest has
 * no udev), virtio-blk's `serial` file or a SCSI disk's VPD page 0x80.
 */

type GuestFiles = Pick<GuestVm, 'readFile'>;

/** Serials of the variant's test disks in disk order. */
export function testDiskSerials(variant: Variant): string[] {
  // The storage daemon's vhost-user-blk export has one fixed serial (such a variant has one disk).
  if (variantPath(variant) === 'vhost-user-blk') return [VHOST_USER_BLK_SERIAL];
  return Array.from({ length: variantDisks(variant) }, (_, i) => testDiskSerial(i));
}

/** Guest block devices (vd*, sd*) by serial. */
export async function disksBySerial(guest: GuestFiles): Promise<Map<string, string>> {
  const partitions = (await guest.readFile('/proc/partitions')).toString('utf8');
  const disks = partitions
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[3])
    .filter((n): n is string => !!n && /^(vd[a-z]+|sd[a-z]+)$/.test(n));
  const found = new Map<string, string>();
  for (const disk of disks) {
    const serial = disk.startsWith('vd')
      ? await guest.readFile(`/sys/block/${disk}/serial`).catch(() => undefined)
      : // VPD page 0x80 (unit serial number): 4 header bytes, then the serial.
        (await guest.readFile(`/sys/block/${disk}/device/vpd_pg80`).catch(() => undefined))?.subarray(4);
    if (serial) found.set(serial.toString('latin1').replace(/\0/g, '').trim(), `/dev/${disk}`);
  }
  return found;
}

/**
 * The device nodes of the variant's test disks in disk order, polled until the guest sees them all
 * (a hot-plugged disk takes a moment to appear). Errors of the guest call itself (QEMU gone) are
 * thrown at once rather than polled past.
 */
export async function findTestDisks(
  guest: GuestFiles,
  variant: Variant,
  timeoutMs = 30_000,
): Promise<string[]> {
  const serials = testDiskSerials(variant);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = await disksBySerial(guest);
    const missing = serials.filter((s) => !found.has(s));
    if (missing.length === 0) return serials.map((s) => found.get(s) as string);
    if (Date.now() >= deadline) {
      throw new PointFailure(
        `the guest does not see test disk(s) with serial ${missing.join(', ')} of ${variant.id} after ${Math.round(timeoutMs / 1000)} s`,
      );
    }
    await sleep(250);
  }
}

/**
 * The device nodes of a running guest's test disks, found once per variant: polling a workload's first
 * request then costs one read per disk.
 */
export class TestDiskCache {
  private found: { variant: string; devices: Promise<string[]> } | undefined;

  devices(guest: GuestFiles, variant: Variant): Promise<string[]> {
    if (this.found?.variant !== variant.id) {
      const devices = findTestDisks(guest, variant);
      devices.catch(() => (this.found = undefined));
      this.found = { variant: variant.id, devices };
    }
    return this.found.devices;
  }
}

/** Waits until the guest no longer sees any test disk of `variant` (after an unplug). */
export async function waitTestDisksGone(
  guest: GuestFiles,
  variant: Variant,
  timeoutMs = 30_000,
): Promise<void> {
  const serials = testDiskSerials(variant);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = await disksBySerial(guest);
    const left = serials.filter((s) => found.has(s));
    if (left.length === 0) return;
    if (Date.now() >= deadline)
      throw new PointFailure(
        `the guest still sees test disk(s) ${left.join(', ')} after ${Math.round(timeoutMs / 1000)} s`,
      );
    await sleep(250);
  }
}

/**
 * Read and write requests the guest has completed on its disks `devices` (/dev/vda, …), from
 * /sys/block/NAME/stat: how the host sees a workload's I/O begin where QEMU keeps no block statistics
 * (a vhost-user-blk disk is served by the storage daemon).
 */
export async function guestDiskRequests(guest: GuestFiles, devices: readonly string[]): Promise<number> {
  let total = 0;
  for (const device of devices) {
    const name = device.replace(/^\/dev\//, '');
    if (!/^(vd[a-z]+|sd[a-z]+)$/.test(name)) throw new Error(`not a guest disk: ${device}`);
    const fields = (await guest.readFile(`/sys/block/${name}/stat`)).toString('utf8').trim().split(/\s+/);
    // Field 1: reads completed; field 5: writes completed.
    total += Number(fields[0]) + Number(fields[4]);
  }
  if (!Number.isFinite(total)) throw new Error('unreadable /sys/block/*/stat');
  return total;
}
