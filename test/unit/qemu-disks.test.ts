import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { domainXml } from '../../src/libvirt/xml.js';
import { ASSUMED_CAPABILITIES, checkVariant, qemuArgv, testDiskNames } from '../../src/qemu/argv.js';
import { studyDiskSpecs, testDiskPaths } from '../../src/study/disks.js';
import { loadPreset, parseStudy } from '../../src/study/load.js';
import { planStudy } from '../../src/study/plan.js';
import { variantId } from '../../src/study/variants.js';
import { ConfigError, UserError } from '../../src/util/errors.js';
import { testStudy, testVariant } from '../helpers/vm.js';

/** Multi-disk variants: one iothread per disk where QEMU has no iothread-vq-mapping (QEMU < 9.0). */

const scratch = mkdtempSync(join(tmpdir(), 'kvmio-disks-unit-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

const image = { kernel: '/k/vmlinuz', initrd: '/k/initrd', cmdline: 'console=ttyS0' };

function values(argv: string[], flag: string): string[] {
  return argv.flatMap((a, i) => (a === flag ? [argv[i + 1] ?? ''] : []));
}

function study(yaml: string) {
  return parseStudy(yaml, join(scratch, 'disks.yaml'));
}

const WORKLOAD = 'workloads: [{ kind: fio, name: r, rw: randread, bs: 4k, iodepth: 1, runtime: 2s }]\n';

test('ids gain -d<N> for several disks only; disk paths are disk.path then PATH.i', () => {
  const base = testVariant({ aio: 'native', iothreads: 2, queues: 4 });
  assert.equal(variantId(base), 'blk-native-io2-4k-q4');
  assert.equal(variantId({ ...base, disks: 1 }), 'blk-native-io2-4k-q4');
  assert.equal(variantId({ ...base, disks: 4 }), 'blk-native-io2-d4-4k-q4');
  assert.deepEqual(testDiskPaths('/var/tmp/k.raw', 3), [
    '/var/tmp/k.raw',
    '/var/tmp/k.raw.1',
    '/var/tmp/k.raw.2',
  ]);
  assert.deepEqual(testDiskNames(0).serial, 'kvmio-test');
  assert.deepEqual(testDiskNames(2), {
    serial: 'kvmio-test-2',
    fileNode: 'kvmio-test-file-2',
    formatNode: 'kvmio-test-2',
    device: 'kvmio-test-dev-2',
    scsiLun: 'kvmio-test-lun-2',
    rootPort: 'kvmio-rp-test-2',
    export: 'kvmio-test-export-2',
    chardev: 'kvmio-test-vhost-2',
  });
});

test('matrix disks: an axis with validation, exclude rules and idle-iothread variants left out', () => {
  const s = study(
    `disk: { path: /var/tmp/d.raw, size: 64MiB }\nmatrix: { iothreads: [1, 2, 4], disks: [1, 2] }\nexclude: [{ disks: 1, iothreads: [2, 4] }]\n${WORKLOAD}`,
  );
  assert.deepEqual(
    s.variants.map((v) => v.id),
    ['blk-native-io1-4k', 'blk-native-io1-d2-4k', 'blk-native-io2-d2-4k'],
  );
  assert.equal(
    s.variants[0]!.disks,
    undefined,
    'a single-disk variant leaves disks absent, as a study without the axis does',
  );
  assert.ok(s.notes?.some((n) => /blk-native-io4-d2-4k left out: 4 iothreads for 2 disks/.test(n)));
  assert.deepEqual(
    studyDiskSpecs(s).map((d) => d.path),
    ['/var/tmp/d.raw', '/var/tmp/d.raw.1'],
  );
  assert.throws(
    () => study(`matrix: { disks: [0] }\n${WORKLOAD}`),
    (e: Error) => e instanceof ConfigError && /matrix\.disks\[0\]/.test(e.message) && /1/.test(e.message),
  );
  assert.throws(() => study(`matrix: { disks: [17] }\n${WORKLOAD}`), /16/);
  assert.throws(
    () => study(`disk: { path: /dev/sdz }\nmatrix: { disks: [1, 4] }\n${WORKLOAD}`),
    (e: Error) => e instanceof ConfigError && /disk\.path/.test(e.message) && /block device/.test(e.message),
  );
  assert.throws(
    () => study(`matrix: { iothreads: [4], disks: [2] }\n${WORKLOAD}`),
    /leaves no variant: 4 iothreads for 2 disks/,
  );
});

test('argv: 4 disks over 2 iothreads, disk i on iothread i mod 2, a root port per disk', () => {
  const variant = testVariant({ aio: 'io_uring', iothreads: 2, disks: 4, queues: 2 });
  const argv = qemuArgv({
    name: 'vm1',
    study: testStudy('/var/tmp/disk.raw'),
    variant,
    image,
    accel: 'tcg',
    runtimeDir: '/run/x',
  });
  assert.deepEqual(values(argv, '-object').slice(-2), ['iothread,id=kvmio-iot0', 'iothread,id=kvmio-iot1']);
  const blockdevs = values(argv, '-blockdev').map((b) => JSON.parse(b) as Record<string, unknown>);
  assert.deepEqual(
    blockdevs.filter((b) => b.driver === 'file').map((b) => [b['node-name'], b.filename, b.aio]),
    [0, 1, 2, 3].map((i) => [
      testDiskNames(i).fileNode,
      i === 0 ? '/var/tmp/disk.raw' : `/var/tmp/disk.raw.${i}`,
      'io_uring',
    ]),
  );
  const devices = values(argv, '-device').filter((d) => d.startsWith('virtio-blk-pci,'));
  assert.deepEqual(
    devices,
    [0, 1, 2, 3].map((i) => {
      const n = testDiskNames(i);
      return `virtio-blk-pci,id=${n.device},bus=${n.rootPort},drive=${n.formatNode},serial=${n.serial},num-queues=2,write-cache=on,iothread=kvmio-iot${i % 2}`;
    }),
  );
  assert.equal(values(argv, '-device').filter((d) => d.startsWith('pcie-root-port,')).length, 4);

  // virtio-scsi: a controller per disk, each with its iothread; io0 leaves every disk in the main loop.
  const scsi = qemuArgv({
    name: 'vm1',
    study: testStudy('/var/tmp/disk.raw'),
    variant: testVariant({ bus: 'virtio-scsi', iothreads: 0, disks: 3 }),
    image,
    accel: 'tcg',
    runtimeDir: '/run/x',
  });
  const controllers = values(scsi, '-device').filter((d) => d.startsWith('virtio-scsi-pci,'));
  assert.equal(controllers.length, 3);
  assert.ok(controllers.every((c) => !c.includes('iothread')));
  assert.equal(values(scsi, '-device').filter((d) => d.startsWith('scsi-hd,')).length, 3);
});

test('a single-disk variant gets root ports for the study’s most disks, so a live switch can add disks', () => {
  const s = { ...testStudy('/var/tmp/disk.raw'), variants: [testVariant({ disks: 4, iothreads: 4 })] };
  const argv = qemuArgv({
    name: 'vm1',
    study: s,
    variant: testVariant(),
    image,
    accel: 'tcg',
    runtimeDir: '/r',
  });
  assert.equal(values(argv, '-device').filter((d) => d.startsWith('pcie-root-port,')).length, 4);
  assert.equal(values(argv, '-blockdev').length, 2, 'but only the variant’s own disk');
});

test('one disk over several iothreads: refused plainly on QEMU without iothread-vq-mapping, with the fallback', () => {
  const variant = testVariant({ aio: 'native', iothreads: 2, queues: 4 });
  assert.throws(
    () => checkVariant(variant, ASSUMED_CAPABILITIES, 'x.yaml'),
    (e: Error) =>
      e instanceof UserError &&
      e.message ===
        'x.yaml: variant blk-native-io2-4k-q4: this QEMU (7.2.0) cannot spread one virtio-blk disk over 2 iothreads: that needs iothread-vq-mapping (QEMU 9.0 or later). Use matrix disks: [2] for one iothread per disk',
  );
  assert.doesNotThrow(() => checkVariant({ ...variant, disks: 2 }, ASSUMED_CAPABILITIES));
  assert.doesNotThrow(() => checkVariant(variant, { ...ASSUMED_CAPABILITIES, iothreadVqMapping: true }));
  // virtio-scsi's mapping came a release later: a QEMU 9.x has virtio-blk's only.
  const qemu9 = {
    ...ASSUMED_CAPABILITIES,
    version: { major: 9, minor: 2, micro: 0, package: 'assumed' },
    iothreadVqMapping: true,
  };
  assert.throws(
    () => checkVariant({ ...variant, bus: 'virtio-scsi' }, qemu9),
    /this QEMU \(9\.2\.0\) cannot spread one virtio-scsi disk over 2 iothreads: that needs iothread-vq-mapping \(QEMU 10\.0 or later\)\. Use matrix disks: \[2\]/,
  );
  assert.throws(
    () => checkVariant({ ...variant, disks: 2, iothreads: 4 }),
    /would idle; use at most 2 iothreads/,
  );
});

test('preset seed: no variant this QEMU (7.2) refuses', () => {
  const preset = loadPreset('seed');
  for (const v of preset.variants) assert.doesNotThrow(() => checkVariant(v, ASSUMED_CAPABILITIES), v.id);
  const plan = planStudy(preset);
  assert.ok(!plan.notes.some((n) => /iothread-vq-mapping/.test(n)), plan.notes.join('; '));
});

test('preset iothreads spreads one 4-queue disk over 1, 2 and 4 iothreads, as the study; QEMU 7.2 refuses 2 and 4 with the disks: [N] form', () => {
  const iothreads = loadPreset('iothreads');
  assert.deepEqual(
    iothreads.variants.map((v) => [v.aio, v.iothreads, v.disks ?? 1, v.queues]),
    (['native', 'io_uring'] as const).flatMap((aio) => [0, 1, 2, 4].map((n) => [aio, n, 1, 4])),
  );
  const vqMapping = { ...ASSUMED_CAPABILITIES, iothreadVqMapping: true };
  for (const v of iothreads.variants) {
    assert.doesNotThrow(() => checkVariant(v, vqMapping), v.id);
    if (v.iothreads > 1)
      assert.throws(
        () => checkVariant(v, ASSUMED_CAPABILITIES, 'preset:iothreads'),
        new RegExp(
          `cannot spread one virtio-blk disk over ${v.iothreads} iothreads: .*Use matrix disks: \\[${v.iothreads}\\]`,
        ),
      );
    else assert.doesNotThrow(() => checkVariant(v, ASSUMED_CAPABILITIES), v.id);
    // The older form the preset's comment gives runs on QEMU 7.2.
    assert.doesNotThrow(() => checkVariant({ ...v, disks: 4 }, ASSUMED_CAPABILITIES), v.id);
  }
  const plan = planStudy(iothreads);
  assert.ok(
    plan.notes.some((n) => /4 variant\(s\) give one disk several iothreads/.test(n)),
    plan.notes.join('; '),
  );
  assert.equal(plan.boots, 1, 'iothreads switch live');
});

test('libvirt XML: N disks with iothread (i mod M)+1, validated by virt-xml-validate', {
  skip: spawnSync('virt-xml-validate', ['--help']).error !== undefined && 'virt-xml-validate missing',
}, () => {
  const s = study(
    `backend: libvirt\ndisk: { path: /var/tmp/d.raw, size: 64MiB }\nmatrix: { iothreads: [2], disks: [4], bus: [virtio-blk, virtio-scsi] }\n${WORKLOAD}`,
  );
  for (const variant of s.variants) {
    const xml = domainXml({
      study: s,
      variant,
      guest: { ...image },
      accel: 'tcg',
      name: `kvmio-${variant.id}`,
    });
    const file = join(scratch, `${variant.id}.xml`);
    writeFileSync(file, xml);
    const r = spawnSync('virt-xml-validate', [file, 'domain'], { encoding: 'utf8' });
    assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
    assert.match(xml, /<iothreads>2<\/iothreads>/);
    assert.deepEqual(
      [...xml.matchAll(/<serial>([^<]+)<\/serial>/g)].map((m) => m[1]),
      ['kvmio-test', 'kvmio-test-1', 'kvmio-test-2', 'kvmio-test-3'],
    );
    const iothreadsOf = [...xml.matchAll(/<driver [^>]*iothread='(\d)'/g)].map((m) => m[1]);
    assert.deepEqual(iothreadsOf, ['1', '2', '1', '2'], variant.id);
    assert.match(xml, /<source file='\/var\/tmp\/d\.raw\.3'\/>/);
  }
});
