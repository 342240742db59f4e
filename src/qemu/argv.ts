import { join } from 'node:path';
import { studyMaxDisks, variantImagePaths } from '../study/disks.js';
import { DEFAULT_MACHINE, guestCpuModel, type MachineType } from '../study/guest-shape.js';
import { QCOW2_DEFAULTS } from '../study/image-schema.js';
import type { CacheMode, Qcow2Options, Study, Variant } from '../study/types.js';
import {
  iothreadQueues,
  variantDetectZeroes,
  variantDiscard,
  variantDisks,
  variantFormat,
  variantPath,
  variantProblem,
} from '../study/variants.js';
import { UserError } from '../util/errors.js';
import { qemuBinary } from './binary.js';
import type { QemuCapabilities } from './capabilities.js';

/**
 * The QEMU command line of one variant. The test disk is described once (blockdev nodes and
 * devices as typed objects) and either formatted as argv or sent over QMP for a live switch, so a
 * booted variant and a hot-plugged one get exactly the same configuration.
 */

export type { Accel } from '../host/accel.js';

import type { Accel } from '../host/accel.js';

/** Fixed names of the test disk's pieces, used by argv, hot-plug and verification alike. */
export const TEST_DISK = {
  serial: 'kvmio-test',
  fileNode: 'kvmio-test-file',
  formatNode: 'kvmio-test',
  /** The unit that is unplugged and plugged: virtio-blk-pci, or the virtio-scsi-pci controller. */
  device: 'kvmio-test-dev',
  scsiLun: 'kvmio-test-lun',
  /** q35's root bus is not hot-pluggable: the test disk sits on its own root port. */
  rootPort: 'kvmio-rp-test',
  /** The storage daemon's export of the disk (its NBD export name too). */
  export: 'kvmio-test-export',
  /** QEMU's vhost-user socket of the disk. */
  chardev: 'kvmio-test-vhost',
} as const;

export type TestDiskNames = { -readonly [K in keyof typeof TEST_DISK]: string };

/** Names of test disk `index`: disk 0 keeps TEST_DISK's, disk i gets a `-i` suffix (serial kvmio-test-1, …). */
export function testDiskNames(index: number): TestDiskNames {
  if (index === 0) return { ...TEST_DISK };
  const out = {} as TestDiskNames;
  for (const [k, v] of Object.entries(TEST_DISK)) out[k as keyof TestDiskNames] = `${v}-${index}`;
  return out;
}

/** The iothread that serves test disk `index` (undefined = main loop) when each disk has one iothread. */
export function diskIothread(variant: Variant, index: number): string | undefined {
  if (variant.iothreads === 0) return undefined;
  return iothreadIds(variant.iothreads)[index % variant.iothreads];
}

/** Node names of a uefi guest's two pflash images (the code read-only, the VM's own variable store). */
export const FIRMWARE_NODES = { code: 'kvmio-fw-code', vars: 'kvmio-fw-vars' } as const;

export interface QemuImage {
  kernel: string;
  initrd: string;
  cmdline: string;
}

export interface QemuArgvOptions {
  name: string;
  /** With `variants`, root ports are made for the most disks any variant has, so switches can add disks. */
  study: Pick<Study, 'guest' | 'disk' | 'source'> & Partial<Pick<Study, 'variants'>>;
  variant: Variant;
  /** Kernel, initrd and command line; omitted only to check that QEMU accepts the rest (paused). */
  image?: QemuImage;
  accel: Accel;
  /** Directory for this VM's sockets and logs (see runtimePaths). */
  runtimeDir: string;
  /** From qemuCapabilities(); without it, argv assumes QEMU 7.2-like abilities. */
  capabilities?: QemuCapabilities;
  binary?: string;
  /** Start with CPUs stopped (-S): used to check that QEMU accepts the argv without booting. */
  paused?: boolean;
  /** A uefi guest's OVMF: the code image and this VM's own copy of the variable store template. */
  firmware?: { code: string; vars: string };
}

export interface QemuRuntimePaths {
  qmp: string;
  agent: string;
  serialLog: string;
}

export function runtimePaths(dir: string): QemuRuntimePaths {
  return { qmp: join(dir, 'qmp.sock'), agent: join(dir, 'agent.sock'), serialLog: join(dir, 'console.log') };
}

