import type { DaemonSockets } from '../qemu/argv.js';
import { exportId } from '../qemu/storage-daemon.js';
import { parseCpuList } from '../study/cpuset.js';
import { imagePath, studyMaxDisks, testDiskPaths, testDiskSerial } from '../study/disks.js';
import { DEFAULT_MACHINE, guestCpuModel } from '../study/guest-shape.js';
import type { Pinning, Qcow2Options, Study, Variant } from '../study/types.js';
import {
  iothreadQueues,
  servedByDaemon,
  variantDetectZeroes,
  variantDiscard,
  variantDisks,
  variantFormat,
  variantPath,
  variantProblem,
} from '../study/variants.js';
import { UserError } from '../util/errors.js';

/**
 * libvirt domain XML for a variant, in the spirit of the seed study's VM definition: iothreads,
 * cputune pinning, `<driver io=… iothread=… queues=…>`, hugepages memoryBacking. Users copy these into
 * their own VMs, so everything that is not a storage knob or needed to boot is left to libvirt's defaults.
 */

/** Namespace of the metadata element that marks domains kvmio made (kvmio never touches others). */
export const KVMIO_XMLNS = 'urn:kvmio:domain:1';

export type { Accel } from '../host/accel.js';

import type { Accel } from '../host/accel.js';

export type NetworkChoice = { type: 'none' } | { type: 'user' } | { type: 'network'; name: string };

/** Who started a domain: lets a later kvmio destroy domains whose owner died. */
export interface DomainOwner {
  host: string;
  pid: number;
}

export interface DiskXmlOptions {
  variant: Variant;
  /** File or block device on the host that runs the VM (a qcow2 variant's image is beside it, PATH.qcow2). */
  diskPath: string;
  /** The study's qcow2 settings (disk.qcow2): the metadata cache size goes into `<driver>`. */
  qcow2?: Qcow2Options;
  /** Default: 'block' for paths under /dev/, else 'file'. */
  diskType?: 'file' | 'block';
  /** libvirt >= 10 with QEMU >= 9: one virtio-blk disk's queues spread over several iothreads. */
  iothreadVqMapping?: boolean;
  /** libvirt >= 11.2 with QEMU >= 10: one virtio-scsi controller's queues over several iothreads. */
  scsiIothreadVqMapping?: boolean;
  /** Which of a multi-disk variant's test disks (0 = the first; serial kvmio-test-<index> after it). */
  index?: number;
  /** Paths vhost-user-blk and nbd: the sockets of the storage daemon kvmio started for the VM. */
  sockets?: DaemonSockets;
}

export interface DomainXmlOptions {
  study: Study;
  variant: Variant;
  /** The builtin guest's kernel and initrd as the libvirt host sees them, and its command line. */
  guest: { kernel: string; initrd: string; cmdline: string };
  accel: Accel;
  name: string;
  /** Host path the serial console is written to; without it the console goes to a pty. */
  consoleLog?: string;
  /** Default: user networking. */
  network?: NetworkChoice;
  owner?: DomainOwner;
  /** Overrides study.disk.path (a host's own disk in a multi-host study). */
  diskPath?: string;
  diskType?: 'file' | 'block';
  /** libvirt >= 10 with QEMU >= 9: one virtio-blk disk's queues spread over several iothreads. */
  iothreadVqMapping?: boolean;
  /** libvirt >= 11.2 with QEMU >= 10: one virtio-scsi controller's queues over several iothreads. */
  scsiIothreadVqMapping?: boolean;
  /** The QEMU binary libvirt runs (`<emulator>`); default: libvirt's own choice. */
  emulator?: string;
  /**
   * A uefi guest's OVMF on the libvirt host: the code image, the variable store template and the
   * domain's own store, which libvirt makes from the template when it is missing.
   */
  firmware?: { code: string; varsTemplate: string; nvram: string };
  /** Paths vhost-user-blk and nbd: the sockets of the storage daemon kvmio started for the VM. */
  sockets?: DaemonSockets;
}

export function escapeXml(value: string | number): string {
  return String(value)
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/'/g, '&apos;')
    .replace(/"/g, '&quot;');
}

function attrs(pairs: Record<string, string | number | undefined>): string {
  return Object.entries(pairs)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => ` ${k}='${escapeXml(v as string | number)}'`)
    .join('');
}

