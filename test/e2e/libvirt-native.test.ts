import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Virsh } from '../../src/libvirt/virsh.js';
import { domainXml } from '../../src/libvirt/xml.js';
import { qemuArgv } from '../../src/qemu/argv.js';
import { loadPreset } from '../../src/study/load.js';
import type { Study, Variant } from '../../src/study/types.js';

/**
 * The same variant on both backends must give QEMU the same storage configuration. libvirt's own
 * translation of kvmio's XML (`virsh domxml-to-native qemu-argv`) is compared with kvmio's direct
 * QEMU argv (qemuArgv): aio mode, cache.direct / no-flush, device model, iothread presence, queue
 * count, write cache, memory backing. Node names and ids differ by design and are not compared.
 */

const URI = 'qemu:///system';
const virsh = new Virsh(URI);
const scratch = mkdtempSync(join(tmpdir(), 'kvmio-libvirt-native-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

/** Splits libvirt's printed command line (single-quoted JSON, bare words) into argv. */
function splitCommandLine(line: string): string[] {
  const out: string[] = [];
  for (const m of line.matchAll(/'([^']*)'|(\S+)/g)) out.push(m[1] ?? m[2] ?? '');
  return out;
}

/** A -device or -object value as properties: JSON or QEMU's key=value form. */
function props(text: string, typeKey: string): Record<string, string> {
  if (text.startsWith('{')) {
    const o = JSON.parse(text) as Record<string, unknown>;
    return Object.fromEntries(
      Object.entries(o).map(([k, v]) => [
        k === typeKey ? 'driver' : k,
        typeof v === 'object' ? JSON.stringify(v) : String(v),
      ]),
    );
  }
  const [first, ...rest] = text.split(',');
  const out: Record<string, string> = { driver: first ?? '' };
  for (const kv of rest) {
    const i = kv.indexOf('=');
    out[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return out;
}

interface Blockdev {
  driver: string;
  filename?: string;
  aio?: string;
  cache?: { direct?: boolean; 'no-flush'?: boolean };
}

interface Storage {
  aio: string;
  direct: boolean;
  noFlush: boolean;
  formatDirect: boolean;
  controller: string;
  iothread: boolean;
  queues: string;
  writeCache: string;
  lun?: string;
  iothreadObjects: number;
  hugepages: boolean;
}

function storageOf(argv: string[], diskPath: string): Storage {
  const values = (flag: string) =>
    argv.flatMap((a, i) => (a === flag && argv[i + 1] !== undefined ? [argv[i + 1] as string] : []));
  const blockdevs = values('-blockdev').map((b) => JSON.parse(b) as Blockdev);
  const file = blockdevs.find((b) => b.filename === diskPath);
  const format = blockdevs.find((b) => b.driver === 'raw');
  assert.ok(file && format, `no blockdev nodes for ${diskPath} in ${argv.join(' ')}`);
  const devices = values('-device').map((d) => props(d, 'driver'));
  const controller = devices.find((d) => d.driver === 'virtio-blk-pci' || d.driver === 'virtio-scsi-pci');
  const lun = devices.find((d) => d.driver === 'scsi-hd');
  assert.ok(controller, 'no virtio-blk-pci / virtio-scsi-pci device');
  const objects = values('-object').map((o) => props(o, 'qom-type'));
  const disk = lun ?? controller;
  return {
    aio: file.aio ?? 'threads',
    direct: file.cache?.direct ?? false,
    noFlush: file.cache?.['no-flush'] ?? false,
    formatDirect: format.cache?.direct ?? false,
    controller: controller.driver as string,
    iothread: controller.iothread !== undefined,
    queues: controller['num-queues'] ?? controller.num_queues ?? 'default',
    writeCache: disk['write-cache'] ?? 'default',
    lun: lun?.driver,
    iothreadObjects: objects.filter((o) => o.driver === 'iothread').length,
    hugepages: objects.some(
      (o) => o.driver === 'memory-backend-file' && /hugepages/.test(o['mem-path'] ?? ''),
    ),
  };
}

async function libvirtStorage(study: Study, variant: Variant): Promise<Storage> {
  const guest = { kernel: '/var/lib/kvmio/k', initrd: '/var/lib/kvmio/i', cmdline: 'console=ttyS0' };
  const file = join(scratch, `${variant.id}.xml`);
  writeFileSync(file, domainXml({ study, variant, guest, accel: 'tcg', name: `kvmio-native-${variant.id}` }));
  const line = await virsh.run(['domxml-to-native', 'qemu-argv', '--xml', file]);
  return storageOf(splitCommandLine(line.trim()), study.disk.path);
}

function qemuStorage(study: Study, variant: Variant): Storage {
  const argv = qemuArgv({ name: 'n', study, variant, accel: 'tcg', runtimeDir: scratch });
  return storageOf(argv, study.disk.path);
}

describe('libvirt XML and direct QEMU argv give QEMU the same storage configuration', () => {
  let reachable = false;
  before(async () => {
    reachable = (await virsh.tryRun(['version'])) !== undefined;
  });

  // Storage only: the seed's UEFI guest is compared by the firmware tests, here it boots nothing.
  const preset = loadPreset('seed');
  const seed: Study = { ...preset, guest: { ...preset.guest, firmware: 'bios' } };
  const extra: Variant[] = [
    {
      id: 'blk-threads-writeback-q2',
      aio: 'threads',
      iothreads: 0,
      bus: 'virtio-blk',
      memory: '4k',
      queues: 2,
      cache: 'writeback',
    },
    {
      id: 'blk-native-directsync',
      aio: 'native',
      iothreads: 1,
      bus: 'virtio-blk',
      memory: '4k',
      queues: 1,
      cache: 'directsync',
    },
    {
      id: 'scsi-uring-unsafe-q3',
      aio: 'io_uring',
      iothreads: 0,
      bus: 'virtio-scsi',
      memory: '4k',
      queues: 3,
      cache: 'unsafe',
    },
    {
      id: 'scsi-threads-writethrough',
      aio: 'threads',
      iothreads: 1,
      bus: 'virtio-scsi',
      memory: 'hugepages',
      queues: 1,
      cache: 'writethrough',
    },
  ];
  // Multi-iothread variants exist on neither backend with libvirt 9 / QEMU 7.2 (see libvirt-xml.test).
  const variants = [...seed.variants.filter((v) => v.iothreads <= 1), ...extra];

  for (const variant of variants) {
    test(variant.id, async (t) => {
      if (!reachable) return t.skip(`libvirt is not reachable at ${URI} (run scripts/services.sh)`);
      const study: Study = { ...seed, guest: { ...seed.guest, memoryBytes: 512 * 1024 * 1024 } };
      const viaLibvirt = await libvirtStorage(study, variant);
      if (process.env.KVMIO_TEST_VERBOSE) t.diagnostic(JSON.stringify(viaLibvirt));
      assert.deepEqual(viaLibvirt, qemuStorage(study, variant));
    });
  }
});
