import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { after, before } from 'node:test';
import { ensureGuest } from '../../src/guest/build.js';
import { type LibvirtStack, libvirtStack } from '../../src/libvirt/stack.js';
import { Virsh } from '../../src/libvirt/virsh.js';
import { type LibvirtVm, startLibvirtVm } from '../../src/libvirt/vm.js';
import type { GuestSpec, Study, Variant } from '../../src/study/types.js';
import { makeSparseFile } from './vm.js';

/** Shared by e2e tests that boot domains themselves under the host's system libvirt. */

export const LIBVIRT_URI = 'qemu:///system';

/**
 * A libvirt study for tests that start their domains themselves: one 64 MiB disk at `diskPath` (in
 * /var/tmp: libvirt's QEMU cannot enter mkdtemp's 0700 directories), a 1 vCPU 512 MiB guest unless
 * `guest` says otherwise, no workloads; `over` replaces any other field.
 */
export function libvirtTestStudy(
  name: string,
  diskPath: string,
  over: Partial<Omit<Study, 'guest'>> & { guest?: Partial<GuestSpec> } = {},
): Study {
  const { guest, ...rest } = over;
  return {
    name,
    source: 'test',
    backend: 'libvirt',
    libvirt: { uri: LIBVIRT_URI },
    guest: { vcpus: 1, memoryBytes: 512 * 1024 * 1024, count: 1, ...guest },
    disk: { path: diskPath, sizeBytes: 64 * 1024 * 1024 },
    variants: [],
    baseline: false,
    repetitions: 1,
    workloads: [],
    hosts: [],
    ...rest,
  };
}

/**
 * Removes the console logs libvirt keeps for the test's domains, then asserts that libvirt holds none
 * of them any more: kvmio's domains are transient and gone once stopped.
 */
export async function assertDomainsGone(virsh: Virsh, names: string[]): Promise<void> {
  for (const n of names) rmSync(`/var/log/libvirt/qemu/${n}-console.log`, { force: true });
  const left = (await virsh.run(['list', '--all', '--name'])).split('\n').map((s) => s.trim());
  for (const n of names) assert.ok(!left.includes(n), `domain ${n} is still there`);
}

/** Why libvirt tests skip here (libvirtd does not answer at `uri`), or undefined when it answers. */
export async function libvirtUnreachable(uri = LIBVIRT_URI): Promise<string | undefined> {
  if ((await new Virsh(uri).tryRun(['version'])) !== undefined) return undefined;
  return `libvirt is not reachable at ${uri} (run scripts/services.sh)`;
}

/** Sets KVMIO_QEMU (the QEMU kvmio runs, libvirt's <emulator> too); returns what puts the old value back. */
export function setKvmioQemu(path: string): () => void {
  const saved = process.env.KVMIO_QEMU;
  process.env.KVMIO_QEMU = path;
  return () => {
    if (saved === undefined) delete process.env.KVMIO_QEMU;
    else process.env.KVMIO_QEMU = saved;
  };
}

/**
 * Why libvirt cannot run `qemu` as an emulator (its capability probe fails, in libvirt's own words),
 * or undefined when it can: libvirt probes an emulator before it starts a domain on it.
 */
export function emulatorProblem(qemu: string): string | undefined {
  const probe = spawnSync(
    'virsh',
    ['-c', LIBVIRT_URI, 'domcapabilities', '--emulatorbin', qemu, '--virttype', 'qemu'],
    { encoding: 'utf8', timeout: 120_000 },
  );
  if (probe.status === 0) return undefined;
  return `libvirt cannot run ${qemu}: ${(probe.stderr || probe.error?.message || '').trim().replace(/\n/g, '; ')}`;
}

/**
 * One domain shared by a test file's tests, started in `before` by kvmio (TCG) on a fresh sparse file
 * at the study's disk path, with `qemu` as its <emulator> when given (default: libvirt's own). In
 * `after` it is stopped, KVMIO_QEMU is put back, the disk removed, and libvirt holds no such domain
 * any more. `beforeStart` runs first (what the tests need before a boot); `afterStop` checks what goes
 * with the domain.
 */
export function libvirtVmForFile(opts: {
  study: Study;
  variant: Variant;
  name: string;
  qemu?: () => string;
  beforeStart?: () => void | Promise<void>;
  afterStop?: () => void;
}): { vm: () => LibvirtVm; stack: () => LibvirtStack } {
  const virsh = new Virsh(LIBVIRT_URI);
  let vm: LibvirtVm | undefined;
  let stack: LibvirtStack | undefined;
  let restoreQemu = () => {};

  before(async () => {
    await opts.beforeStart?.();
    if (opts.qemu) restoreQemu = setKvmioQemu(opts.qemu());
    stack = await libvirtStack(virsh);
    makeSparseFile(opts.study.disk.path);
    vm = await startLibvirtVm({
      study: opts.study,
      variant: opts.variant,
      image: await ensureGuest(),
      accel: 'tcg',
      uri: LIBVIRT_URI,
      name: opts.name,
      stack,
    });
  });

  after(async () => {
    await vm?.stop();
    restoreQemu();
    rmSync(opts.study.disk.path, { force: true });
    await assertDomainsGone(virsh, [opts.name]);
    opts.afterStop?.();
  });

  return {
    vm: () => {
      if (!vm) throw new Error('the domain did not start');
      return vm;
    },
    stack: () => {
      if (!stack) throw new Error('libvirt did not answer');
      return stack;
    },
  };
}