/** QEMU's -cpu for the guest CPU rule (guestCpuModel): `host` is libvirt's host-passthrough, `max` its maximum. */
export function qemuCpuModel(accel: Accel): 'host' | 'max' {
  return guestCpuModel(accel) === 'host-passthrough' ? 'host' : 'max';
}

/** The sockets the storage daemon serves a VM's test disks on (see storage-daemon.ts). */
export interface DaemonSockets {
  /** The daemon's QMP monitor. */
  qmp: string;
  /** Its NBD server (one for every export). */
  nbd: string;
  /** Test disk `index`'s vhost-user-blk export. */
  vhost: (index: number) => string;
}

export function daemonSockets(dir: string): DaemonSockets {
  return {
    qmp: join(dir, 'qsd-qmp.sock'),
    nbd: join(dir, 'qsd-nbd.sock'),
    vhost: (index) => join(dir, `qsd-vhost-${index}.sock`),
  };
}

/** What argv assumes when no capabilities were probed: QEMU 7.2 as on Debian bookworm. */
export const ASSUMED_CAPABILITIES: QemuCapabilities = {
  binary: 'qemu-system-x86_64',
  version: { major: 7, minor: 2, micro: 0, package: 'assumed' },
  aioModes: ['threads', 'native', 'io_uring'],
  iothreadVqMapping: false,
  scsiIothreadVqMapping: false,
  backingMaskProtocol: false,
};

/**
 * Whether a raw test disk is one protocol node with no raw format node over it. libvirt leaves the
 * layer out when QEMU's block jobs can mask the protocol node (backing-mask-protocol, QEMU 8.0+);
 * the direct backend does the same, so both backends run the same block graph on the same QEMU.
 */
export function omitsRawFormatLayer(caps: QemuCapabilities): boolean {
  return caps.backingMaskProtocol;
}

/** How a cache mode maps onto the block layer (see qemu(1), -drive cache=). */
export function cacheFlags(mode: CacheMode): { direct: boolean; noFlush: boolean; writeCache: boolean } {
  switch (mode) {
    case 'none':
      return { direct: true, noFlush: false, writeCache: true };
    case 'directsync':
      return { direct: true, noFlush: false, writeCache: false };
    case 'writethrough':
      return { direct: false, noFlush: false, writeCache: false };
    case 'writeback':
      return { direct: false, noFlush: false, writeCache: true };
    case 'unsafe':
      return { direct: false, noFlush: true, writeCache: true };
  }
}

export function iothreadIds(count: number): string[] {
  return Array.from({ length: count }, (_, i) => `kvmio-iot${i}`);
}

/** Throws a UserError when this QEMU (or QEMU at all) cannot realise the variant. */
export function checkVariant(
  variant: Variant,
  caps: QemuCapabilities = ASSUMED_CAPABILITIES,
  source = '',
): void {
  const where = `${source ? `${source}: ` : ''}variant ${variant.id}`;
  if (!caps.aioModes.includes(variant.aio)) {
    throw new UserError(
      `${where}: this QEMU (${versionText(caps)}) has no aio=${variant.aio}; it offers ${caps.aioModes.join(', ')}`,
    );
  }
  const problem = variantProblem(variant);
  if (problem) throw new UserError(`${where}: ${problem}`);
  const disks = variantDisks(variant);
  if (variant.iothreads > 1 && disks === 1) {
    const can = variant.bus === 'virtio-blk' ? caps.iothreadVqMapping : caps.scsiIothreadVqMapping;
    if (!can) {
      throw new UserError(
        `${where}: this QEMU (${versionText(caps)}) cannot spread one ${variant.bus} disk over ${variant.iothreads} iothreads: that needs iothread-vq-mapping (QEMU ${variant.bus === 'virtio-blk' ? '9.0' : '10.0'} or later). Use matrix disks: [${variant.iothreads}] for one iothread per disk`,
      );
    }
    if (variant.queues < variant.iothreads) {
      throw new UserError(
        `${where}: ${variant.iothreads} iothreads need at least as many queues (queues is ${variant.queues})`,
      );
    }
  }
  if (variant.queues < 1) throw new UserError(`${where}: queues must be at least 1`);
}

function versionText(caps: QemuCapabilities): string {
  return `${caps.version.major}.${caps.version.minor}.${caps.version.micro}`;
}

/** Host paths QEMU opens for the variant's test disks: disk.path, then PATH.1, … (PATH.qcow2 … for qcow2). */
export function variantDiskPaths(variant: Variant, diskPath: string): string[] {
  return variantImagePaths(diskPath, variant);
}