export function diskTypeOf(path: string): 'file' | 'block' {
  return path.startsWith('/dev/') ? 'block' : 'file';
}

/** The guest-visible target of test disk `index`: the guest's only disks (it boots from its initrd). */
export function diskTarget(variant: Variant, index = 0): { dev: string; bus: 'virtio' | 'scsi' } {
  const letter = String.fromCharCode('a'.charCodeAt(0) + index);
  return variant.bus === 'virtio-blk'
    ? { dev: `vd${letter}`, bus: 'virtio' }
    : { dev: `sd${letter}`, bus: 'scsi' };
}

/** Throws a UserError when libvirt (or this libvirt) cannot express the variant. */
export function checkVariant(
  variant: Variant,
  iothreadVqMapping = false,
  scsiIothreadVqMapping = false,
): void {
  const where = `variant ${variant.id}`;
  const problem = variantProblem(variant);
  if (problem) throw new UserError(`${where}: ${problem}`);
  if (!Number.isInteger(variant.queues) || variant.queues < 1) {
    throw new UserError(`${where}: queues must be a whole number >= 1 (got ${variant.queues})`);
  }
  if (!Number.isInteger(variant.iothreads) || variant.iothreads < 0) {
    throw new UserError(`${where}: iothreads must be a whole number >= 0 (got ${variant.iothreads})`);
  }
  const disks = variantDisks(variant);
  if (variant.iothreads > 1 && disks === 1) {
    if (variant.bus === 'virtio-scsi' && !scsiIothreadVqMapping) {
      throw new UserError(
        `${where}: spreading one virtio-scsi controller over ${variant.iothreads} iothreads needs libvirt >= 11.2 with QEMU >= 10.0 (iothread-vq-mapping); this libvirt/QEMU binds a controller to one iothread. Use matrix disks: [${variant.iothreads}] for one iothread per disk`,
      );
    }
    if (variant.bus === 'virtio-blk' && !iothreadVqMapping) {
      throw new UserError(
        `${where}: spreading one virtio-blk disk over ${variant.iothreads} iothreads needs libvirt >= 10.0 with QEMU >= 9.0 (iothread-vq-mapping); this libvirt/QEMU binds a disk to one iothread. Use matrix disks: [${variant.iothreads}] for one iothread per disk`,
      );
    }
    if (variant.queues < variant.iothreads) {
      throw new UserError(
        `${where}: ${variant.iothreads} iothreads need at least as many queues (queues is ${variant.queues})`,
      );
    }
  }
}

/**
 * The iothread (libvirt numbers them from 1) that serves test disk `index` (blk) or its controller
 * (scsi) when each has one; undefined = main loop. Several disks: disk i gets iothread (i mod M) + 1.
 */
export function testDiskIothread(variant: Variant, index = 0): number | undefined {
  if (variantDisks(variant) > 1) return variant.iothreads > 0 ? (index % variant.iothreads) + 1 : undefined;
  return variant.iothreads === 1 ? 1 : undefined;
}

/**
 * `<controller type='scsi' model='virtio-scsi'>` carrying the iothread and queues of a virtio-scsi
 * variant; a multi-disk variant has one controller per disk (the iothread is per controller).
 */
export function scsiControllerXml(variant: Variant, indent = '', index = 0): string {
  const driver = attrs({ queues: variant.queues, iothread: testDiskIothread(variant, index) });
  return [
    `${indent}<controller type='scsi' index='${index}' model='virtio-scsi'>`,
    ...driverXml(driver, variant, `${indent}  `),
    `${indent}</controller>`,
  ].join('\n');
}

/**
 * `<driver …/>`, or with `<iothreads>` when one disk (or controller) is spread over several
 * iothreads: each iothread with the queues it serves, as kvmio's direct backend maps them.
 */
