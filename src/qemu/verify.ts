import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { variantDisks } from '../study/variants.js';
import { PointFailure } from '../util/errors.js';
import { cacheFlags, diskIothread, iothreadIds, testDiskNames } from './argv.js';
import type { QemuVm } from './vm.js';

/**
 * Checks through QMP that the running VM has the test disk the variant asked for: block nodes and
 * their cache flags, the device model, its iothread and queue count. QMP does not report a file
 * node's aio mode, so that is checked on the QEMU process: aio=native keeps a Linux AIO ring
 * mapped ("[aio]" in /proc/PID/maps), io_uring an io_uring file descriptor. Those contexts live as
 * long as their event loop, so after a live switch only their presence is required; on a fresh VM
 * (`fresh`) aio=threads must have neither.
 */

interface BlockNode {
  'node-name': string;
  drv: string;
  cache: { direct: boolean; 'no-flush': boolean; writeback: boolean };
}

interface BlockInfo {
  device: string;
  qdev?: string;
  inserted?: { 'node-name': string };
}

export async function verifyLiveConfig(vm: QemuVm, opts: { fresh: boolean }): Promise<void> {
  const v = vm.variant;
  const qmp = vm.qmp;
  const problems: string[] = [];
  const expect = (what: string, got: unknown, want: unknown) => {
    if (JSON.stringify(got) !== JSON.stringify(want)) {
      problems.push(`${what} is ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
    }
  };

  const nodes = await qmp.execute<BlockNode[]>('query-named-block-nodes', { flat: true });
  const blocks = await qmp.execute<BlockInfo[]>('query-block');
  const flags = cacheFlags(v.cache);
  const disks = variantDisks(v);
  for (let i = 0; i < disks; i++) {
    const names = testDiskNames(i);
    // Disk 0 keeps the single-disk wording, so existing failure reports read as before.
    const disk = disks === 1 ? 'test disk' : `test disk ${i} (${names.serial})`;
    for (const [name, drv] of [
      [names.fileNode, ['file', 'host_device']],
      [names.formatNode, ['raw']],
    ] as const) {
      const node = nodes.find((n) => n['node-name'] === name);
      if (!node) {
        problems.push(`block node ${name} is missing`);
        continue;
      }
      if (!(drv as readonly string[]).includes(node.drv))
        problems.push(`block node ${name} has driver ${node.drv}`);
      expect(`${name} cache.direct`, node.cache.direct, flags.direct);
      expect(`${name} cache.no-flush`, node.cache['no-flush'], flags.noFlush);
    }

    const lunPath = v.bus === 'virtio-blk' ? names.device : names.scsiLun;
    // qdev is the device id for some models and its QOM path (…/virtio-backend) for others.
    const attached = blocks.find(
      (b) => b.qdev === lunPath || b.qdev?.startsWith(`/machine/peripheral/${lunPath}/`),
    );
    expect(`node attached to the ${disk} device`, attached?.inserted?.['node-name'], names.formatNode);

    const dev = `/machine/peripheral/${names.device}`;
    const get = (property: string) =>
      qmp.execute<unknown>('qom-get', { path: dev, property }).catch((e: Error) => e.message);
    expect(
      `${disk} device model`,
      await get('type'),
      v.bus === 'virtio-blk' ? 'virtio-blk-pci' : 'virtio-scsi-pci',
    );
    expect(`${disk} queues`, await get(v.bus === 'virtio-blk' ? 'num-queues' : 'num_queues'), v.queues);
    if (v.iothreads <= 1 || disks > 1) {
      const own = diskIothread(v, i);
      expect(`${disk} iothread`, await get('iothread'), own ? `/objects/${own}` : '');
    }
    const lun = `/machine/peripheral/${lunPath}`;
    expect(
      `${disk} write cache`,
      await qmp.execute('qom-get', { path: lun, property: 'write-cache' }).catch((e: Error) => e.message),
      flags.writeCache ? 'on' : 'off',
    );
  }
  const leftover = nodes.filter(
    (n) => Number(/^kvmio-test(?:-file)?-(\d+)$/.exec(n['node-name'])?.[1] ?? 0) >= disks,
  );
  for (const n of leftover)
    problems.push(`block node ${n['node-name']} of a disk this variant does not have is still there`);
  const iothreads = await qmp.execute<Array<{ id: string }>>('query-iothreads');
  expect('iothread objects', iothreads.map((t) => t.id).sort(), iothreadIds(v.iothreads).sort());

  const { nativeRings, uringFds } = aioEvidence(vm.qemuPid());
  if (v.aio === 'native' && nativeRings === 0)
    problems.push('aio=native asked, but QEMU has no Linux AIO context');
  if (v.aio === 'io_uring' && uringFds === 0)
    problems.push('aio=io_uring asked, but QEMU has no io_uring instance');
  if (v.aio === 'threads' && opts.fresh && nativeRings + uringFds > 0) {
    problems.push(
      `aio=threads asked, but QEMU has ${nativeRings} Linux AIO and ${uringFds} io_uring contexts`,
    );
  }

  if (problems.length > 0) {
    throw new PointFailure(`the live VM does not match variant ${v.id}: ${problems.join('; ')}`);
  }
}

/** Linux AIO rings mapped and io_uring fds held by a process. */
export function aioEvidence(pid: number): { nativeRings: number; uringFds: number } {
  const maps = readFileSync(`/proc/${pid}/maps`, 'utf8');
  const nativeRings = maps.split('\n').filter((l) => l.includes('/[aio]')).length;
  let uringFds = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`).includes('io_uring')) uringFds++;
    } catch {
      // fd closed meanwhile
    }
  }
  return { nativeRings, uringFds };
}