/** QEMU's qcow2 driver options of the study's images: the metadata cache sizes, when set. */
function qcow2NodeOptions(q: Qcow2Options): Record<string, unknown> {
  return {
    ...(q.l2CacheSizeBytes !== undefined ? { 'l2-cache-size': q.l2CacheSizeBytes } : {}),
    ...(q.cacheSizeBytes !== undefined ? { 'cache-size': q.cacheSizeBytes } : {}),
  };
}

/**
 * Test disk `index`'s blockdev nodes in QEMU, as blockdev-add takes them: the image's nodes (below)
 * when QEMU opens it, an NBD client node on the storage daemon's socket for path nbd, none for path
 * vhost-user-blk (the daemon processes the virtqueues).
 */
export function testDiskBlockdevs(
  variant: Variant,
  diskPath: string,
  index = 0,
  qcow2: Qcow2Options = QCOW2_DEFAULTS,
  sockets?: DaemonSockets,
  omitRawLayer = false,
): Array<Record<string, unknown>> {
  const path = variantPath(variant);
  if (path === 'qemu') return imageBlockdevs(variant, diskPath, index, qcow2, omitRawLayer);
  if (path === 'vhost-user-blk') return [];
  if (!sockets) throw new Error(`variant ${variant.id}: the storage daemon's sockets are not known`);
  const names = testDiskNames(index);
  return [
    {
      driver: 'nbd',
      'node-name': names.formatNode,
      server: { type: 'unix', path: sockets.nbd },
      export: names.export,
      // O_DIRECT has no meaning on a socket: the daemon's file node opens the image as the cache mode asks.
      cache: { direct: false, 'no-flush': cacheFlags(variant.cache).noFlush },
      // Guest discards travel on to the daemon's nodes, which apply the variant's discard mode.
      discard: variantDiscard(variant),
    },
  ];
}

/**
 * The image's blockdev nodes, file first, as blockdev-add takes them: the protocol node on
 * `diskPath` (the raw file or device, or the qcow2 image) and the variant's format node over it.
 * QEMU opens them for path qemu, the storage daemon for the other paths.
 */
export function imageBlockdevs(
  variant: Variant,
  diskPath: string,
  index = 0,
  qcow2: Qcow2Options = QCOW2_DEFAULTS,
  omitRawLayer = false,
): Array<Record<string, unknown>> {
  const { direct, noFlush } = cacheFlags(variant.cache);
  const cache = { direct, 'no-flush': noFlush };
  const names = testDiskNames(index);
  // Both nodes pass discards down alike; zeroes are detected where the guest's writes enter (as libvirt does).
  const discard = variantDiscard(variant);
  const detectZeroes = variantDetectZeroes(variant);
  const protocol = {
    driver: diskPath.startsWith('/dev/') ? 'host_device' : 'file',
    filename: diskPath,
    aio: variant.aio,
    cache,
    discard,
  };
  const zeroes = detectZeroes !== 'off' ? { 'detect-zeroes': detectZeroes } : {};
  // Without the raw layer the protocol node takes the format node's name and its zero detection.
  if (omitRawLayer && variantFormat(variant) === 'raw')
    return [{ ...protocol, 'node-name': names.formatNode, ...zeroes }];
  return [
    { ...protocol, 'node-name': names.fileNode },
    {
      driver: variantFormat(variant),
      'node-name': names.formatNode,
      file: names.fileNode,
      cache,
      discard,
      ...zeroes,
      ...(variantFormat(variant) === 'qcow2' ? qcow2NodeOptions(qcow2) : {}),
    },
  ];
}

/** The iothread objects QEMU itself has: none for vhost-user-blk, whose iothreads are the daemon's. */
export function qemuIothreadIds(variant: Variant): string[] {
  return variantPath(variant) === 'vhost-user-blk' ? [] : iothreadIds(variant.iothreads);
}

/**
 * Test disk `index`'s devices, in plug order, as device_add takes them (typed values). On q35 the
 * controller sits on the disk's own root port; on pc (i440fx) on the hot-pluggable root bus.
 */