function driverXml(
  driverAttrs: string,
  variant: Variant,
  indent: string,
  opts: { qcow2?: Qcow2Options; spread?: boolean } = {},
): string[] {
  const { qcow2, spread = true } = opts;
  const queues = spread ? iothreadQueues(variant) : [];
  // libvirt's metadata_cache max_size is QEMU's cache-size of the qcow2 node (L2 + refcount caches).
  const cacheBytes = variantFormat(variant) === 'qcow2' ? qcow2?.cacheSizeBytes : undefined;
  const metadataCache =
    cacheBytes === undefined
      ? []
      : [
          `${indent}  <metadata_cache>`,
          `${indent}    <max_size unit='bytes'>${cacheBytes}</max_size>`,
          `${indent}  </metadata_cache>`,
        ];
  if (queues.length === 0 && metadataCache.length === 0) return [`${indent}<driver${driverAttrs}/>`];
  if (queues.length === 0) return [`${indent}<driver${driverAttrs}>`, ...metadataCache, `${indent}</driver>`];
  return [
    `${indent}<driver${driverAttrs}>`,
    ...metadataCache,
    `${indent}  <iothreads>`,
    ...queues.flatMap((vqs, k) => [
      `${indent}    <iothread id='${k + 1}'>`,
      ...vqs.map((q) => `${indent}      <queue id='${q}'/>`),
      `${indent}    </iothread>`,
    ]),
    `${indent}  </iothreads>`,
    `${indent}</driver>`,
  ];
}

/**
 * A test disk the storage daemon serves: `<disk type='vhostuser'>` on its vhost-user-blk socket (no
 * driver knobs: the daemon opens the image; no serial: the export's is fixed), or `<disk
 * type='network'>` with an NBD source on its UNIX socket under the usual target, driver and serial
 * (the aio mode is the daemon's).
 */
function servedDiskXml(opts: DiskXmlOptions, indent: string): string {
  const { variant } = opts;
  const index = opts.index ?? 0;
  if (!opts.sockets) throw new Error(`variant ${variant.id}: the storage daemon's sockets are not known`);
  const target = diskTarget(variant, index);
  if (variantPath(variant) === 'vhost-user-blk') {
    return [
      `${indent}<disk type='vhostuser' device='disk'>`,
      `${indent}  <driver name='qemu' type='raw'${attrs({ queues: variant.queues })}/>`,
      `${indent}  <source type='unix' path='${escapeXml(opts.sockets.vhost(index))}'/>`,
      `${indent}  <target dev='${target.dev}' bus='${target.bus}'/>`,
      `${indent}</disk>`,
    ].join('\n');
  }
  const blk = variant.bus === 'virtio-blk';
  const driver = attrs({
    name: 'qemu',
    type: 'raw',
    cache: variant.cache,
    discard: variantDiscard(variant),
    iothread: blk ? testDiskIothread(variant, index) : undefined,
    queues: blk ? variant.queues : undefined,
  });
  return [
    `${indent}<disk type='network' device='disk'>`,
    ...driverXml(driver, variant, `${indent}  `, { spread: blk }),
    `${indent}  <source protocol='nbd' name='${escapeXml(exportId(index))}'>`,
    `${indent}    <host transport='unix' socket='${escapeXml(opts.sockets.nbd)}'/>`,
    `${indent}  </source>`,
    ...diskTargetXml(variant, index, indent),
  ].join('\n');
}

/** The test disk alone (also what live attach/detach sends to libvirt). */
export function diskXml(opts: DiskXmlOptions, indent = ''): string {
  const { variant } = opts;
  checkVariant(variant, opts.iothreadVqMapping, opts.scsiIothreadVqMapping);
  if (servedByDaemon(variant)) return servedDiskXml(opts, indent);
  const format = variantFormat(variant);
  const diskPath = imagePath(opts.diskPath, format);
  const type = opts.diskType ?? diskTypeOf(diskPath);
  const index = opts.index ?? 0;
  const blk = variant.bus === 'virtio-blk';
  // virtio-scsi takes its iothread and queues on the controller, virtio-blk on the disk.
  const driver = attrs({
    name: 'qemu',
    type: format,
    cache: variant.cache,
    io: variant.aio,
    // Explicit even at libvirt's default (ignore), so both backends open the disk alike.
    discard: variantDiscard(variant),
    detect_zeroes: variantDetectZeroes(variant) === 'off' ? undefined : variantDetectZeroes(variant),
    iothread: blk ? testDiskIothread(variant, index) : undefined,
    // Explicit even for 1: QEMU >= 5.2 otherwise gives one queue per vCPU.
    queues: blk ? variant.queues : undefined,
  });
  const source =
    type === 'block' ? `<source dev='${escapeXml(diskPath)}'/>` : `<source file='${escapeXml(diskPath)}'/>`;
  // A virtio-scsi disk's iothreads are its controller's.
  const driverLines = driverXml(driver, variant, `${indent}  `, { qcow2: opts.qcow2, spread: blk });
  return [
    `${indent}<disk type='${type}' device='disk'>`,
    ...driverLines,
    `${indent}  ${source}`,
    ...diskTargetXml(variant, index, indent),
  ].join('\n');
}

