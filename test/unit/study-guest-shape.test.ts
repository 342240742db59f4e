import assert from 'node:assert/strict';
import { test } from 'node:test';
import { domainXml } from '../../src/libvirt/xml.js';
import { qemuArgv } from '../../src/qemu/argv.js';
import { onlineCpus } from '../../src/study/cpuset.js';
import { fitGuestToHost, type GuestShape } from '../../src/study/guest-shape.js';
import { loadPreset, parseStudy } from '../../src/study/load.js';
import type { Study } from '../../src/study/types.js';
import { ConfigError } from '../../src/util/errors.js';
import { testStudy, testVariant } from '../helpers/vm.js';

const GIB = 1024 ** 3;
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** The study's guest (kvm-storage-io-modes-study.txt, "Test setup - VM definition"). */
const STUDY_SHAPE: GuestShape = {
  vcpus: 8,
  memoryBytes: 8 * GIB,
  count: 1,
  pinning: { vcpus: '0-7', emulator: '15', iothreads: '14' },
};

test("the study's host (16 CPUs, 128 GiB) keeps the study's shape, and says so for each part", () => {
  const fit = fitGuestToHost(STUDY_SHAPE, { cpus: range(16), memoryBytes: 128 * GIB });
  assert.deepEqual(
    { vcpus: fit.vcpus, memoryBytes: fit.memoryBytes, pinning: fit.pinning },
    { vcpus: 8, memoryBytes: 8 * GIB, pinning: STUDY_SHAPE.pinning },
  );
  assert.equal(fit.notes.length, 3);
  assert.match(fit.notes[0]!, /^guest\.vcpus: 8 kept/);
  assert.match(fit.notes[1]!, /^pinning: kept as given/);
  assert.match(fit.notes[2]!, /^guest\.memory: 8\.0 GiB kept/);
});