export function testDiskDevices(
  variant: Variant,
  index = 0,
  machine: MachineType = DEFAULT_MACHINE,
): Array<Record<string, unknown>> {
  const iothreads = iothreadIds(variant.iothreads);
  const { writeCache } = cacheFlags(variant.cache);
  const names = testDiskNames(index);
  const bus = machine === 'q35' ? { bus: names.rootPort } : {};
  if (variantPath(variant) === 'vhost-user-blk') {
    // The device is a virtio-blk front end whose queues the daemon serves: no drive, no iothread here;
    // the write cache is the export's (writethrough), the serial the daemon's.
    return [
      {
        driver: 'vhost-user-blk-pci',
        id: names.device,
        ...bus,
        chardev: names.chardev,
        'num-queues': variant.queues,
      },
    ];
  }
  const own = diskIothread(variant, index);
  // Several disks: one iothread each (round robin). One disk over several iothreads: vq mapping.
  const iothreadProps: Record<string, unknown> =
    variantDisks(variant) > 1 || iothreads.length <= 1
      ? own
        ? { iothread: own }
        : {}
      : {
          'iothread-vq-mapping': iothreadQueues(variant).map((vqs, k) => ({ iothread: iothreads[k], vqs })),
        };
  if (variant.bus === 'virtio-blk') {
    return [
      {
        driver: 'virtio-blk-pci',
        id: names.device,
        ...bus,
        drive: names.formatNode,
        serial: names.serial,
        'num-queues': variant.queues,
        'write-cache': writeCache ? 'on' : 'off',
        ...iothreadProps,
      },
    ];
  }
  return [
    {
      driver: 'virtio-scsi-pci',
      id: names.device,
      ...bus,
      num_queues: variant.queues,
      ...iothreadProps,
    },
    {
      driver: 'scsi-hd',
      id: names.scsiLun,
      bus: `${names.device}.0`,
      drive: names.formatNode,
      serial: names.serial,
      'write-cache': writeCache ? 'on' : 'off',
    },
  ];
}

/** -device text: key=value for flat devices, JSON when a value is structured (iothread-vq-mapping). */
export function formatDevice(props: Record<string, unknown>): string {
  if (Object.values(props).some((v) => typeof v === 'object' && v !== null)) return JSON.stringify(props);
  const { driver, ...rest } = props;
  return [String(driver), ...Object.entries(rest).map(([k, v]) => `${k}=${formatValue(v)}`)].join(',');
}

function formatValue(v: unknown): string {
  if (typeof v === 'boolean') return v ? 'on' : 'off';
  const s = String(v);
  if (s.includes(','))
    throw new UserError(`"${s}" contains a comma, which QEMU's option syntax cannot carry`);
  return s;
}

function noComma(what: string, path: string): string {
  if (path.includes(','))
    throw new UserError(`${what} "${path}" contains a comma, which QEMU cannot take here`);
  return path;
}

const HUGEPAGE_BYTES = 2 * 1024 * 1024;

/** Root ports for test disks: q35's root bus is not hot-pluggable, so every later disk needs one from boot. */
export function testDiskSlots(opts: Pick<QemuArgvOptions, 'study' | 'variant'>): number {
  const studyMost = opts.study.variants ? studyMaxDisks({ variants: opts.study.variants }) : 1;
  return Math.max(variantDisks(opts.variant), studyMost);
}

/**
 * A uefi guest's pflash: OVMF's code read-only and the VM's variable store, as blockdev nodes given
 * to the machine (a second -machine merges into the first). A bios guest keeps QEMU's SeaBIOS.
 */
function firmwareArgv(opts: Pick<QemuArgvOptions, 'study' | 'firmware'>): string[] {
  if ((opts.study.guest.firmware ?? 'bios') === 'bios') return [];
  const fw = opts.firmware;
  if (!fw) throw new UserError(`${opts.study.source}: guest.firmware uefi: no OVMF images given for the VM`);
  if ((opts.study.guest.machine ?? 'q35') !== 'q35')
    throw new UserError(`${opts.study.source}: guest.firmware uefi needs machine q35 (OVMF's pflash)`);
  return [
    '-blockdev',
    JSON.stringify({
      driver: 'file',
      'node-name': FIRMWARE_NODES.code,
      filename: fw.code,
      'read-only': true,
    }),
    '-blockdev',
    JSON.stringify({ driver: 'file', 'node-name': FIRMWARE_NODES.vars, filename: fw.vars }),
    '-machine',
    `pflash0=${FIRMWARE_NODES.code},pflash1=${FIRMWARE_NODES.vars}`,
  ];
}