/**
 * How a test disk's element ends, wherever its data comes from: its target, its serial (the guest
 * finds it by serial) and, for several virtio-scsi disks, its own controller (so each has its own
 * iothread).
 */
function diskTargetXml(variant: Variant, index: number, indent: string): string[] {
  const target = diskTarget(variant, index);
  return [
    `${indent}  <target dev='${target.dev}' bus='${target.bus}'/>`,
    `${indent}  <serial>${testDiskSerial(index)}</serial>`,
    ...(variant.bus !== 'virtio-blk' && variantDisks(variant) > 1
      ? [`${indent}  <address type='drive' controller='${index}' bus='0' target='0' unit='0'/>`]
      : []),
    `${indent}</disk>`,
  ];
}

function cputuneXml(pinning: Pinning | undefined, vcpus: number, iothreads: number): string[] {
  if (!pinning) return [];
  const lines: string[] = [];
  if (pinning.vcpus) {
    const cpus = parseCpuList(pinning.vcpus, 'pinning.vcpus');
    for (let i = 0; i < vcpus; i++)
      lines.push(`    <vcpupin vcpu='${i}' cpuset='${cpus[i % cpus.length]}'/>`);
  }
  if (pinning.emulator) {
    parseCpuList(pinning.emulator, 'pinning.emulator');
    lines.push(`    <emulatorpin cpuset='${escapeXml(pinning.emulator)}'/>`);
  }
  if (pinning.iothreads && iothreads > 0) {
    const cpus = parseCpuList(pinning.iothreads, 'pinning.iothreads');
    for (let i = 1; i <= iothreads; i++)
      lines.push(`    <iothreadpin iothread='${i}' cpuset='${cpus[(i - 1) % cpus.length]}'/>`);
  }
  return lines.length ? ['  <cputune>', ...lines, '  </cputune>'] : [];
}

/** The CPU an iothread is pinned to (for iothreads added live), or undefined when not pinned. */
export function iothreadPinCpu(pinning: Pinning | undefined, iothread: number): number | undefined {
  if (!pinning?.iothreads) return undefined;
  const cpus = parseCpuList(pinning.iothreads, 'pinning.iothreads');
  return cpus[(iothread - 1) % cpus.length];
}

function networkXml(network: NetworkChoice): string[] {
  if (network.type === 'none') return [];
  const open =
    network.type === 'user'
      ? `    <interface type='user'>`
      : `    <interface type='network'>\n      <source network='${escapeXml(network.name)}'/>`;
  return [open, `      <model type='virtio'/>`, '    </interface>'];
}

/**
 * A uefi guest's `<loader>` and `<nvram>`, named explicitly (libvirt 9.0 and 11.x read them alike,
 * with no firmware autoselection that could pick a Secure Boot build); nothing for bios (SeaBIOS).
 */
function firmwareXml(opts: DomainXmlOptions, machine: string): string[] {
  if ((opts.study.guest.firmware ?? 'bios') === 'bios') return [];
  const fw = opts.firmware;
  if (!fw)
    throw new UserError(`${opts.study.source}: guest.firmware uefi: no OVMF images given for the domain`);
  if (machine !== 'q35')
    throw new UserError(
      `${opts.study.source}: guest.firmware uefi needs machine q35 (OVMF's pflash), not ${machine}`,
    );
  return [
    `    <loader readonly='yes' type='pflash'>${escapeXml(fw.code)}</loader>`,
    `    <nvram template='${escapeXml(fw.varsTemplate)}'>${escapeXml(fw.nvram)}</nvram>`,
  ];
}

