import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { ensureGuest, type GuestImage } from '../../src/guest/build.js';
import type { GuestVm } from '../../src/guest/vm.js';
import { Virsh } from '../../src/libvirt/virsh.js';
import { startLibvirtVm } from '../../src/libvirt/vm.js';
import { qemuBinary } from '../../src/qemu/binary.js';
import { qemuCapabilities } from '../../src/qemu/capabilities.js';
import { readRunningShape, shapeDifferences } from '../../src/qemu/running-shape.js';
import type { Monitor } from '../../src/qemu/verify.js';
import { startQemuVm } from '../../src/qemu/vm.js';
import type { MachineType } from '../../src/study/guest-shape.js';
import type { Study, Variant, VariantQemu } from '../../src/study/types.js';
import { LIBVIRT_URI, libvirtTestStudy, libvirtUnreachable } from './libvirt.js';
import { makeSparseFile, testAccel, testVariant } from './vm.js';

/**
 * The same study booted on both backends runs the same guest: one VM at a time, direct QEMU then
 * libvirt, each read while it runs — over QMP (the concrete machine type, vCPU model, vCPUs, base
 * memory, and the test disk's block nodes and device) and in the guest itself (DMI product name,
 * /proc/cpuinfo, /proc/meminfo, read with argv commands). Each backend's own live verification
 * (aio mode, iothread, queues) has already run when its VM is returned. The QEMU that runs is
 * the direct backend's binary and the domain's <emulator> alike (sameGuestTests).
 * The disk lives in /var/tmp: libvirt's QEMU cannot enter mkdtemp's 0700 dirs.
 */

const virsh = new Virsh(LIBVIRT_URI);
const diskPath = `/var/tmp/kvmio-e2e-same-guest-${process.pid}.raw`;

function study(machine: MachineType, backend: Study['backend'], variant: Variant): Study {
  return libvirtTestStudy('e2e-same-guest', diskPath, {
    backend,
    guest: { vcpus: 2, machine },
    variants: [variant],
  });
}

interface BlockNode {
  'node-name': string;
  drv: string;
  file: string;
  cache: { direct: boolean; 'no-flush': boolean; writeback: boolean };
  detect_zeroes: string;
}

/**
 * The test disk as QEMU runs it: the node the device reads (its driver: the raw format layer, or the
 * protocol node itself where the format layer is left out), the protocol node's driver and cache
 * flags, and the virtio-blk device's properties.
 */
async function runningStorage(monitor: Monitor) {
  const blocks =
    await monitor<Array<{ qdev?: string; inserted?: { file: string; 'node-name': string } }>>('query-block');
  const block = blocks.find((b) => b.inserted?.file === diskPath);
  assert.ok(block?.qdev && block.inserted, `no device holds ${diskPath}`);
  const nodes = (await monitor<BlockNode[]>('query-named-block-nodes')).filter((n) => n.file === diskPath);
  const top = nodes.find((n) => n['node-name'] === block.inserted?.['node-name']);
  const protocol = nodes.find((n) => n.drv === 'file' || n.drv === 'host_device');
  assert.ok(top && protocol, `QEMU holds no protocol node for ${diskPath}: ${JSON.stringify(nodes)}`);
  const qdev = block.qdev;
  const prop = (property: string) => monitor<unknown>('qom-get', { path: qdev, property });
  return {
    formatLayer: top === protocol ? 'none' : top.drv,
    protocol: { drv: protocol.drv, cache: protocol.cache, detectZeroes: protocol.detect_zeroes },
    deviceCache: top.cache,
    deviceType: await prop('type'),
    queues: await prop('num-queues'),
    writeCache: await prop('config-wce'),
    // Names differ by design (kvmio-iot0, iothread1): whether an iothread serves the disk is compared.
    iothread: Boolean(await prop('iothread')),
  };
}

/** What the guest itself sees of its machine, CPU and memory. */
async function guestView(vm: GuestVm) {
  const read = async (path: string) => {
    const r = await vm.exec(['cat', path], { timeoutMs: 60_000 });
    assert.equal(r.exitCode, 0, `cat ${path} in the guest: ${r.stderr}`);
    return r.stdout;
  };
  const cpuinfo = await read('/proc/cpuinfo');
  return {
    product: (await read('/sys/class/dmi/id/product_name')).trim(),
    processors: cpuinfo.match(/^processor\s*:/gm)?.length ?? 0,
    modelName: /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1],
    flags: /^flags\s*:\s*(.*)$/m.exec(cpuinfo)?.[1],
    memTotalKiB: Number(/^MemTotal:\s+(\d+) kB/m.exec(await read('/proc/meminfo'))?.[1]),
  };
}

