import { QCOW2_DEFAULTS } from './image-schema.js';
import type { DiskSpec, ImageFormat, Study, Variant } from './types.js';
import { variantDisks, variantFormat } from './variants.js';

/**
 * Multi-disk variants: disk 0 is the study's disk.path, disk i (i > 0) the raw file `PATH.i` next to
 * it, each as large as disk.size. Single-disk variants keep using disk.path alone.
 */

export function testDiskPaths(path: string, count: number): string[] {
  return Array.from({ length: Math.max(1, count) }, (_, i) => (i === 0 ? path : `${path}.${i}`));
}

/** The file a disk of this format is: the raw file or device itself, or the qcow2 image beside it. */
export function imagePath(rawPath: string, format: ImageFormat): string {
  return format === 'raw' ? rawPath : `${rawPath}.${format}`;
}

/**
 * What QEMU opens for each test disk of the variant (its format's files), `count` of them (default:
 * the variant's disks; more names the paths a variant does not have).
 */
export function variantImagePaths(
  diskPath: string,
  variant: Pick<Variant, 'disks' | 'format'>,
  count = variantDisks(variant),
): string[] {
  return testDiskPaths(diskPath, count).map((p) => imagePath(p, variantFormat(variant)));
}

/** The most test disks any variant of the study uses (1 without a disks axis). */
export function studyMaxDisks(study: Pick<Study, 'variants'>): number {
  return Math.max(1, ...study.variants.map(variantDisks));
}

/**
 * Every disk file the study's variants need, each as a DiskSpec (for prepare, guard and lock): the
 * raw files first, then the qcow2 images made from them when a variant uses qcow2.
 */
export function studyDiskSpecs(
  study: Pick<Study, 'variants' | 'disk'>,
  disk: DiskSpec = study.disk,
): DiskSpec[] {
  const raw = testDiskPaths(disk.path, studyMaxDisks(study)).map((path) => ({ ...disk, path }));
  const qcow2Disks = Math.max(
    0,
    ...study.variants.filter((v) => variantFormat(v) === 'qcow2').map(variantDisks),
  );
  const images = raw.slice(0, qcow2Disks).map((d) => ({
    path: imagePath(d.path, 'qcow2'),
    sizeBytes: d.sizeBytes,
    qcow2: d.qcow2 ?? QCOW2_DEFAULTS,
    imageOf: d.path,
  }));
  return [...raw, ...images];
}

/** Serial of test disk `index` as the guest sees it: kvmio-test, kvmio-test-1, … (both backends). */
export const TEST_DISK_SERIAL = 'kvmio-test';

/** The serial every vhost-user-blk export of qemu-storage-daemon answers with (not settable). */
export const VHOST_USER_BLK_SERIAL = 'vhost_user_blk';

export function testDiskSerial(index: number): string {
  return index === 0 ? TEST_DISK_SERIAL : `${TEST_DISK_SERIAL}-${index}`;
}