test('a 2-CPU host: 2 vCPUs, pinning dropped (no CPUs of their own for emulator and iothreads), memory kept', () => {
  const fit = fitGuestToHost(STUDY_SHAPE, { cpus: [0, 1], memoryBytes: 24 * GIB });
  assert.equal(fit.vcpus, 2);
  assert.equal(fit.pinning, undefined);
  assert.equal(fit.memoryBytes, 8 * GIB);
  assert.match(fit.notes[0]!, /^guest\.vcpus: 8 → 2 \(this host has 2 CPU/);
  assert.match(
    fit.notes[1]!,
    /^pinning: dropped \(vcpus 0-7, iothreads 14, emulator 15 names CPUs this host lacks/,
  );
});

test("a 10-CPU host keeps 8 vCPUs and the study's layout on its own CPUs: iothreads then emulator last", () => {
  const fit = fitGuestToHost(STUDY_SHAPE, { cpus: range(10), memoryBytes: 64 * GIB });
  assert.equal(fit.vcpus, 8);
  assert.deepEqual(fit.pinning, { vcpus: '0-7', iothreads: '8', emulator: '9' });
  assert.match(
    fit.notes[1]!,
    /^pinning: vcpus 0-7, iothreads 14, emulator 15 → vcpus 0-7, iothreads 8, emulator 9/,
  );
});

test('a 4-CPU host: fewer vCPUs so that the emulator and the iothreads keep CPUs of their own', () => {
  const fit = fitGuestToHost(STUDY_SHAPE, { cpus: range(4), memoryBytes: 16 * GIB });
  assert.equal(fit.vcpus, 2);
  assert.deepEqual(fit.pinning, { vcpus: '0-1', iothreads: '2', emulator: '3' });
  assert.match(fit.notes[0]!, /8 → 2 .*some kept for the emulator and iothreads/);
  assert.equal(fit.memoryBytes, 8 * GIB);
});

test('a 3-CPU host: one vCPU beside emulator and iothreads is too few, so no pinning and 3 vCPUs', () => {
  const fit = fitGuestToHost(STUDY_SHAPE, { cpus: range(3), memoryBytes: 16 * GIB });
  assert.equal(fit.vcpus, 3);
  assert.equal(fit.pinning, undefined);
});

test('the layout follows the online CPUs, not their numbers', () => {
  const fit = fitGuestToHost(STUDY_SHAPE, { cpus: [6, 0, 2, 4, 8, 10], memoryBytes: 16 * GIB });
  assert.deepEqual(fit.pinning, { vcpus: '0,2,4,6', iothreads: '8', emulator: '10' });
  assert.equal(fit.vcpus, 4);
});

test('without pinning only the vCPU count is capped', () => {
  const fit = fitGuestToHost(
    { vcpus: 8, memoryBytes: GIB, count: 1 },
    { cpus: range(4), memoryBytes: 8 * GIB },
  );
  assert.equal(fit.vcpus, 4);
  assert.equal(fit.pinning, undefined);
  assert.equal(fit.notes[1], 'pinning: none asked');
});

test('memory: all guests together at most half the host, in 2 MiB steps, never below the guest minimum', () => {
  const host = { cpus: range(16), memoryBytes: 8 * GIB };
  assert.equal(fitGuestToHost(STUDY_SHAPE, host).memoryBytes, 4 * GIB);
  const two = fitGuestToHost({ ...STUDY_SHAPE, count: 2 }, host);
  assert.equal(two.memoryBytes, 2 * GIB);
  assert.match(
    two.notes[2]!,
    /^guest\.memory: 8\.0 GiB → 2\.0 GiB \(2 guests at most 50% of this host's 8\.0 GiB\)/,
  );
  const odd = fitGuestToHost(STUDY_SHAPE, { cpus: range(16), memoryBytes: 3 * GIB + 3 * 1024 ** 2 });
  assert.equal(odd.memoryBytes % (2 * 1024 ** 2), 0);
  assert.ok(odd.memoryBytes <= (3 * GIB + 3 * 1024 ** 2) / 2);
  const tiny = fitGuestToHost(STUDY_SHAPE, { cpus: range(16), memoryBytes: 768 * 1024 ** 2 });
  assert.equal(tiny.memoryBytes, 512 * 1024 ** 2);
  assert.match(tiny.notes[2]!, /not below the guest's minimum of 512 MiB/);
});

test('the seed preset is the study guest fitted to this host: plan notes say how, one line each', () => {
  const seed = loadPreset('seed');
  const cpus = onlineCpus()!;
  assert.equal(seed.guest.machine, 'q35');
  assert.ok(seed.guest.vcpus <= Math.min(8, cpus.length));
  assert.ok(seed.guest.memoryBytes <= 8 * GIB);
  const notes = (seed.notes ?? []).filter((n) => n.startsWith('fit_to_host: '));
  assert.deepEqual(
    notes.map((n) => n.split(':')[1]?.trim()),
    ['guest.vcpus', 'pinning', 'guest.memory'],
  );
  if (cpus.length >= 16) assert.deepEqual(seed.pinning, STUDY_SHAPE.pinning);
  for (const list of Object.values(seed.pinning ?? {}))
    for (const cpu of list.split(/[,-]/))
      assert.ok(cpus.includes(Number(cpu)), `pinned CPU ${cpu} is online`);
});

const studyText = (extra: string) =>
  `workloads: [ { kind: fio, name: r, rw: randread, bs: 4k, iodepth: 1, runtime: 2s } ]\n${extra}`;

test('without fit_to_host a shape that does not fit is refused as before; with it, fitted', () => {
  const missing = `pinning: { vcpus: "0", emulator: "4095" }\n`;
  assert.throws(
    () => parseStudy(studyText(`guest: { vcpus: 1 }\n${missing}`), 'shape.yaml'),
    (e: Error) =>
      e instanceof ConfigError &&
      /pinning\.emulator.*names CPU 4095, which this host does not have/.test(e.message),
  );
  const fitted = parseStudy(studyText(`guest: { vcpus: 1 }\n${missing}fit_to_host: true\n`), 'shape.yaml');
  assert.ok(fitted.notes?.some((n) => n.startsWith('fit_to_host: pinning: ')));
  for (const list of Object.values(fitted.pinning ?? {}))
    assert.ok(!list.split(/[,-]/).includes('4095'), 'CPU 4095 is pinned no more');
});

test('fit_to_host: refused for remote VMs and for a user domain; guest.machine: q35 or pc only', () => {
  assert.throws(
    () =>
      parseStudy(
        studyText('backend: libvirt\nlibvirt: { uri: "qemu+ssh://root@b/system" }\nfit_to_host: true\n'),
        'shape.yaml',
      ),
    (e: Error) => e instanceof ConfigError && /fit_to_host.*the VMs run elsewhere/.test(e.message),
  );
  assert.throws(
    () => parseStudy(studyText('fit_to_host: yes please\n'), 'shape.yaml'),
    (e: Error) => e instanceof ConfigError && /fit_to_host/.test(e.message),
  );
  assert.throws(
    () => parseStudy(studyText('guest: { machine: virt }\n'), 'shape.yaml'),
    (e: Error) => e instanceof ConfigError && /guest\.machine.*q35.*pc/.test(e.message),
  );
  assert.throws(
    () => parseStudy(studyText('backend: libvirt\nguest: { domain: mine, machine: pc }\n'), 'shape.yaml'),
    (e: Error) =>
      e instanceof ConfigError && /guest\.domain.*own machine type.*remove guest\.machine/.test(e.message),
  );
  assert.throws(
    () =>
      parseStudy(studyText('backend: libvirt\nguest: { domain: mine }\nfit_to_host: true\n'), 'shape.yaml'),
    (e: Error) => e instanceof ConfigError && /fit_to_host.*guest\.domain/.test(e.message),
  );
  assert.equal(parseStudy(studyText(''), 'shape.yaml').guest.machine, 'q35');
  assert.equal(parseStudy(studyText('guest: { machine: pc }\n'), 'shape.yaml').guest.machine, 'pc');
});

/** The values that follow each occurrence of `flag`. */
const values = (argv: string[], flag: string) =>
  argv.flatMap((a, i) => (a === flag ? [argv[i + 1] ?? ''] : []));

function shapedStudy(machine: 'q35' | 'pc'): Study {
  const base = testStudy('/var/tmp/shape.raw');
  return {
    ...base,
    name: 'shape',
    backend: 'qemu',
    libvirt: { uri: 'qemu:///system' },
    guest: { ...base.guest, machine },
    variants: [],
    baseline: false,
    repetitions: 1,
    workloads: [],
    hosts: [],
  };
}

const guest = { kernel: '/k', initrd: '/i', cmdline: 'console=ttyS0' };

test('machine q35 on both backends: q35 with root ports for the test disk', () => {
  const study = shapedStudy('q35');
  const variant = testVariant({ bus: 'virtio-scsi' });
  const argv = qemuArgv({ name: 'v', study, variant, accel: 'tcg', runtimeDir: '/run/x' });
  assert.deepEqual(values(argv, '-machine'), ['q35,memory-backend=kvmio-mem']);
  assert.ok(values(argv, '-device').some((d) => d.startsWith('pcie-root-port,')));
  assert.ok(values(argv, '-device').some((d) => /^virtio-scsi-pci,.*bus=kvmio-rp-test/.test(d)));
  const xml = domainXml({ study, variant, guest, accel: 'tcg', name: 'v' });
  assert.match(xml, /<type arch='x86_64' machine='q35'>hvm<\/type>/);
  assert.match(xml, /model='pcie-root-port'/);
});

test('machine pc (i440fx) on both backends: no PCIe root ports, the disk on the root bus', () => {
  const study = shapedStudy('pc');
  const variant = testVariant({ aio: 'native', iothreads: 1 });
  const argv = qemuArgv({ name: 'v', study, variant, accel: 'tcg', runtimeDir: '/run/x' });
  assert.deepEqual(values(argv, '-machine'), ['pc,memory-backend=kvmio-mem']);
  assert.ok(!values(argv, '-device').some((d) => d.startsWith('pcie-root-port,')));
  const disk = values(argv, '-device').find((d) => d.startsWith('virtio-blk-pci,'));
  assert.ok(disk && !disk.includes('bus='), disk);
  const xml = domainXml({ study, variant, guest, accel: 'tcg', name: 'v' });
  assert.match(xml, /<type arch='x86_64' machine='pc'>hvm<\/type>/);
  assert.doesNotMatch(xml, /pcie-root/);
});

test('one CPU rule on both backends: host-passthrough (-cpu host) under KVM, maximum (-cpu max) under TCG', () => {
  const study = shapedStudy('q35');
  const variant = testVariant();
  for (const [accel, cpu, mode] of [
    ['kvm', 'host', 'host-passthrough'],
    ['tcg', 'max', 'maximum'],
  ] as const) {
    const argv = qemuArgv({ name: 'v', study, variant, accel, runtimeDir: '/run/x' });
    assert.deepEqual(values(argv, '-cpu'), [cpu]);
    assert.match(domainXml({ study, variant, guest, accel, name: 'v' }), new RegExp(`<cpu mode='${mode}'/>`));
  }
});