async function readAll(vm: GuestVm, monitor: Monitor) {
  return {
    shape: await readRunningShape(monitor),
    storage: await runningStorage(monitor),
    guest: await guestView(vm),
  };
}

/**
 * The comparison's tests, on `qemu` (the direct backend's binary and the domain's <emulator>), or
 * without it on the QEMU kvmio finds (KVMIO_QEMU, else the system's).
 */
export function sameGuestTests(qemu?: VariantQemu): void {
  const variant: Variant = {
    ...testVariant({ aio: 'native', iothreads: 1, queues: 2 }),
    ...(qemu ? { qemu } : {}),
  };
  let image: GuestImage;
  let unreachable: string | undefined;

  before(async () => {
    unreachable = await libvirtUnreachable();
    image = await ensureGuest();
    makeSparseFile(diskPath);
  });

  after(() => rmSync(diskPath, { force: true }));

  describe('the same variant on both backends boots the same guest', { timeout: 1_200_000 }, () => {
    for (const machine of ['q35', 'pc'] as const) {
      test(`machine ${machine}: machine type, CPU model, vCPUs, memory and the test disk agree`, async (t) => {
        if (unreachable) return t.skip(unreachable);
        const accel = testAccel();
        const direct = await startQemuVm({ study: study(machine, 'qemu', variant), variant, accel });
        let viaQemu: Awaited<ReturnType<typeof readAll>>;
        try {
          viaQemu = await readAll(direct, (c, a) => direct.qmp.execute(c, a));
        } finally {
          await direct.stop();
        }
        const name = `kvmio-e2e-same-${process.pid}-${machine}`;
        const domain = await startLibvirtVm({
          study: study(machine, 'libvirt', variant),
          variant,
          image,
          accel,
          uri: LIBVIRT_URI,
          name,
        });
        let viaLibvirt: Awaited<ReturnType<typeof readAll>>;
        try {
          viaLibvirt = await readAll(domain, (c, a) => virsh.monitor(name, c, a));
        } finally {
          await domain.stop();
          rmSync(`/var/log/libvirt/qemu/${name}-console.log`, { force: true });
        }
        t.diagnostic(`direct QEMU: ${JSON.stringify(viaQemu)}`);
        t.diagnostic(`libvirt:     ${JSON.stringify(viaLibvirt)}`);

        assert.deepEqual(shapeDifferences(viaQemu.shape, viaLibvirt.shape, ['direct QEMU', 'libvirt']), []);
        assert.deepEqual(viaLibvirt.storage, viaQemu.storage);
        // MemTotal moves by a page or so with the devices' firmware tables (root ports differ in number).
        const { memTotalKiB: libvirtKiB, ...libvirtGuest } = viaLibvirt.guest;
        const { memTotalKiB: qemuKiB, ...qemuGuest } = viaQemu.guest;
        assert.deepEqual(libvirtGuest, qemuGuest);
        assert.ok(Math.abs(libvirtKiB - qemuKiB) <= 1024, `MemTotal ${libvirtKiB} vs ${qemuKiB} KiB`);
        // And it is the guest the study asked for, not merely the same one twice.
        assert.match(viaQemu.shape.machine, machine === 'q35' ? /^pc-q35-\d+\.\d+$/ : /^pc-i440fx-\d+\.\d+$/);
        assert.match(viaQemu.guest.product, machine === 'q35' ? /Q35/ : /i440FX/);
        assert.equal(viaQemu.shape.cpuModel, accel === 'kvm' ? 'host' : 'max');
        assert.equal(viaQemu.shape.vcpus, 2);
        assert.equal(viaQemu.shape.topology, '2 socket(s) × 1 core(s) × 1 thread(s)');
        assert.equal(viaQemu.guest.processors, 2);
        assert.equal(viaQemu.shape.memoryBytes, 512 * 1024 * 1024);
        assert.deepEqual(viaQemu.storage.protocol.cache, {
          direct: true,
          'no-flush': false,
          writeback: true,
        });
        assert.equal(viaQemu.storage.queues, 2);
        assert.equal(viaQemu.storage.iothread, true);
        // The raw layer is left out where QEMU's block jobs can mask the protocol node, as libvirt does.
        const caps = await qemuCapabilities(qemu?.path ?? qemuBinary());
        assert.equal(viaQemu.storage.formatLayer, caps.backingMaskProtocol ? 'none' : 'raw');
      });
    }
  });
}
