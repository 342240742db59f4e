import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ensureGuest } from '../../src/guest/build.js';
import { findOvmf, type Ovmf, verifyFirmware } from '../../src/qemu/firmware.js';
import { type QemuVm, startQemuVm } from '../../src/qemu/vm.js';
import { shortRandomRead } from './stack.js';
import { makeTestDisk, qemuPids, testAccel, testStudy, testVariant } from './vm.js';

/** query-block's view of one pflash unit. */
export interface PflashInfo {
  qdev?: string;
  inserted?: { file?: string; ro?: boolean };
}

export function pflash(blocks: PflashInfo[], unit: number): PflashInfo['inserted'] {
  return blocks.find((b) => b.qdev === `/machine/system.flash${unit}`)?.inserted;
}

/** The host's OVMF (Debian's ovmf package, installed by make test); the test fails without it. */
export async function hostOvmf(): Promise<Ovmf> {
  const ovmf = await findOvmf();
  assert.ok(ovmf, 'no OVMF on this host: make test installs the ovmf package (scripts/setup.sh --tests)');
  return ovmf;
}

/**
 * One uefi guest on the direct backend (1 vCPU, 768 MiB: the least a uefi guest boots with, one disk), booted by OVMF from the same
 * -kernel/-initrd as a bios guest: QEMU holds OVMF's code read-only and the VM's own variable store,
 * the guest sees UEFI, fio runs, and the store goes with the VM. `binary`: the QEMU to test
 * (default: the one kvmio finds).
 */
export function uefiDirectTests(label: string, binary?: () => string): { vm: () => QemuVm } {
  const disk = makeTestDisk(64 * 1024 * 1024);
  const variant = testVariant({ aio: 'native', iothreads: 1 });
  const base = testStudy(disk.path, { memoryMiB: 768 });
  const study = {
    ...base,
    guest: { ...base.guest, vcpus: 1, firmware: 'uefi' as const },
    variants: [variant],
  };
  let vm: QemuVm;
  let qemuBefore: number[];

  before(async () => {
    qemuBefore = qemuPids();
    vm = await startQemuVm({
      study,
      variant,
      accel: testAccel(),
      binary: binary?.(),
      name: `kvmio-e2e-uefi-${label}`,
    });
  });

  after(async () => {
    const dir = vm?.dir;
    await vm?.stop();
    disk.remove();
    assert.deepEqual(
      qemuPids().filter((p) => !qemuBefore.includes(p)),
      [],
      'no QEMU left running',
    );
    if (dir)
      assert.equal(existsSync(join(dir, 'OVMF_VARS.fd')), false, 'the VM variable store is removed with it');
  });

  test(`${label}: QEMU holds OVMF's code read-only on pflash0 and the VM's own variable store on pflash1`, async () => {
    const ovmf = await hostOvmf();
    const blocks = await vm.qmp.execute<PflashInfo[]>('query-block');
    assert.deepEqual(pflash(blocks, 0), { ...pflash(blocks, 0), file: ovmf.code, ro: true });
    const store = join(vm.dir, 'OVMF_VARS.fd');
    assert.deepEqual(pflash(blocks, 1), { ...pflash(blocks, 1), file: store, ro: false });
    assert.equal(statSync(store).size, statSync(ovmf.varsTemplate).size);
  });

  test(`${label}: the guest runs under UEFI, booted from the embedded guest's kernel through fw_cfg`, async () => {
    const efi = await vm.exec(['test', '-d', '/sys/firmware/efi'], { timeoutMs: 30_000 });
    assert.equal(efi.exitCode, 0, 'no /sys/firmware/efi in the guest');
    const size = (await vm.readFile('/sys/firmware/efi/fw_platform_size')).toString('utf8').trim();
    assert.equal(size, '64');
    const uname = await vm.exec(['uname', '-r'], { timeoutMs: 30_000 });
    assert.equal(uname.stdout.trim(), (await ensureGuest({ release: study.guest.release })).kernelVersion);
    assert.ok(vm.argv.includes('-kernel'));
    assert.match(vm.firmware ?? '', /^uefi: pflash flash0 .* read-only.*\/sys\/firmware\/efi in the guest/);
  });

  test(`${label}: a study that asked for bios is refused on this VM, never measured under that label`, async () => {
    await assert.rejects(
      verifyFirmware(
        { monitor: (c, a) => vm.qmp.execute(c, a), exec: (argv, o) => vm.exec(argv, o) },
        'bios',
      ),
      (e: Error) => /bios asked, but QEMU has pflash/.test(e.message) && /booted under UEFI/.test(e.message),
    );
  });

  test(`${label}: fio runs on the test disk`, async () => {
    assert.ok((await shortRandomRead(vm, `uefi-${label}`)) > 0);
  });

  return { vm: () => vm };
}
