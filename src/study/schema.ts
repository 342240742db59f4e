import { existsSync, statSync } from 'node:fs';
import { totalmem } from 'node:os';
import { dirname, isAbsolute, resolve } from 'node:path';
import { formatBytes } from '../util/units.js';
import { formatCpus, onlineCpus, parseCpuset } from './cpuset.js';
import {
  describe,
  isPlainMap,
  readBool,
  readEnum,
  readInt,
  readList,
  readMap,
  readShare,
  readSize,
  readString,
} from './fields.js';
import {
  DEFAULT_GUEST_FIRMWARE,
  DEFAULT_GUEST_RELEASE,
  GUEST_FIRMWARES,
  GUEST_MIN_MEMORY_MIB,
  GUEST_MIN_MEMORY_MIB_UEFI,
  GUEST_RELEASES,
} from './guest-release.js';
import { DEFAULT_MACHINE, fitGuestToHost, MACHINE_TYPES } from './guest-shape.js';
import { readQcow2 } from './image-schema.js';
import { isLocalLibvirtUri, libvirtUriProblem } from './libvirt-uri.js';
import { LVM_NAME_HELP, LVM_NAME_PATTERN, lvmNameProblem } from './lvm-names.js';
import { readExcludedQemu, readQemuAxis, readQemus } from './qemus.js';
import {
  AIO_MODES,
  BACKENDS,
  BUSES,
  CACHE_MODES,
  DEFAULT_DISCARD,
  DETECT_ZEROES_MODES,
  DISCARD_MODES,
  type DiskSpec,
  type HostSpec,
  IMAGE_FORMATS,
  type LvmSpec,
  MEMORY_BACKINGS,
  type Pinning,
  SERVE_PATHS,
  type Study,
  type Variant,
} from './types.js';
import {
  crossProduct,
  type ExcludeRule,
  idleIothreadsReason,
  impossibleReason,
  type MatrixAxes,
  matchesRule,
  servedByDaemon,
  variantFormat,
  variantId,
  variantProblem,
} from './variants.js';
import { NAME_HELP, NAME_PATTERN, readWorkloads } from './workload-schema.js';
import { formatKeyPath, type KeyPath, type YamlSource } from './yaml-source.js';

const MIB = 1024 ** 2;
const GIB = 1024 ** 3;
const TIB = 1024 ** 4;
const HUGEPAGE = 2 * MIB;

/** Defaults of every optional study key (the README documents the same). */
export const STUDY_DEFAULTS = {
  backend: 'qemu',
  libvirtUri: 'qemu:///system',
  guest: {
    vcpus: 2,
    memoryBytes: GIB,
    count: 1,
    release: DEFAULT_GUEST_RELEASE,
    firmware: DEFAULT_GUEST_FIRMWARE,
  },
  disk: { path: '/var/tmp/kvmio.raw', sizeBytes: 4 * GIB },
  matrix: {
    aio: ['native'],
    iothreads: [1],
    bus: ['virtio-blk'],
    memory: ['4k'],
    queues: [1],
    cache: ['none'],
    disks: [1],
    format: ['raw'],
    discard: [DEFAULT_DISCARD],
    detect_zeroes: ['off'],
    path: ['qemu'],
  } satisfies MatrixAxes,
  baseline: false,
  repetitions: 3,
} as const;

const TOP_KEYS = [
  'name',
  'description',
  'backend',
  'libvirt',
  'guest',
  'disk',
  'matrix',
  'exclude',
  'pinning',
  'baseline',
  'repetitions',
  'adaptive',
  'race',
  'workloads',
  'hosts',
  'qemus',
  'fit_to_host',
];
const MATRIX_KEYS = [
  'aio',
  'iothreads',
  'bus',
  'memory',
  'queues',
  'cache',
  'disks',
  'format',
  'discard',
  'detect_zeroes',
  'path',
  'qemu',
] as const;
/** Limits of what one study may ask for: each far beyond a real study, all below exhausting memory. */
const MAX_VARIANTS = 1000;
const MAX_PLAN_POINTS = 20_000;
/** Test disks per variant: each is its own PCI root port (multi-disk) and raw file. */
const MAX_DISKS = 16;
type MatrixKey = (typeof MATRIX_KEYS)[number];

