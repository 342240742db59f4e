import { execFileSync } from 'node:child_process';
import { closeSync, ftruncateSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Accel } from '../../src/qemu/argv.js';
import { type QemuVm, startQemuVm } from '../../src/qemu/vm.js';
import type { Pinning, Study, Variant } from '../../src/study/types.js';
import { makeVariant } from '../../src/study/variants.js';

/**
 * Shared by e2e tests that need a running guest: boots the embedded guest under TCG (or
 * $KVMIO_TEST_ACCEL) with a small sparse test disk, and cleans everything up afterwards.
 */

export function testAccel(): Accel {
  return process.env.KVMIO_TEST_ACCEL === 'kvm' ? 'kvm' : 'tcg';
}

/** A variant with readable defaults (blk, threads, no iothread, 4k, 1 queue, cache none). */
/** A variant for tests: the given knobs, the rest at their defaults. */
export const testVariant = makeVariant;

export type TestStudy = Pick<Study, 'guest' | 'disk' | 'pinning' | 'source'>;

/**
 * A sparse raw file in a fresh temporary directory (removed by the returned cleanup); with `count` > 1
 * also the sibling files multi-disk variants use (disk.raw.1, disk.raw.2, …).
 */
export function makeTestDisk(sizeBytes = 256 * 1024 * 1024, count = 1): { path: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'kvmio-test-disk-'));
  const path = join(dir, 'disk.raw');
  for (let i = 0; i < count; i++) {
    const fd = openSync(i === 0 ? path : `${path}.${i}`, 'w');
    ftruncateSync(fd, sizeBytes);
    closeSync(fd);
  }
  return { path, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export function testStudy(diskPath: string, opts: { pinning?: Pinning; memoryMiB?: number } = {}): TestStudy {
  return {
    source: 'test',
    guest: { vcpus: 2, memoryBytes: (opts.memoryMiB ?? 512) * 1024 * 1024, count: 1 },
    disk: { path: diskPath, sizeBytes: 256 * 1024 * 1024 },
    pinning: opts.pinning,
  };
}

export interface TestGuest {
  vm: QemuVm;
  study: TestStudy;
  /** Stops the VM and removes the disk; safe to call twice. */
  dispose(): Promise<void>;
}

/** Boots the embedded guest (built first if needed) with `variant` on a fresh 256 MiB sparse disk. */
export async function bootTestGuest(
  opts: { variant?: Variant; pinning?: Pinning; memoryMiB?: number; name?: string } = {},
): Promise<TestGuest> {
  const disk = makeTestDisk();
  const study = testStudy(disk.path, opts);
  try {
    const vm = await startQemuVm({
      study,
      variant: opts.variant ?? testVariant(),
      accel: testAccel(),
      name: opts.name,
    });
    return {
      vm,
      study,
      dispose: async () => {
        await vm.stop();
        disk.remove();
      },
    };
  } catch (err) {
    disk.remove();
    throw err;
  }
}

/** PIDs of the processes `pgrep` finds with `args` (none when it finds none). */
export function pgrep(args: string[]): number[] {
  try {
    return execFileSync('pgrep', args, { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number);
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

/**
 * PIDs of QEMU processes started by this test process (tests assert none is left behind). Limited
 * to our own children so that QEMUs of other test files or users running at the same time do not
 * count.
 */
export function qemuPids(parent = process.pid): number[] {
  return pgrep(['-P', String(parent), '-f', 'qemu-system']);
}
