import type { DiskSpec, Study } from './types.js';
import { variantDisks } from './variants.js';

/**
 * Multi-disk variants: disk 0 is the study's disk.path, disk i (i > 0) the raw file `PATH.i` next to
 * it, each as large as disk.size. Single-disk variants keep using disk.path alone.
 */

export function testDiskPaths(path: string, count: number): string[] {
  return Array.from({ length: Math.max(1, count) }, (_, i) => (i === 0 ? path : `${path}.${i}`));
}

/** The most test disks any variant of the study uses (1 without a disks axis). */
export function studyMaxDisks(study: Pick<Study, 'variants'>): number {
  return Math.max(1, ...study.variants.map(variantDisks));
}

/** Every disk file the study's variants need, each as a DiskSpec (for prepare, guard and lock). */
export function studyDiskSpecs(
  study: Pick<Study, 'variants' | 'disk'>,
  disk: DiskSpec = study.disk,
): DiskSpec[] {
  return testDiskPaths(disk.path, studyMaxDisks(study)).map((path) => ({ ...disk, path }));
}

/** Serial of test disk `index` as the guest sees it: kvmio-test, kvmio-test-1, … (both backends). */
export const TEST_DISK_SERIAL = 'kvmio-test';

export function testDiskSerial(index: number): string {
  return index === 0 ? TEST_DISK_SERIAL : `${TEST_DISK_SERIAL}-${index}`;
}
