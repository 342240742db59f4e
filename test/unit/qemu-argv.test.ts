import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type QemuArgvOptions, qemuArgv, TEST_DISK } from '../../src/qemu/argv.js';
import { qemuCapabilities } from '../../src/qemu/capabilities.js';
import { UserError } from '../../src/util/errors.js';
import { testStudy, testVariant } from '../helpers/vm.js';

const image = { kernel: '/k/vmlinuz', initrd: '/k/initrd', cmdline: 'console=ttyS0' };

function argvOf(over: Partial<QemuArgvOptions> & Pick<QemuArgvOptions, 'variant'>): string[] {
  return qemuArgv({
    name: 'vm1',
    study: testStudy('/var/tmp/disk.raw'),
    image,
    accel: 'tcg',
    runtimeDir: '/run/kvmio/x',
    ...over,
  });
}

/** The values that follow each occurrence of `flag`. */
function values(argv: string[], flag: string): string[] {
  return argv.flatMap((a, i) => (a === flag ? [argv[i + 1] ?? ''] : []));
}

test('blk native io1: names threads, O_DIRECT file node with aio=native, iothread and serial on the device', () => {
  const argv = argvOf({ variant: testVariant({ aio: 'native', iothreads: 1, queues: 2 }) });
  assert.deepEqual(values(argv, '-name'), ['vm1,debug-threads=on']);
  assert.deepEqual(values(argv, '-accel'), ['tcg']);
  assert.deepEqual(values(argv, '-cpu'), ['max']);
  assert.deepEqual(values(argv, '-smp'), ['2,sockets=2,cores=1,threads=1']);
  assert.deepEqual(values(argv, '-m'), ['512M']);
  assert.ok(argv.includes('-nodefaults'));
  assert.deepEqual(values(argv, '-append'), ['console=ttyS0']);
  assert.deepEqual(values(argv, '-object').slice(-1), ['iothread,id=kvmio-iot0']);
  const [file, raw] = values(argv, '-blockdev').map((b) => JSON.parse(b));
  assert.deepEqual(file, {
    driver: 'file',
    'node-name': TEST_DISK.fileNode,
    filename: '/var/tmp/disk.raw',
    aio: 'native',
    cache: { direct: true, 'no-flush': false },
    discard: 'unmap',
  });
  assert.equal(raw.driver, 'raw');
  assert.equal(raw.file, TEST_DISK.fileNode);
  const disk = values(argv, '-device').find((d) => d.startsWith('virtio-blk-pci'));
  assert.equal(
    disk,
    'virtio-blk-pci,id=kvmio-test-dev,bus=kvmio-rp-test,drive=kvmio-test,serial=kvmio-test,num-queues=2,write-cache=on,iothread=kvmio-iot0',
  );
  assert.ok(values(argv, '-device').includes('virtserialport,chardev=kvmio-qga,name=org.qemu.guest_agent.0'));
  assert.ok(values(argv, '-mon').includes('chardev=kvmio-qmp,mode=control'));
});

test('scsi io_uring on hugepages: file-backed memory from /dev/hugepages, controller iothread and scsi-hd', () => {
  const argv = argvOf({
    variant: testVariant({ aio: 'io_uring', iothreads: 1, bus: 'virtio-scsi', memory: 'hugepages' }),
  });
  assert.ok(
    values(argv, '-object').includes(
      'memory-backend-file,id=kvmio-mem,size=512M,mem-path=/dev/hugepages,prealloc=on,share=off',
    ),
  );
  assert.deepEqual(values(argv, '-machine'), ['q35,memory-backend=kvmio-mem']);
  const devices = values(argv, '-device');
  assert.ok(
    devices.includes('virtio-scsi-pci,id=kvmio-test-dev,bus=kvmio-rp-test,num_queues=1,iothread=kvmio-iot0'),
  );
  assert.ok(
    devices.includes(
      'scsi-hd,id=kvmio-test-lun,bus=kvmio-test-dev.0,drive=kvmio-test,serial=kvmio-test,write-cache=on',
    ),
  );
  assert.equal(JSON.parse(values(argv, '-blockdev')[0] ?? '').aio, 'io_uring');
});

test('4k memory is plain RAM; kvm uses the host CPU model; no iothread means none on the device', () => {
  const argv = argvOf({ variant: testVariant({ aio: 'threads', iothreads: 0 }), accel: 'kvm' });
  assert.ok(values(argv, '-object').includes('memory-backend-ram,id=kvmio-mem,size=512M'));
  assert.deepEqual(values(argv, '-cpu'), ['host']);
  assert.ok(!values(argv, '-object').some((o) => o.startsWith('iothread')));
  assert.ok(!values(argv, '-device').some((d) => d.includes('iothread=')));
});

test('cache modes map onto cache.direct, cache.no-flush and the write cache', () => {
  const cases = [
    ['writethrough', false, false, 'off'],
    ['writeback', false, false, 'on'],
    ['directsync', true, false, 'off'],
    ['unsafe', false, true, 'on'],
  ] as const;
  for (const [cache, direct, noFlush, writeCache] of cases) {
    const argv = argvOf({ variant: testVariant({ aio: 'threads', cache }) });
    assert.deepEqual(JSON.parse(values(argv, '-blockdev')[0] ?? '').cache, { direct, 'no-flush': noFlush });
    assert.ok(
      values(argv, '-device').some(
        (d) => d.startsWith('virtio-blk-pci') && d.includes(`write-cache=${writeCache}`),
      ),
    );
  }
});

test('aio=native without O_DIRECT is a UserError naming the variant and the allowed caches', () => {
  assert.throws(
    () => argvOf({ variant: testVariant({ aio: 'native', cache: 'writeback' }) }),
    (e: unknown) =>
      e instanceof UserError && /blk-native-io0-4k.*O_DIRECT.*none or directsync/.test(e.message),
  );
});

test('several iothreads for one disk: refused without iothread-vq-mapping, JSON device with it', async () => {
  const variant = testVariant({ aio: 'native', iothreads: 2, queues: 2 });
  const caps = await qemuCapabilities();
  if (!caps.iothreadVqMapping) {
    assert.throws(
      () => argvOf({ variant, capabilities: caps }),
      (e: unknown) =>
        e instanceof UserError && /cannot spread one virtio-blk disk over 2 iothreads/.test(e.message),
    );
  }
  const argv = argvOf({ variant, capabilities: { ...caps, iothreadVqMapping: true } });
  const dev = JSON.parse(values(argv, '-device').find((d) => d.includes('virtio-blk-pci')) ?? '');
  // Explicit: queue q on iothread q mod 2, the same mapping libvirt is given and verification expects.
  assert.deepEqual(dev['iothread-vq-mapping'], [
    { iothread: 'kvmio-iot0', vqs: [0] },
    { iothread: 'kvmio-iot1', vqs: [1] },
  ]);
  assert.equal(dev.iothread, undefined);
});