/** Each axis's allowed values: a list of names, or an integer range. */
const AXIS_VALUES: Record<Exclude<MatrixKey, 'qemu'>, readonly string[] | { min: number; max: number }> = {
  aio: AIO_MODES,
  bus: BUSES,
  memory: MEMORY_BACKINGS,
  cache: CACHE_MODES,
  iothreads: { min: 0, max: 64 },
  queues: { min: 1, max: 64 },
  disks: { min: 1, max: MAX_DISKS },
  format: IMAGE_FORMATS,
  discard: DISCARD_MODES,
  detect_zeroes: DETECT_ZEROES_MODES,
  path: SERVE_PATHS,
};

function readAxisValue(
  src: YamlSource,
  path: KeyPath,
  key: Exclude<MatrixKey, 'qemu'>,
  value: unknown,
): string | number {
  const allowed = AXIS_VALUES[key];
  return 'min' in allowed
    ? readInt(src, path, value, allowed.min, allowed.max)
    : readEnum(src, path, value, allowed);
}

function readMatrix(src: YamlSource, value: unknown, qemus: Map<string, string>): MatrixAxes {
  const d = STUDY_DEFAULTS.matrix;
  if (value === undefined) return structuredClone(d) as MatrixAxes;
  const m = readMap(src, ['matrix'], value, MATRIX_KEYS);
  const axis = (key: Exclude<MatrixKey, 'qemu'>) =>
    m[key] === undefined
      ? [...d[key]]
      : readList(src, ['matrix', key], m[key], (p, v) => readAxisValue(src, p, key, v), {
          allowScalar: true,
          unique: true,
          nonEmpty: true,
        });
  return {
    aio: axis('aio'),
    iothreads: axis('iothreads'),
    bus: axis('bus'),
    memory: axis('memory'),
    queues: axis('queues'),
    cache: axis('cache'),
    disks: axis('disks'),
    format: axis('format'),
    discard: axis('discard'),
    detect_zeroes: axis('detect_zeroes'),
    path: axis('path'),
    ...(m.qemu === undefined ? {} : { qemu: readQemuAxis(src, m.qemu, qemus) }),
  } as MatrixAxes;
}

function readExclude(src: YamlSource, value: unknown, qemus: MatrixAxes['qemu']): ExcludeRule[] {
  if (value === undefined) return [];
  return readList(src, ['exclude'], value, (path, item) => {
    const rule = readMap(src, path, item, MATRIX_KEYS);
    if (Object.keys(rule).length === 0)
      src.fail(path, `is empty: it would exclude every variant; use keys: ${MATRIX_KEYS.join(', ')}`);
    const out: Record<string, (string | number)[]> = {};
    for (const key of MATRIX_KEYS) {
      if (rule[key] === undefined) continue;
      out[key] = readList(
        src,
        [...path, key],
        rule[key],
        (p, v) => (key === 'qemu' ? readExcludedQemu(src, p, v, qemus) : readAxisValue(src, p, key, v)),
        { allowScalar: true, nonEmpty: true },
      );
    }
    return out as ExcludeRule;
  });
}

/** Matrix cross product, minus `exclude`, minus what QEMU cannot run (with a note). */
function expandVariants(
  src: YamlSource,
  matrix: MatrixAxes,
  exclude: ExcludeRule[],
  notes: string[],
): Variant[] {
  const count = Object.values(matrix).reduce((n, axis) => n * (axis?.length ?? 1), 1);
  if (count > MAX_VARIANTS)
    src.fail(
      ['matrix'],
      `has ${count} combinations, over the limit of ${MAX_VARIANTS} variants for a study; split it into several studies`,
    );
  const all = crossProduct(matrix);
  exclude.forEach((rule, i) => {
    if (!all.some((v) => matchesRule(v, rule))) notes.push(`exclude[${i}] matches no variant of the matrix`);
  });
  const kept = all.filter((v) => !exclude.some((rule) => matchesRule(v, rule)));
  if (kept.length === 0)
    src.fail(['exclude'], `leaves no variant: every one of the matrix's ${all.length} variants is excluded`);
  const idle = kept.filter((v) => !impossibleReason(v) && idleIothreadsReason(v));
  for (const v of idle) notes.push(`${variantId(v)} left out: ${idleIothreadsReason(v)}`);
  const fitting = kept.filter((v) => !idle.includes(v));
  const possible = fitting.filter((v) => !impossibleReason(v));
  const impossible = fitting.filter((v) => impossibleReason(v));
  if (possible.length === 0 && impossible.length === 0) {
    src.fail(
      ['matrix', 'disks'],
      `leaves no variant: ${idleIothreadsReason(idle[0]!)}; use at least as many disks as iothreads`,
    );
  }
  if (possible.length === 0) {
    src.fail(['matrix'], `every combination is impossible: ${variantProblem(impossible[0]!)}`);
  }
  for (const v of impossible) {
    notes.push(`${variantId(v)} left out: ${impossibleReason(v)}`);
  }
  return possible.map((v) => ({ id: variantId(v), ...v }));
}

