import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, ftruncateSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import type { Accel } from '../../src/qemu/argv.js';
import { type QemuVm, type StartQemuVmOptions, startQemuVm } from '../../src/qemu/vm.js';
import type { Pinning, Study, Variant } from '../../src/study/types.js';
import { makeVariant } from '../../src/study/variants.js';
import { PointFailure } from '../../src/util/errors.js';

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

/** A sparse file of `sizeBytes` at `path` (made anew): a test disk that costs no space. */
export function makeSparseFile(path: string, sizeBytes = 64 * 1024 * 1024): void {
  const fd = openSync(path, 'w');
  try {
    ftruncateSync(fd, sizeBytes);
  } finally {
    closeSync(fd);
  }
}

/**
 * A sparse raw file in a fresh temporary directory (removed by the returned cleanup); with `count` > 1
 * also the sibling files multi-disk variants use (disk.raw.1, disk.raw.2, …).
 */
export function makeTestDisk(sizeBytes = 256 * 1024 * 1024, count = 1): { path: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'kvmio-test-disk-'));
  const path = join(dir, 'disk.raw');
  for (let i = 0; i < count; i++) makeSparseFile(i === 0 ? path : `${path}.${i}`, sizeBytes);
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

/**
 * One direct-QEMU VM shared by a test file's tests: started in `before` with the options `options()`
 * gives then (a QEMU the stack provides is looked up only when the file runs), stopped in `after`
 * with its disk removed, and no QEMU this process started since is left running. `afterStop` checks
 * what goes with the VM. Returns the VM, for the tests.
 */
export function qemuVmForFile(
  options: () => StartQemuVmOptions,
  disk: { remove: () => void },
  afterStop?: (vm: QemuVm) => void,
): () => QemuVm {
  let vm: QemuVm | undefined;
  let qemuBefore: number[];

  before(async () => {
    qemuBefore = qemuPids();
    vm = await startQemuVm(options());
  });

  after(async () => {
    await vm?.stop();
    disk.remove();
    assert.deepEqual(
      qemuPids().filter((p) => !qemuBefore.includes(p)),
      [],
      'no QEMU left running',
    );
    if (vm) afterStop?.(vm);
  });

  return () => {
    if (!vm) throw new Error('the VM did not start');
    return vm;
  };
}

/** The PointFailure `start` ends in; fails the test when it comes up (`what` says what should not have). */
export async function pointFailureOf(start: Promise<unknown>, what: string): Promise<PointFailure> {
  const failure = await start.then(
    () => assert.fail(`${what} came up`),
    (err: unknown) => err,
  );
  assert.ok(failure instanceof PointFailure, String(failure));
  return failure;
}