export function domainXml(opts: DomainXmlOptions): string {
  const { study, variant, guest, accel, name } = opts;
  checkVariant(variant, opts.iothreadVqMapping, opts.scsiIothreadVqMapping);
  const diskPath = opts.diskPath ?? study.disk.path;
  const machine = study.guest.machine ?? DEFAULT_MACHINE;
  const memoryKiB = Math.ceil(study.guest.memoryBytes / 1024);
  const lines: string[] = [
    `<domain type='${accel === 'kvm' ? 'kvm' : 'qemu'}'>`,
    `  <name>${escapeXml(name)}</name>`,
  ];
  if (opts.owner) {
    lines.push(
      '  <metadata>',
      `    <kvmio:domain xmlns:kvmio='${KVMIO_XMLNS}'${attrs({
        study: study.name,
        variant: variant.id,
        'owner-host': opts.owner.host,
        'owner-pid': opts.owner.pid,
      })}/>`,
      '  </metadata>',
    );
  }
  lines.push(`  <memory unit='KiB'>${memoryKiB}</memory>`);
  // vhost-user-blk: the storage daemon reads and writes guest memory, so libvirt must share it.
  const shared = variantPath(variant) === 'vhost-user-blk';
  if (variant.memory === 'hugepages' || shared)
    lines.push(
      '  <memoryBacking>',
      variant.memory === 'hugepages' ? '    <hugepages/>' : "    <source type='memfd'/>",
      ...(shared ? ["    <access mode='shared'/>"] : []),
      '  </memoryBacking>',
    );
  lines.push(`  <vcpu placement='static'>${study.guest.vcpus}</vcpu>`);
  // vhost-user-blk's iothreads are the storage daemon's, not QEMU's.
  const iothreads = shared ? 0 : variant.iothreads;
  if (iothreads > 0) lines.push(`  <iothreads>${iothreads}</iothreads>`);
  lines.push(...cputuneXml(study.pinning, study.guest.vcpus, iothreads));
  lines.push(
    '  <os>',
    `    <type arch='x86_64' machine='${machine}'>hvm</type>`,
    ...firmwareXml(opts, machine),
    `    <kernel>${escapeXml(guest.kernel)}</kernel>`,
    `    <initrd>${escapeXml(guest.initrd)}</initrd>`,
    `    <cmdline>${escapeXml(guest.cmdline)}</cmdline>`,
    '  </os>',
    '  <features>',
    '    <acpi/>',
    '  </features>',
  );
  lines.push(`  <cpu mode='${guestCpuModel(accel)}'/>`);
  lines.push('  <on_reboot>destroy</on_reboot>', '  <devices>');
  if (opts.emulator) lines.push(`    <emulator>${escapeXml(opts.emulator)}</emulator>`);
  const paths = testDiskPaths(diskPath, variantDisks(variant));
  paths.forEach((path, index) => {
    lines.push(
      diskXml(
        {
          variant,
          diskPath: path,
          diskType: opts.diskType,
          iothreadVqMapping: opts.iothreadVqMapping,
          scsiIothreadVqMapping: opts.scsiIothreadVqMapping,
          index,
          qcow2: study.disk.qcow2,
          sockets: opts.sockets,
        },
        '    ',
      ),
    );
  });
  if (variant.bus === 'virtio-scsi')
    paths.forEach((_, index) => {
      lines.push(scsiControllerXml(variant, '    ', index));
    });
  // q35's root bus is not hot-pluggable: free root ports for the disks and controllers a live switch plugs.
  // The root complex is named first: libvirt gives index 0 to the first unindexed PCI controller.
  if (machine === 'q35') {
    lines.push(`    <controller type='pci' index='0' model='pcie-root'/>`);
    for (let i = 0; i < 2 * Math.max(paths.length, studyMaxDisks(study)) + 1; i++)
      lines.push(`    <controller type='pci' model='pcie-root-port'/>`);
  }
  lines.push(...networkXml(opts.network ?? { type: 'user' }));
  if (opts.consoleLog) {
    lines.push(
      `    <serial type='file'>`,
      `      <source path='${escapeXml(opts.consoleLog)}'/>`,
      `      <target port='0'/>`,
      '    </serial>',
    );
  } else {
    lines.push(`    <serial type='pty'>`, `      <target port='0'/>`, '    </serial>');
  }
  lines.push(
    `    <controller type='usb' model='none'/>`,
    `    <channel type='unix'>`,
    `      <target type='virtio' name='org.qemu.guest_agent.0'/>`,
    '    </channel>',
    `    <memballoon model='none'/>`,
    '  </devices>',
    '</domain>',
    '',
  );
  return lines.join('\n');
}