const CPUSET_HELP = 'a cpuset list such as "0-1,4" (CPU numbers and ranges, comma-separated)';

function readCpuset(src: YamlSource, path: KeyPath, value: unknown): string {
  const text = typeof value === 'number' && Number.isInteger(value) ? String(value) : value;
  if (typeof text !== 'string') src.fail(path, `is ${describe(value)}, expected ${CPUSET_HELP}`);
  if (!parseCpuset(text)) src.fail(path, `${describe(value)} is not ${CPUSET_HELP}`);
  return text.replace(/\s+/g, '');
}

/**
 * Pinning names CPUs of the machine the VMs run on: checked against this host's online CPUs when
 * the study runs here (`hostCpus`), since taskset and libvirt refuse the others only at boot.
 */
function readPinning(
  src: YamlSource,
  value: unknown,
  vcpus: number,
  hostCpus: number[] | undefined,
): Pinning | undefined {
  if (value === undefined) return undefined;
  const p = readMap(src, ['pinning'], value, ['vcpus', 'emulator', 'iothreads']);
  const out: Pinning = {};
  const readCpus = (key: 'vcpus' | 'emulator' | 'iothreads') => {
    const set = readCpuset(src, ['pinning', key], p[key]);
    const count = parseCpuset(set)!.length;
    if (key === 'vcpus' && count < vcpus) {
      src.fail(
        ['pinning', 'vcpus'],
        `lists ${count} CPU(s) but guest.vcpus is ${vcpus}: vCPU i is pinned to the i-th CPU of the list`,
      );
    }
    const missing = hostCpus && parseCpuset(set)!.filter((cpu) => !hostCpus.includes(cpu));
    if (missing && missing.length > 0)
      src.fail(
        ['pinning', key],
        `names CPU ${missing.slice(0, 8).join(', ')}${missing.length > 8 ? ', …' : ''}, which this host does not have (online: ${formatCpus(hostCpus!)})`,
      );
    return set;
  };
  if (p.vcpus !== undefined) {
    out.vcpus = readCpus('vcpus');
  }
  if (p.emulator !== undefined) out.emulator = readCpus('emulator');
  if (p.iothreads !== undefined) out.iothreads = readCpus('iothreads');
  return out;
}

function readLibvirtUri(src: YamlSource, path: KeyPath, value: unknown): string {
  const uri = readString(src, path, value);
  const problem = libvirtUriProblem(uri);
  if (problem) src.fail(path, `${describe(uri)} ${problem}`);
  return uri;
}

/**
 * Characters a disk path may hold. fio splits `--filename=` at ":" and expands `$` names, and QEMU
 * and libvirt options give "," and quotes meaning: a path of plain characters reaches every tool
 * as the same file, the one the data guard checked.
 */
const DISK_PATH = /^\/[A-Za-z0-9._+@%~/-]*$/;
const DISK_PATH_HELP = 'letters, digits and / . _ + @ % ~ - (no spaces, ":", ",", "$" or quotes)';

function readDiskPath(src: YamlSource, path: KeyPath, value: unknown): string {
  const p = readString(src, path, value);
  if (!isAbsolute(p))
    src.fail(
      path,
      `${describe(value)} is not an absolute path: give a raw file or a block device, e.g. /var/tmp/kvmio.raw`,
    );
  if (!DISK_PATH.test(p)) src.fail(path, `${describe(value)} is not allowed: ${DISK_PATH_HELP}`);
  if (p.split('/').includes('..')) src.fail(path, `${describe(value)} is not allowed: no ".." components`);
  return p;
}