/** The whole command line, binary first. */
export function qemuArgv(opts: QemuArgvOptions): string[] {
  const { variant, study, accel } = opts;
  const caps = opts.capabilities ?? ASSUMED_CAPABILITIES;
  checkVariant(variant, caps, study.source);
  const paths = runtimePaths(opts.runtimeDir);
  const machine = study.guest.machine ?? DEFAULT_MACHINE;
  const memBytes = study.guest.memoryBytes;
  const memMiB = Math.floor(memBytes / (1024 * 1024));
  if (memBytes % (1024 * 1024) !== 0) {
    throw new UserError(
      `${study.source}: guest.memory must be a whole number of MiB (got ${memBytes} bytes)`,
    );
  }
  if (variant.memory === 'hugepages' && memBytes % HUGEPAGE_BYTES !== 0) {
    throw new UserError(`${study.source}: guest.memory must be a multiple of 2 MiB for hugepages variants`);
  }
  // vhost-user-blk: the daemon reads and writes guest memory itself, so it must be shared with it.
  const shared = variantPath(variant) === 'vhost-user-blk';
  const memBackend =
    variant.memory === 'hugepages'
      ? `memory-backend-file,id=kvmio-mem,size=${memMiB}M,mem-path=/dev/hugepages,prealloc=on,share=${shared ? 'on' : 'off'}`
      : shared
        ? `memory-backend-memfd,id=kvmio-mem,size=${memMiB}M,share=on`
        : `memory-backend-ram,id=kvmio-mem,size=${memMiB}M`;

  const argv = [
    opts.binary ?? opts.capabilities?.binary ?? qemuBinary(),
    '-name',
    `${noComma('VM name', opts.name)},debug-threads=on`,
    '-machine',
    `${machine},memory-backend=kvmio-mem`,
    '-accel',
    accel,
    '-cpu',
    qemuCpuModel(accel),
    // libvirt's topology for <vcpu>N</vcpu> without <topology> (the study's domain): N sockets of one
    // core, so both backends show the guest the same CPUs (QEMU alone would make N cores of one socket).
    '-smp',
    `${study.guest.vcpus},sockets=${study.guest.vcpus},cores=1,threads=1`,
    '-m',
    `${memMiB}M`,
    '-object',
    memBackend,
    '-nodefaults',
    '-display',
    'none',
    '-no-user-config',
    // A guest panic must end QEMU (and fail the point), not reboot into a loop.
    '-no-reboot',
    '-chardev',
    `file,id=kvmio-console,path=${noComma('runtime dir', paths.serialLog)}`,
    '-serial',
    'chardev:kvmio-console',
    '-chardev',
    `socket,id=kvmio-qmp,path=${noComma('runtime dir', paths.qmp)},server=on,wait=off`,
    '-mon',
    'chardev=kvmio-qmp,mode=control',
    '-chardev',
    `socket,id=kvmio-qga,path=${noComma('runtime dir', paths.agent)},server=on,wait=off`,
    '-device',
    'virtio-serial-pci,id=kvmio-vser',
    '-device',
    'virtserialport,chardev=kvmio-qga,name=org.qemu.guest_agent.0',
    '-netdev',
    'user,id=kvmio-net',
    '-device',
    'virtio-net-pci,netdev=kvmio-net,romfile=',
  ];
  argv.push(...firmwareArgv(opts));
  if (opts.image)
    argv.push('-kernel', opts.image.kernel, '-initrd', opts.image.initrd, '-append', opts.image.cmdline);
  for (const id of qemuIothreadIds(variant)) argv.push('-object', `iothread,id=${id}`);
  if (machine === 'q35')
    for (let i = 0; i < testDiskSlots(opts); i++)
      argv.push('-device', `pcie-root-port,id=${testDiskNames(i).rootPort},chassis=${i + 1}`);
  const sockets = daemonSockets(opts.runtimeDir);
  variantDiskPaths(variant, study.disk.path).forEach((path, i) => {
    if (variantPath(variant) === 'vhost-user-blk')
      argv.push(
        '-chardev',
        `socket,id=${testDiskNames(i).chardev},path=${noComma('runtime dir', sockets.vhost(i))}`,
      );
    for (const node of testDiskBlockdevs(
      variant,
      path,
      i,
      study.disk.qcow2,
      sockets,
      omitsRawFormatLayer(caps),
    ))
      argv.push('-blockdev', JSON.stringify(node));
    for (const dev of testDiskDevices(variant, i, machine)) argv.push('-device', formatDevice(dev));
  });
  if (opts.paused) argv.push('-S');
  return argv;
}
