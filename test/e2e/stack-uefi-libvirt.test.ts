import assert from 'node:assert/strict';
import { closeSync, existsSync, ftruncateSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ensureGuest } from '../../src/guest/build.js';
import { libvirtStack } from '../../src/libvirt/stack.js';
import { nvramPath } from '../../src/libvirt/stage.js';
import { Virsh } from '../../src/libvirt/virsh.js';
import { type LibvirtVm, startLibvirtVm } from '../../src/libvirt/vm.js';
import type { Ovmf } from '../../src/qemu/firmware.js';
import type { Study } from '../../src/study/types.js';
import { runtimeDir } from '../../src/util/paths.js';
import { qemu10, shortRandomRead } from '../helpers/stack.js';
import { hostOvmf, type PflashInfo, pflash } from '../helpers/uefi.js';
import { testVariant } from '../helpers/vm.js';

/**
 * guest.firmware uefi under libvirt 11.3 with QEMU 10 as the domain's <emulator>: an explicit OVMF
 * loader and the domain's own variable store in kvmio's pool (made by libvirt from the template,
 * removed by kvmio with the domain), checked live from QEMU's side (pflash over libvirt's monitor)
 * and the guest's (/sys/firmware/efi), with a short fio run. 1 vCPU, 768 MiB, one disk in /var/tmp
 * (libvirt's QEMU cannot enter mkdtemp's 0700 dirs).
 */

const URI = 'qemu:///system';
const virsh = new Virsh(URI);
const name = `kvmio-e2e-lvuefi-${process.pid}`;
const diskPath = `/var/tmp/kvmio-e2e-lvuefi-${process.pid}.raw`;
const variant = testVariant({ aio: 'native', iothreads: 1 });
const study: Study = {
  name: 'e2e-libvirt-uefi',
  source: 'test',
  backend: 'libvirt',
  libvirt: { uri: URI },
  guest: { vcpus: 1, memoryBytes: 768 * 1024 * 1024, count: 1, firmware: 'uefi' },
  disk: { path: diskPath, sizeBytes: 64 * 1024 * 1024 },
  variants: [variant],
  baseline: false,
  repetitions: 1,
  workloads: [],
  hosts: [],
};
let vm: LibvirtVm | undefined;
let ovmf: Ovmf;
const savedQemu = process.env.KVMIO_QEMU;

before(async () => {
  process.env.KVMIO_QEMU = qemu10();
  ovmf = await hostOvmf();
  const stack = await libvirtStack(virsh);
  const fd = openSync(diskPath, 'w');
  ftruncateSync(fd, 64 * 1024 * 1024);
  closeSync(fd);
  vm = await startLibvirtVm({
    study,
    variant,
    image: await ensureGuest(),
    accel: 'tcg',
    uri: URI,
    name,
    stack,
  });
});

after(async () => {
  await vm?.stop();
  if (savedQemu === undefined) delete process.env.KVMIO_QEMU;
  else process.env.KVMIO_QEMU = savedQemu;
  rmSync(diskPath, { force: true });
  rmSync(`/var/log/libvirt/qemu/${name}-console.log`, { force: true });
  const left = (await virsh.run(['list', '--all', '--name'])).split('\n').map((s) => s.trim());
  assert.ok(!left.includes(name), `domain ${name} is still there`);
  assert.equal(existsSync(nvramPath(name)), false, `the variable store ${nvramPath(name)} is removed`);
});

test('libvirt runs QEMU 10 with OVMF as the read-only pflash loader and the domain store in kvmio pool', async () => {
  if (!vm) throw new Error('the domain did not start');
  const xml = await virsh.run(['dumpxml', name]);
  assert.ok(xml.includes(`<emulator>${qemu10()}</emulator>`));
  assert.match(xml, /<type arch='x86_64' machine='pc-q35-[\d.]+'>hvm<\/type>/);
  assert.match(xml, new RegExp(`<loader readonly='yes' type='pflash'[^>]*>${ovmf.code}</loader>`));
  assert.match(xml, new RegExp(`<nvram template='${ovmf.varsTemplate}'[^>]*>${nvramPath(name)}</nvram>`));
  assert.ok(existsSync(nvramPath(name)), 'libvirt made the store from the template');
  const blocks = await virsh.monitor<PflashInfo[]>(name, 'query-block');
  assert.deepEqual(pflash(blocks, 0), { ...pflash(blocks, 0), file: ovmf.code, ro: true });
  assert.deepEqual(pflash(blocks, 1), { ...pflash(blocks, 1), file: nvramPath(name), ro: false });
});

test('the guest runs under UEFI, and the point keeps what was verified', async () => {
  if (!vm) throw new Error('the domain did not start');
  const efi = await vm.exec(['test', '-d', '/sys/firmware/efi'], { timeoutMs: 30_000 });
  assert.equal(efi.exitCode, 0, 'no /sys/firmware/efi in the guest');
  assert.match(vm.firmware ?? '', /^uefi: pflash flash0 .* read-only.*\/sys\/firmware\/efi in the guest/);
});

test('fio runs on the test disk of the uefi domain', async () => {
  if (!vm) throw new Error('the domain did not start');
  assert.ok((await shortRandomRead(vm, 'lv-uefi')) > 0);
});

test('virsh define --validate accepts the domain XML kvmio made', async () => {
  if (!vm) throw new Error('the domain did not start');
  const other = `${name}-def`;
  const file = join(runtimeDir(), `${other}.xml`);
  // Every use of the name, the variable store's path included: the running domain's store stays its own.
  writeFileSync(file, vm.domainXml.replaceAll(name, other));
  try {
    await virsh.run(['define', '--validate', file]);
  } finally {
    // --nvram: libvirt refuses to undefine a domain with a store otherwise (none exists: never started).
    await virsh.tryRun(['undefine', '--nvram', other]);
    rmSync(file, { force: true });
  }
});