/** disk.lvm: a scratch LV's volume group (and thin pool) by LVM's own name rules, never a path. */
function readLvm(src: YamlSource, path: KeyPath, value: unknown): LvmSpec {
  const l = readMap(src, path, value, ['vg', 'size', 'thin']);
  const name = (key: 'vg' | 'thin') => {
    const text = readString(src, [...path, key], l[key], LVM_NAME_PATTERN, LVM_NAME_HELP);
    const problem = lvmNameProblem(text);
    if (problem) src.fail([...path, key], `${describe(text)} ${problem}`);
    return text;
  };
  if (l.vg === undefined)
    src.fail([...path, 'vg'], 'missing: the volume group kvmio makes its scratch LV in, e.g. vg: pve');
  if (l.size === undefined) src.fail([...path, 'size'], "missing: the scratch LV's size, e.g. size: 4GiB");
  return {
    vg: name('vg'),
    sizeBytes: readSize(src, [...path, 'size'], l.size, { min: 16 * MIB, max: 64 * TIB }),
    ...(l.thin === undefined ? {} : { thinPool: name('thin') }),
  };
}

function readDisk(src: YamlSource, path: KeyPath, value: unknown, fallback: DiskSpec): DiskSpec {
  if (value === undefined) return { ...fallback };
  const d = readMap(src, path, value, ['path', 'size', 'qcow2', 'lvm']);
  if (d.lvm !== undefined) {
    const other = ['path', 'size', 'qcow2'].find((k) => d[k] !== undefined);
    if (other)
      src.fail(
        [...path, other],
        'cannot go with disk.lvm: the scratch LV is the disk (its size is disk.lvm.size); remove one of them',
      );
    const lvm = readLvm(src, [...path, 'lvm'], d.lvm);
    // Stands for the LV until the run makes it (named kvmio-<pid>-<n>, see safety/lvm.ts).
    return { path: `/dev/${lvm.vg}/kvmio-scratch`, sizeBytes: lvm.sizeBytes, lvm };
  }
  const diskPath = d.path === undefined ? fallback.path : readDiskPath(src, [...path, 'path'], d.path);
  // A device's size is its own unless a smaller one is asked for: 0 stands for the whole device.
  const wholeDevice = d.path !== undefined && diskPath.startsWith('/dev/');
  const qcow2 = d.qcow2 === undefined ? fallback.qcow2 : readQcow2(src, [...path, 'qcow2'], d.qcow2);
  return {
    ...(qcow2 ? { qcow2 } : {}),
    path: diskPath,
    sizeBytes:
      d.size === undefined
        ? wholeDevice
          ? 0
          : fallback.sizeBytes
        : readSize(src, [...path, 'size'], d.size, { min: 16 * MIB, max: 64 * TIB }),
  };
}

function readHosts(src: YamlSource, value: unknown, disk: DiskSpec, backend: string): HostSpec[] {
  if (value === undefined) return [];
  if (backend !== 'libvirt')
    src.fail(
      ['hosts'],
      `needs backend: libvirt (hosts are libvirt URIs; backend: ${backend} runs on this machine only)`,
    );
  const hosts = readList(src, ['hosts'], value, (path, item) => {
    const h = readMap(src, path, item, ['name', 'uri', 'disk']);
    if (h.name === undefined) src.fail([...path, 'name'], 'missing: every host needs a name');
    if (h.uri === undefined)
      src.fail([...path, 'uri'], 'missing: a libvirt URI such as qemu+ssh://root@host/system');
    const host: HostSpec = {
      name: readString(src, [...path, 'name'], h.name, NAME_PATTERN, NAME_HELP),
      uri: readLibvirtUri(src, [...path, 'uri'], h.uri),
    };
    if (h.disk !== undefined) host.disk = readDisk(src, [...path, 'disk'], h.disk, disk);
    return host;
  });
  hosts.forEach((h, i) => {
    const first = hosts.findIndex((o) => o.name === h.name);
    if (first !== i)
      src.fail(
        ['hosts', i, 'name'],
        `"${h.name}" is already the name of hosts[${first}]: host names must be unique`,
      );
  });
  return hosts;
}

