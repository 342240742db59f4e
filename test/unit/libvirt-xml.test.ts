import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { stagedGuestPaths } from '../../src/libvirt/stage.js';
import { liveTestDisk } from '../../src/libvirt/verify.js';
import { isLocalUri, LibvirtUnreachableError, Virsh } from '../../src/libvirt/virsh.js';
import { diskXml, domainXml, escapeXml } from '../../src/libvirt/xml.js';
import { parseCpuList } from '../../src/study/cpuset.js';
import { loadPreset } from '../../src/study/load.js';
import { listPresets } from '../../src/study/presets.js';
import type { Study, Variant } from '../../src/study/types.js';
import { UserError } from '../../src/util/errors.js';

const scratch = mkdtempSync(join(tmpdir(), 'kvmio-libvirt-xml-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

const guest = { ...stagedGuestPaths('0123456789abcdef0123'), cmdline: 'console=ttyS0 panic=-1' };
const hasValidator = spawnSync('virt-xml-validate', ['--help']).error === undefined;

/** libvirt's own schema check; returns its complaint, or '' when valid. */
function validate(xml: string, name: string): string {
  const file = join(scratch, `${name}.xml`);
  writeFileSync(file, xml);
  const r = spawnSync('virt-xml-validate', [file, 'domain'], { encoding: 'utf8' });
  return r.status === 0 ? '' : `${r.stdout}${r.stderr}`;
}

describe('domainXml: every preset variant', () => {
  for (const preset of listPresets()) {
    test(`preset ${preset}: one-iothread variants validate, multi-iothread ones are refused plainly`, {
      skip: !hasValidator && 'virt-xml-validate is not installed',
    }, () => {
      const study = loadPreset(preset);
      let validated = 0;
      for (const variant of study.variants) {
        for (const accel of ['kvm', 'tcg'] as const) {
          const opts = {
            study,
            variant,
            guest,
            accel,
            name: `kvmio-${variant.id}`,
            consoleLog: '/var/log/x.log',
            // Debian's OVMF pair, for presets with a UEFI guest (the seed); bios presets ignore it.
            firmware: {
              code: '/usr/share/OVMF/OVMF_CODE_4M.fd',
              varsTemplate: '/usr/share/OVMF/OVMF_VARS_4M.fd',
              nvram: `/var/lib/kvmio/kvmio-${variant.id}_VARS.fd`,
            },
          };
          const disks = variant.disks ?? 1;
          if (variant.iothreads > 1 && disks === 1) {
            // libvirt 9 / QEMU 7.2 here: one device, one iothread.
            assert.throws(
              () => domainXml(opts),
              (e: Error) => e instanceof UserError && /iothread/.test(e.message),
            );
            if (variant.bus === 'virtio-blk') {
              const xml = domainXml({ ...opts, iothreadVqMapping: true });
              assert.match(xml, new RegExp(`<iothreads>${variant.iothreads}</iothreads>`));
              // Each iothread once, bare or with the queues it serves.
              assert.equal((xml.match(/<iothread id='\d+'\/?>/g) ?? []).length, variant.iothreads);
            }
            continue;
          }
          const xml = domainXml(opts);
          assert.equal(validate(xml, `${variant.id}-${accel}`), '', `${preset} ${variant.id} ${accel}`);
          assert.match(xml, accel === 'kvm' ? /<domain type='kvm'>/ : /<domain type='qemu'>/);
          // Several disks: each its own serial (and for virtio-scsi its own controller and iothread).
          assert.equal((xml.match(/<serial>kvmio-test(-\d+)?<\/serial>/g) ?? []).length, disks);
          if (variant.bus === 'virtio-scsi')
            assert.equal((xml.match(/<controller type='scsi'/g) ?? []).length, disks);
          validated++;
        }
      }
      assert.ok(validated > 0, `preset ${preset} gave no variant to validate`);
    });
  }
});

function study(over: Partial<Study> = {}): Study {
  return {
    name: 'unit',
    source: 'unit.yaml',
    backend: 'libvirt',
    libvirt: { uri: 'qemu:///system' },
    guest: { vcpus: 4, memoryBytes: 1024 ** 3, count: 1 },
    disk: { path: '/var/tmp/kvmio unit&.raw', sizeBytes: 1024 ** 3 },
    variants: [],
    baseline: false,
    repetitions: 1,
    workloads: [],
    hosts: [],
    ...over,
  };
}

const variant = (over: Partial<Variant>): Variant => ({
  id: 'v',
  aio: 'native',
  iothreads: 1,
  bus: 'virtio-blk',
  memory: '4k',
  queues: 1,
  cache: 'none',
  ...over,
});

describe('domainXml: the knobs', () => {
  test('virtio-blk carries cache, io, iothread and queues on the disk driver, like the seed', () => {
    const xml = diskXml({ variant: variant({ queues: 4 }), diskPath: '/dev/nvme8n1' });
    assert.match(xml, /<disk type='block' device='disk'>/);
    assert.match(
      xml,
      /<driver name='qemu' type='raw' cache='none' io='native' discard='unmap' iothread='1' queues='4'\/>/,
    );
    assert.match(xml, /<source dev='\/dev\/nvme8n1'\/>/);
    assert.match(xml, /<target dev='vda' bus='virtio'\/>/);
    assert.match(xml, /<serial>kvmio-test<\/serial>/);
  });

  test('virtio-scsi puts iothread and queues on the controller, the main loop has no iothread', () => {
    const xml = domainXml({
      study: study(),
      variant: variant({ bus: 'virtio-scsi', aio: 'io_uring', queues: 2 }),
      guest,
      accel: 'kvm',
      name: 'n',
    });
    assert.match(xml, /<driver name='qemu' type='raw' cache='none' io='io_uring' discard='unmap'\/>/);
    assert.match(
      xml,
      /<controller type='scsi' index='0' model='virtio-scsi'>\s*<driver queues='2' iothread='1'\/>/,
    );
    const mainLoop = domainXml({
      study: study(),
      variant: variant({ iothreads: 0, aio: 'threads' }),
      guest,
      accel: 'kvm',
      name: 'n',
    });
    assert.doesNotMatch(mainLoop, /iothread/);
  });

  test('hugepages, pinning, metadata, escaping', () => {
    const xml = domainXml({
      study: study({ pinning: { vcpus: '2-3', emulator: '1', iothreads: '0' } }),
      variant: variant({ memory: 'hugepages' }),
      guest,
      accel: 'kvm',
      name: 'kvmio-x',
      owner: { host: 'ctl', pid: 42 },
    });
    assert.match(xml, /<memoryBacking>\s*<hugepages\/>\s*<\/memoryBacking>/);
    assert.match(
      xml,
      /<vcpupin vcpu='0' cpuset='2'\/>\s*<vcpupin vcpu='1' cpuset='3'\/>\s*<vcpupin vcpu='2' cpuset='2'\/>/,
    );
    assert.match(xml, /<emulatorpin cpuset='1'\/>\s*<iothreadpin iothread='1' cpuset='0'\/>/);
    assert.match(
      xml,
      /<kvmio:domain xmlns:kvmio='urn:kvmio:domain:1' study='unit' variant='v' owner-host='ctl' owner-pid='42'\/>/,
    );
    assert.match(xml, /<source file='\/var\/tmp\/kvmio unit&amp;.raw'\/>/);
    if (hasValidator) assert.equal(validate(xml, 'knobs'), '');
  });

  test('what libvirt cannot express is a UserError naming the variant', () => {
    assert.throws(
      () => diskXml({ variant: variant({ id: 'bad', cache: 'writeback' }), diskPath: '/x' }),
      /variant bad: aio=native needs O_DIRECT/,
    );
    assert.throws(
      () =>
        diskXml({
          variant: variant({ iothreads: 2, bus: 'virtio-scsi' }),
          diskPath: '/x',
          iothreadVqMapping: true,
        }),
      /one virtio-scsi controller over 2 iothreads needs libvirt >= 11.2 with QEMU >= 10.0.*Use matrix disks: \[2\]/,
    );
    assert.throws(
      () =>
        diskXml({ variant: variant({ iothreads: 4, queues: 2 }), diskPath: '/x', iothreadVqMapping: true }),
      /at least as many queues/,
    );
    assert.throws(() => parseCpuList('1-0'), /not a CPU list/);
    assert.deepEqual(parseCpuList('0-2,5'), [0, 1, 2, 5]);
    assert.equal(escapeXml(`a'<"&>`), 'a&apos;&lt;&quot;&amp;&gt;');
  });

  test('liveTestDisk reads a live dumpxml', () => {
    // Recorded here (libvirt 9.0): a scsi-native-io1 domain from domainXml, `virsh create --paused`,
    // then `virsh dumpxml`, keeping <iothreads>, the disk and the controller.
    const live = `<domain type='qemu' id='7'>
  <iothreads>1</iothreads>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' cache='none' io='native'/>
      <source file='/var/tmp/kvmio-lv.raw' index='1'/>
      <backingStore/>
      <target dev='sda' bus='scsi'/>
      <serial>kvmio-test</serial>
      <alias name='scsi0-0-0-0'/>
      <address type='drive' controller='0' bus='0' target='0' unit='0'/>
    </disk>
    <controller type='scsi' index='0' model='virtio-scsi'>
      <driver queues='1' iothread='1'/>
      <alias name='scsi0'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0'/>
    </controller>
  </devices>
</domain>`;
    const r = liveTestDisk(live);
    assert.equal(r.iothreads, 1);
    assert.match(r.disk ?? '', /<target dev='sda' bus='scsi'\/>/);
    assert.match(r.controller ?? '', /<driver queues='1' iothread='1'\/>\s*<alias name='scsi0'\/>/);
  });

  test('kvmio xml prints valid XML (also multi-disk), or the disk part alone; unknown ids exit 2', () => {
    const cli = new URL('../../../bin/kvmio.js', import.meta.url).pathname;
    const full = spawnSync(
      process.execPath,
      [cli, 'xml', '--preset', 'quick', '--variant', 'blk-native-io1-4k', '--accel', 'tcg'],
      { encoding: 'utf8' },
    );
    assert.equal(full.status, 0, full.stderr);
    assert.match(full.stdout, /^<domain type='qemu'>/);
    if (hasValidator) assert.equal(validate(full.stdout, 'cli'), '');
    const disk = spawnSync(
      process.execPath,
      [cli, 'xml', '--preset', 'quick', '--variant', 'blk-native-io1-4k', '--disk-only'],
      { encoding: 'utf8' },
    );
    assert.equal(disk.status, 0, disk.stderr);
    assert.match(
      disk.stdout,
      /^<disk type='file' device='disk'>[\s\S]*<\/disk>\n<!-- and in <domain>: <iothreads>1<\/iothreads> -->\n$/,
    );
    const seed = loadPreset('seed');
    const multiDisk = seed.variants.find((v) => (v.disks ?? 1) > 1 && v.iothreads > 1);
    assert.ok(multiDisk, 'the seed preset has a multi-iothread, multi-disk variant');
    const multi = spawnSync(process.execPath, [cli, 'xml', '--preset', 'seed', '--variant', multiDisk.id], {
      encoding: 'utf8',
    });
    assert.equal(multi.status, 0, multi.stderr);
    if (hasValidator) assert.equal(validate(multi.stdout, 'cli-multi'), '');
    assert.match(multi.stdout, new RegExp(`<iothreads>${multiDisk.iothreads}</iothreads>`));
    const unknown = spawnSync(process.execPath, [cli, 'xml', '--preset', 'seed', '--variant', 'nosuch'], {
      encoding: 'utf8',
    });
    assert.equal(unknown.status, 2);
    assert.match(unknown.stderr, /no variant "nosuch"/);
  });

  test("a URI nobody answers is reported as the host being out, with virsh's reason", async () => {
    await assert.rejects(
      new Virsh('qemu+tcp://127.0.0.1:1/system').ensureReachable(10_000),
      (e: Error) =>
        e instanceof LibvirtUnreachableError && /127\.0\.0\.1:1.*Connection refused/.test(e.message),
    );
  });

  test('local and remote URIs', () => {
    assert.equal(isLocalUri('qemu:///system'), true);
    assert.equal(isLocalUri('qemu+ssh://root@hv1/system'), false);
    assert.equal(isLocalUri('qemu+ssh://localhost/system'), true);
  });
});
