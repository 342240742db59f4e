import assert from 'node:assert/strict';
import { existsSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ensureGuest } from '../../src/guest/build.js';
import { nvramPath } from '../../src/libvirt/stage.js';
import { Virsh } from '../../src/libvirt/virsh.js';
import type { LibvirtVm } from '../../src/libvirt/vm.js';
import { findOvmf, type Ovmf, verifyFirmware } from '../../src/qemu/firmware.js';
import type { QemuVm } from '../../src/qemu/vm.js';
import { runtimeDir } from '../../src/util/paths.js';
import { LIBVIRT_URI, libvirtTestStudy, libvirtVmForFile } from './libvirt.js';
import { shortRandomRead } from './stack.js';
import { makeTestDisk, qemuVmForFile, testAccel, testStudy, testVariant } from './vm.js';

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
  const theVm = qemuVmForFile(
    () => ({ study, variant, accel: testAccel(), binary: binary?.(), name: `kvmio-e2e-uefi-${label}` }),
    disk,
    (stopped) =>
      assert.equal(
        existsSync(join(stopped.dir, 'OVMF_VARS.fd')),
        false,
        'the VM variable store is removed with it',
      ),
  );

  test(`${label}: QEMU holds OVMF's code read-only on pflash0 and the VM's own variable store on pflash1`, async () => {
    const vm = theVm();
    const ovmf = await hostOvmf();
    const blocks = await vm.qmp.execute<PflashInfo[]>('query-block');
    assert.deepEqual(pflash(blocks, 0), { ...pflash(blocks, 0), file: ovmf.code, ro: true });
    const store = join(vm.dir, 'OVMF_VARS.fd');
    assert.deepEqual(pflash(blocks, 1), { ...pflash(blocks, 1), file: store, ro: false });
    assert.equal(statSync(store).size, statSync(ovmf.varsTemplate).size);
  });

  test(`${label}: the guest runs under UEFI, booted from the embedded guest's kernel through fw_cfg`, async () => {
    const vm = theVm();
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
    const vm = theVm();
    await assert.rejects(
      verifyFirmware(
        { monitor: (c, a) => vm.qmp.execute(c, a), exec: (argv, o) => vm.exec(argv, o) },
        'bios',
      ),
      (e: Error) => /bios asked, but QEMU has pflash/.test(e.message) && /booted under UEFI/.test(e.message),
    );
  });

  test(`${label}: fio runs on the test disk`, async () => {
    assert.ok((await shortRandomRead(theVm(), `uefi-${label}`)) > 0);
  });

  return { vm: theVm };
}

const virsh = new Virsh(LIBVIRT_URI);

/**
 * guest.firmware uefi under libvirt: an explicit OVMF loader and the domain's own variable store in
 * kvmio's pool (made by libvirt from the template, removed by kvmio with the domain), checked live
 * from QEMU's side (pflash over libvirt's monitor) and the guest's (/sys/firmware/efi), with a short
 * fio run and libvirt's own validation of the XML. 1 vCPU, 768 MiB, one disk in /var/tmp (libvirt's
 * QEMU cannot enter mkdtemp's 0700 dirs). `qemu`: the domain's <emulator> (default: the one kvmio
 * finds, as libvirt's default QEMU).
 */
export function uefiLibvirtTests(label: string, qemu?: () => string): { vm: () => LibvirtVm | undefined } {
  const name = `kvmio-e2e-lvuefi-${label}-${process.pid}`;
  const diskPath = `/var/tmp/kvmio-e2e-lvuefi-${label}-${process.pid}.raw`;
  const variant = testVariant({ aio: 'native', iothreads: 1 });
  const study = libvirtTestStudy('e2e-libvirt-uefi', diskPath, {
    guest: { memoryBytes: 768 * 1024 * 1024, firmware: 'uefi' },
    variants: [variant],
  });
  let ovmf: Ovmf;
  const { vm } = libvirtVmForFile({
    study,
    variant,
    name,
    qemu,
    beforeStart: async () => {
      ovmf = await hostOvmf();
    },
    afterStop: () =>
      assert.equal(existsSync(nvramPath(name)), false, `the variable store ${nvramPath(name)} is removed`),
  });

  test(`${label}: libvirt runs OVMF as the read-only pflash loader and the domain store in kvmio's pool`, async () => {
    vm();
    const xml = await virsh.run(['dumpxml', name]);
    if (qemu) assert.ok(xml.includes(`<emulator>${qemu()}</emulator>`));
    assert.match(xml, /<type arch='x86_64' machine='pc-q35-[\d.]+'>hvm<\/type>/);
    assert.match(xml, new RegExp(`<loader readonly='yes' type='pflash'[^>]*>${ovmf.code}</loader>`));
    assert.match(xml, new RegExp(`<nvram template='${ovmf.varsTemplate}'[^>]*>${nvramPath(name)}</nvram>`));
    assert.ok(existsSync(nvramPath(name)), 'libvirt made the store from the template');
    const blocks = await virsh.monitor<PflashInfo[]>(name, 'query-block');
    assert.deepEqual(pflash(blocks, 0), { ...pflash(blocks, 0), file: ovmf.code, ro: true });
    assert.deepEqual(pflash(blocks, 1), { ...pflash(blocks, 1), file: nvramPath(name), ro: false });
  });

  test(`${label}: the guest runs under UEFI, and the point keeps what was verified`, async () => {
    const efi = await vm().exec(['test', '-d', '/sys/firmware/efi'], { timeoutMs: 30_000 });
    assert.equal(efi.exitCode, 0, 'no /sys/firmware/efi in the guest');
    assert.match(vm().firmware ?? '', /^uefi: pflash flash0 .* read-only.*\/sys\/firmware\/efi in the guest/);
  });

  test(`${label}: fio runs on the test disk of the uefi domain`, async () => {
    assert.ok((await shortRandomRead(vm(), `lv-uefi-${label}`)) > 0);
  });

  test(`${label}: virsh define --validate accepts the domain XML kvmio made`, async () => {
    const other = `${name}-def`;
    const file = join(runtimeDir(), `${other}.xml`);
    // Every use of the name, the variable store's path included: the running domain's store stays its own.
    writeFileSync(file, vm().domainXml.replaceAll(name, other));
    try {
      await virsh.run(['define', '--validate', file]);
    } finally {
      // --nvram: libvirt refuses to undefine a domain with a store otherwise (none exists: never started).
      await virsh.tryRun(['undefine', '--nvram', other]);
      rmSync(file, { force: true });
    }
  });
  return { vm };
}