/** Checks a parsed YAML study against the contract and fills in defaults. */
export function validateStudy(src: YamlSource, defaultName: string, baseDir: string): Study {
  if (src.data === null || src.data === undefined) {
    src.fail([], 'the file is empty: a study needs at least a workloads: list');
  }
  if (!isPlainMap(src.data))
    src.fail([], `is ${describe(src.data)}, expected a map with keys: ${TOP_KEYS.join(', ')}`);
  const top = readMap(src, [], src.data, TOP_KEYS);
  const notes: string[] = [];

  const name =
    top.name === undefined ? defaultName : readString(src, ['name'], top.name, NAME_PATTERN, NAME_HELP);
  const backend =
    top.backend === undefined ? STUDY_DEFAULTS.backend : readEnum(src, ['backend'], top.backend, BACKENDS);

  let uri: string = STUDY_DEFAULTS.libvirtUri;
  if (top.libvirt !== undefined) {
    const l = readMap(src, ['libvirt'], top.libvirt, ['uri']);
    if (l.uri !== undefined) {
      uri = readLibvirtUri(src, ['libvirt', 'uri'], l.uri);
    }
  }

  const g =
    top.guest === undefined
      ? {}
      : readMap(src, ['guest'], top.guest, [
          'vcpus',
          'memory',
          'count',
          'domain',
          'release',
          'machine',
          'firmware',
        ]);
  const firmware =
    g.firmware === undefined
      ? STUDY_DEFAULTS.guest.firmware
      : readEnum(src, ['guest', 'firmware'], g.firmware, GUEST_FIRMWARES);
  const guest: Study['guest'] = {
    vcpus:
      g.vcpus === undefined ? STUDY_DEFAULTS.guest.vcpus : readInt(src, ['guest', 'vcpus'], g.vcpus, 1, 256),
    memoryBytes:
      g.memory === undefined
        ? STUDY_DEFAULTS.guest.memoryBytes
        : readSize(src, ['guest', 'memory'], g.memory, {
            // The builtin guest keeps its root filesystem in RAM; a user's own domain may need less.
            min: (g.domain === undefined ? GUEST_MIN_MEMORY_MIB : 128) * MIB,
            max: 4 * TIB,
            multipleOf: MIB,
          }),
    count:
      g.count === undefined ? STUDY_DEFAULTS.guest.count : readInt(src, ['guest', 'count'], g.count, 1, 16),
    release:
      g.release === undefined
        ? STUDY_DEFAULTS.guest.release
        : readEnum(src, ['guest', 'release'], g.release, GUEST_RELEASES),
    machine:
      g.machine === undefined
        ? DEFAULT_MACHINE
        : readEnum(src, ['guest', 'machine'], g.machine, MACHINE_TYPES),
    firmware,
  };
  // OVMF runs on q35 here, as the study's pc-q35 UEFI guest.
  if (firmware === 'uefi' && guest.machine !== 'q35')
    src.fail(
      ['guest', 'firmware'],
      `uefi needs machine q35 (guest.machine is ${guest.machine}): remove one of them`,
    );
  if (firmware === 'uefi' && guest.memoryBytes < GUEST_MIN_MEMORY_MIB_UEFI * MIB)
    src.fail(
      ['guest', 'memory'],
      `${formatBytes(guest.memoryBytes)} is too little for the builtin guest under uefi: OVMF keeps a copy of the initramfs beside the kernel's, so it needs at least ${GUEST_MIN_MEMORY_MIB_UEFI} MiB`,
    );
  if (g.domain !== undefined) {
    const given = readString(src, ['guest', 'domain'], g.domain);
    if (backend !== 'libvirt')
      src.fail(
        ['guest', 'domain'],
        'needs backend: libvirt (a libvirt domain XML is varied through libvirt)',
      );
    if (g.vcpus !== undefined || g.memory !== undefined)
      src.fail(
        ['guest', 'domain'],
        'comes with its own <vcpu> and <memory>: remove guest.vcpus and guest.memory (they size the builtin guest)',
      );
    if (g.machine !== undefined)
      src.fail(
        ['guest', 'domain'],
        'comes with its own machine type (<os><type machine=…>): remove guest.machine (it shapes the builtin guest)',
      );
    if (g.firmware !== undefined)
      src.fail(
        ['guest', 'firmware'],
        "is the builtin guest's: a domain of your own keeps its own <os> firmware; remove guest.firmware",
      );
    // A path (has a slash or ends in .xml) names a file; anything else, a domain defined in libvirt.
    if (given.includes('/') || given.endsWith('.xml')) {
      const file = resolve(baseDir, given);
      if (!existsSync(file) || !statSync(file).isFile())
        src.fail(['guest', 'domain'], `${describe(given)}: no such file (looked for ${file})`);
      guest.domain = { file };
    } else if (/^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$/.test(given)) {
      guest.domain = { name: given };
    } else {
      src.fail(
        ['guest', 'domain'],
        `${describe(given)}: neither a domain XML file (a path with / or ending in .xml) nor a libvirt domain name (letters, digits and _.+-)`,
      );
    }
  }

  const disk = readDisk(src, ['disk'], top.disk, { ...STUDY_DEFAULTS.disk });
  const qemus = readQemus(src, top.qemus);
  const matrix = readMatrix(src, top.matrix, qemus);
  if (qemus.size > 0 && !matrix.qemu)
    src.fail(['qemus'], 'names QEMUs but matrix.qemu uses none of them: add matrix: { qemu: [NAME, …] }');
  for (const name of qemus.keys())
    if (matrix.qemu && !matrix.qemu.some((q) => q.name === name))
      notes.push(`qemus.${name} is not in matrix.qemu: no variant runs on it`);
  if (matrix.memory.includes('hugepages') && guest.memoryBytes % HUGEPAGE !== 0) {
    src.fail(
      ['guest', 'memory'],
      `${formatBytes(guest.memoryBytes)} is not a multiple of 2 MiB, which hugepages variants need`,
    );
  }
  const variants = expandVariants(src, matrix, readExclude(src, top.exclude, matrix.qemu), notes);
  if (disk.lvm) checkLvmStudy(src, variants, guest.count, backend, uri, top.hosts);
  checkMultiDisk(src, variants, disk, top.hosts);
  checkImageFormats(src, variants, disk, backend, top.hosts);
  if (
    variants.some((v) => variantFormat(v) !== 'raw') &&
    (top.hosts !== undefined || !isLocalLibvirtUri(uri)) &&
    backend === 'libvirt'
  )
    src.fail(
      ['matrix', 'format'],
      'qcow2 runs on this machine only: kvmio makes the image here with qemu-img; remove hosts (or the remote libvirt.uri), or use format raw',
    );

  const repetitions =
    top.repetitions === undefined
      ? STUDY_DEFAULTS.repetitions
      : readInt(src, ['repetitions'], top.repetitions, 1, 1000);
  const study: Study = {
    name,
    source: src.file,
    backend,
    libvirt: { uri },
    guest,
    disk,
    variants,
    baseline:
      top.baseline === undefined ? STUDY_DEFAULTS.baseline : readBool(src, ['baseline'], top.baseline),
    repetitions,
    workloads: readWorkloads(src, top.workloads),
    hosts: readHosts(src, top.hosts, disk, backend),
    notes,
  };
  if (top.description !== undefined) study.description = readString(src, ['description'], top.description);
  if (guest.domain) {
    const remote = (study.hosts.length ? study.hosts.map((h) => h.uri) : [uri]).find(
      (u) => !isLocalLibvirtUri(u),
    );
    if (remote)
      src.fail(
        ['guest', 'domain'],
        `runs on a local libvirt only (kvmio makes the throwaway overlays of its disks and checks who uses them on this machine); ${remote} is remote`,
      );
  }
  // The VMs run on this machine unless hosts or a remote libvirt URI name other machines.
  const runsHere = study.hosts.length === 0 && (backend === 'qemu' || isLocalLibvirtUri(uri));
  if (matrix.qemu && !runsHere)
    src.fail(
      ['matrix', 'qemu'],
      'names QEMU binaries of this machine, but the VMs run elsewhere (hosts: or a remote libvirt URI): use it with VMs on this machine',
    );
  if (variants.some(servedByDaemon) && !runsHere)
    src.fail(
      ['matrix', 'path'],
      `${SERVE_PATHS.filter((p) => p !== 'qemu').join(' and ')} run on this machine only: kvmio starts qemu-storage-daemon here beside QEMU; remove hosts (or the remote libvirt.uri), or use path qemu`,
    );
  if (variants.some(servedByDaemon) && guest.domain)
    src.fail(
      ['matrix', 'path'],
      "runs with kvmio's builtin guest only: a user's own domain keeps its disks and memory backing; use path qemu with guest.domain",
    );
  if (matrix.qemu && guest.domain)
    src.fail(
      ['matrix', 'qemu'],
      "cannot vary the QEMU of guest.domain: a user's own domain keeps its <emulator>",
    );
  const fit = top.fit_to_host === undefined ? false : readBool(src, ['fit_to_host'], top.fit_to_host);
  if (fit && !runsHere)
    src.fail(
      ['fit_to_host'],
      'fits the guest to this machine, but the VMs run elsewhere (hosts: or a remote libvirt.uri): remove it and size guest.vcpus, guest.memory and pinning for those hosts',
    );
  if (fit && guest.domain)
    src.fail(
      ['fit_to_host'],
      'fits the builtin guest; guest.domain keeps its own <vcpu>, <memory> and <cputune>: remove it',
    );
  const hostCpus = runsHere ? onlineCpus() : undefined;
  const pinning = readPinning(src, top.pinning, guest.vcpus, fit ? undefined : hostCpus);
  if (pinning) study.pinning = pinning;
  if (fit) {
    if (!hostCpus)
      src.fail(['fit_to_host'], "cannot read this host's online CPUs (/sys/devices/system/cpu/online)");
    const fitted = fitGuestToHost(
      { ...guest, pinning },
      { cpus: hostCpus, memoryBytes: totalmem() },
      firmware === 'uefi' ? GUEST_MIN_MEMORY_MIB_UEFI : GUEST_MIN_MEMORY_MIB,
    );
    guest.vcpus = fitted.vcpus;
    guest.memoryBytes = fitted.memoryBytes;
    if (fitted.pinning) study.pinning = fitted.pinning;
    else delete study.pinning;
    notes.push(...fitted.notes.map((n) => `fit_to_host: ${n}`));
  }
  if (top.adaptive !== undefined) {
    const a = readMap(src, ['adaptive'], top.adaptive, ['ci', 'max']);
    if (a.ci === undefined)
      src.fail(['adaptive', 'ci'], 'missing: the target 95% confidence-interval half-width, e.g. "5%"');
    const ciShare = readShare(src, ['adaptive', 'ci'], a.ci, 0.001, 0.5);
    const maxRepetitions =
      a.max === undefined ? Math.max(10, repetitions) : readInt(src, ['adaptive', 'max'], a.max, 1, 1000);
    if (maxRepetitions < repetitions)
      src.fail(
        ['adaptive', 'max'],
        `${maxRepetitions} is below repetitions (${repetitions}): it must be at least that`,
      );
    study.adaptive = { ciShare, maxRepetitions };
  }
  if (top.race !== undefined && top.race !== false) {
    if (typeof top.race !== 'boolean' && !(top.race !== null && typeof top.race === 'object'))
      src.fail(['race'], 'expected true, false or a map with keys: min');
    const r = top.race === true ? {} : readMap(src, ['race'], top.race, ['min']);
    const min = r.min === undefined ? RACE_MIN_DEFAULT : readInt(src, ['race', 'min'], r.min, 2, 1000);
    study.race = { minRepetitions: min };
    checkRace(study, (problem) => src.fail(['race'], problem));
  }
  const points =
    (variants.length + (study.baseline ? 1 : 0)) *
    study.workloads.length *
    (study.adaptive?.maxRepetitions ?? repetitions) *
    Math.max(1, study.hosts.length);
  if (points > MAX_PLAN_POINTS)
    src.fail(
      ['repetitions'],
      `the plan would have ${points} points (variants × workloads × repetitions × hosts), over the limit of ${MAX_PLAN_POINTS}; split the study`,
    );
  checkSizes(src, study);
  return study;
}

/** The fewest repetitions a raced comparison gets: protects against an early lucky round. */
export const RACE_MIN_DEFAULT = 3;

/** Racing stops rounds early within `repetitions`; adaptive adds rounds after them: one or the other. */
export function checkRace(study: Study, fail: (problem: string) => never): void {
  if (!study.race) return;
  if (study.adaptive)
    fail('racing stops repetitions early and adaptive adds more: use one of race or adaptive');
  if (study.repetitions <= study.race.minRepetitions)
    fail(
      `racing needs repetitions (the maximum, now ${study.repetitions}) above its minimum of ${study.race.minRepetitions}`,
    );
}

/** disk.path and each host's own disk.path, with their key paths. */
function diskPaths(disk: DiskSpec, hostsValue: unknown): Array<[KeyPath, string]> {
  const out: Array<[KeyPath, string]> = [[['disk', 'path'], disk.path]];
  if (Array.isArray(hostsValue)) {
    hostsValue.forEach((h, i) => {
      const p = isPlainMap(h) && isPlainMap(h.disk) ? h.disk.path : undefined;
      if (typeof p === 'string') out.push([['hosts', i, 'disk', 'path'], p]);
    });
  }
  return out;
}

/**
 * A scratch LV is one block device on this machine: one disk, one guest, raw, VMs here (kvmio runs
 * lvcreate and lvremove where it runs).
 */
function checkLvmStudy(
  src: YamlSource,
  variants: Variant[],
  guests: number,
  backend: string,
  uri: string,
  hostsValue: unknown,
): void {
  const fail = (problem: string) => src.fail(['disk', 'lvm'], problem);
  if (hostsValue !== undefined || (backend === 'libvirt' && !isLocalLibvirtUri(uri)))
    fail('makes the LV on this machine: remove hosts (or the remote libvirt.uri)');
  if (variants.some((v) => (v.disks ?? 1) > 1)) fail('gives one test disk: use matrix disks: [1]');
  if (variants.some((v) => variantFormat(v) !== 'raw'))
    fail('is a block device: use matrix format: [raw] (qcow2 images are files beside disk.path)');
  if (guests > 1) fail('gives one guest a disk: use guest.count 1');
}

/** Extra test disks are files next to disk.path (PATH.1, PATH.2, …): a block device cannot have those. */
function checkMultiDisk(src: YamlSource, variants: Variant[], disk: DiskSpec, hostsValue: unknown): void {
  const most = variants.reduce((n, v) => Math.max(n, v.disks ?? 1), 1);
  if (most <= 1) return;
  const check = (path: KeyPath, p: string) => {
    if (p.startsWith('/dev/'))
      src.fail(
        path,
        `${describe(p)} is a block device, but matrix.disks asks for ${most} disks: multi-disk variants need a raw file path (kvmio adds ${p}.1 … next to it); give a file path or use disks: [1]`,
      );
  };
  for (const [path, p] of diskPaths(disk, hostsValue)) check(path, p);
}

/**
 * qcow2 variants get an image file beside disk.path (PATH.qcow2), made from the filled raw file: a
 * block device has no beside. libvirt sets only QEMU's combined cache-size, never l2-cache-size.
 */
function checkImageFormats(
  src: YamlSource,
  variants: Variant[],
  disk: DiskSpec,
  backend: string,
  hostsValue: unknown,
): void {
  const qcow2 = variants.some((v) => variantFormat(v) === 'qcow2');
  if (!qcow2) {
    if (disk.qcow2)
      src.fail(['disk', 'qcow2'], 'is set but no variant uses format qcow2: add qcow2 to matrix.format');
    return;
  }
  const check = (path: KeyPath, p: string) => {
    if (p.startsWith('/dev/'))
      src.fail(
        path,
        `${describe(p)} is a block device, but matrix.format has qcow2: kvmio makes the qcow2 image as a file beside disk.path (PATH.qcow2); give a file path`,
      );
  };
  for (const [path, p] of diskPaths(disk, hostsValue)) check(path, p);
  if (backend === 'libvirt' && disk.qcow2?.l2CacheSizeBytes !== undefined)
    src.fail(
      ['disk', 'qcow2', 'l2_cache_size'],
      "is not expressible in libvirt: <driver><metadata_cache><max_size> sets QEMU's combined cache-size (L2 and refcount caches); use disk.qcow2.cache_size with backend libvirt",
    );
}

/** A workload that touches more than the disk holds fails late, mid-run: catch it here. */
function checkSizes(src: YamlSource, study: Study): void {
  const disks: { path: KeyPath; disk: DiskSpec }[] = [
    { path: ['disk'], disk: study.disk },
    ...study.hosts.flatMap((h, i) => (h.disk ? [{ path: ['hosts', i, 'disk'], disk: h.disk }] : [])),
  ];
  study.workloads.forEach((w, i) => {
    const needed =
      w.kind === 'rsync'
        ? w.files * (w.sizeMaxBytes ?? w.sizeBytes)
        : w.kind === 'pgbench'
          ? 0
          : (w.sizeBytes ?? 0);
    for (const { path, disk } of disks) {
      // A whole device (size 0) is measured at run time, against its real size.
      if (disk.sizeBytes > 0 && needed > disk.sizeBytes) {
        const key = w.kind === 'rsync' ? 'files' : 'size';
        src.fail(
          ['workloads', i, key],
          `needs ${formatBytes(needed)} but ${formatKeyPath(path)}.size is ${formatBytes(disk.sizeBytes)}`,
        );
      }
    }
  });
}

export function studyBaseDir(file: string): string {
  return dirname(resolve(file));
}
