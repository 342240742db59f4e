export type { MetricRow } from './results.js';

import type { GuestFirmware, GuestRelease } from './guest-release.js';
import type { MachineType } from './guest-shape.js';

/**
 * The study model: what a study file describes once it is validated. Every other module works from
 * these types, never from raw YAML.
 */

export const AIO_MODES = ['threads', 'native', 'io_uring'] as const;
export type AioMode = (typeof AIO_MODES)[number];

export const BUSES = ['virtio-blk', 'virtio-scsi'] as const;
export type Bus = (typeof BUSES)[number];

export const MEMORY_BACKINGS = ['4k', 'hugepages'] as const;
export type MemoryBacking = (typeof MEMORY_BACKINGS)[number];

export const CACHE_MODES = ['none', 'directsync', 'writethrough', 'writeback', 'unsafe'] as const;
export type CacheMode = (typeof CACHE_MODES)[number];

/**
 * What QEMU does with a guest's discard (TRIM/UNMAP) requests: drop them (ignore) or pass them down
 * to the file or device (unmap: holes in a file, freed blocks in a thin pool).
 */
export const DISCARD_MODES = ['ignore', 'unmap'] as const;
export type DiscardMode = (typeof DISCARD_MODES)[number];
/** The discard mode a variant without one gets: what kvmio's disks have always been opened with. */
export const DEFAULT_DISCARD: DiscardMode = 'unmap';

/** Whether QEMU looks for all-zero writes: off, on (written as write-zeroes), unmap (discarded). */
export const DETECT_ZEROES_MODES = ['off', 'on', 'unmap'] as const;
export type DetectZeroesMode = (typeof DETECT_ZEROES_MODES)[number];

/** Image formats of the test disk: the file or device as is, or a qcow2 image (made by kvmio). */
export const IMAGE_FORMATS = ['raw', 'qcow2'] as const;
export type ImageFormat = (typeof IMAGE_FORMATS)[number];

/**
 * Where the test disk's I/O is served: by QEMU's own block layer, or by a qemu-storage-daemon kvmio
 * starts beside QEMU, exported over vhost-user-blk (the guest's virtqueues processed in the daemon,
 * guest memory shared with it) or over NBD on a UNIX socket (QEMU's NBD client under the same device).
 */
export const SERVE_PATHS = ['qemu', 'vhost-user-blk', 'nbd'] as const;
export type ServePath = (typeof SERVE_PATHS)[number];

export const QCOW2_PREALLOCATIONS = ['off', 'metadata', 'falloc', 'full'] as const;
export type Qcow2Preallocation = (typeof QCOW2_PREALLOCATIONS)[number];

/** How kvmio makes (qemu-img create -o) and opens (qcow2 driver options) the qcow2 images of a study. */
export interface Qcow2Options {
  clusterSizeBytes: number;
  preallocation: Qcow2Preallocation;
  lazyRefcounts: boolean;
  /** QEMU's l2-cache-size (direct backend only); undefined = QEMU's default. */
  l2CacheSizeBytes?: number;
  /** QEMU's cache-size (L2 + refcount caches; libvirt's metadata_cache max_size); undefined = default. */
  cacheSizeBytes?: number;
}

export const BACKENDS = ['qemu', 'libvirt'] as const;
export type Backend = (typeof BACKENDS)[number];

/** One VM disk configuration of the matrix. `id` is readable and stable, e.g. `blk-native-io1-4k`. */
export interface Variant {
  id: string;
  aio: AioMode;
  /** 0 = the disk is served by QEMU's main loop. */
  iothreads: number;
  bus: Bus;
  memory: MemoryBacking;
  queues: number;
  cache: CacheMode;
  /**
   * Test disks (default 1). Disk 0 is disk.path, disk i its sibling file `PATH.i`; with M iothreads,
   * disk i is served by iothread i mod M (one iothread per disk where QEMU lacks iothread-vq-mapping).
   */
  disks?: number;
  /** Image format of the test disks (absent = raw). */
  format?: ImageFormat;
  /** Guest discard requests on the test disks (absent = DEFAULT_DISCARD). */
  discard?: DiscardMode;
  /** QEMU's zero-write detection on the test disks (absent = off). */
  detectZeroes?: DetectZeroesMode;
  /** Where the test disks' I/O is served (absent = qemu: QEMU opens the image itself). */
  path?: ServePath;
  /** The QEMU this variant runs on (matrix.qemu); absent: the located default QEMU. */
  qemu?: VariantQemu;
}

/**
 * One QEMU of the matrix's qemu axis: `name` is what ids, `exclude` and `--only` use (a `qemus:`
 * key, or the version for a bare path), `version` what `-version` printed when the study was loaded.
 */
export interface VariantQemu {
  name: string;
  path: string;
  version: string;
}

/** The bare-host baseline's variant id. */
export const HOST_VARIANT_ID = 'host';

export interface Pinning {
  /** cpuset list for vCPUs, e.g. "0-1"; vCPU i is pinned to the i-th CPU of the list. */
  vcpus?: string;
  emulator?: string;
  iothreads?: string;
}

export interface FioWorkload {
  kind: 'fio';
  name: string;
  rw: 'read' | 'write' | 'randread' | 'randwrite' | 'rw' | 'randrw' | 'readwrite' | 'randtrim' | 'trim';
  bs: number; // bytes
  iodepth: number;
  numjobs: number;
  runtimeSeconds: number;
  rampSeconds: number;
  /** Region of the disk the job touches, bytes; undefined = the whole disk. */
  sizeBytes?: number;
  rwmixread?: number;
  rateIops?: number;
  ioengine: string; // libaio by default
  /** Any other fio option, passed as --key=value. */
  extra: Record<string, string>;
}

export interface SweepWorkload {
  kind: 'sweep';
  name: string;
  rw: FioWorkload['rw'];
  bs: number;
  /** rate-limited form: steps from `fromShare` of the measured maximum to 100%. */
  steps?: number;
  fromShare: number;
  /** queue-depth form: one run per iodepth. */
  iodepths?: number[];
  iodepth: number; // iodepth used for the max and the rate-limited steps
  numjobs: number;
  runtimeSeconds: number;
  rampSeconds: number;
  sizeBytes?: number;
}

export interface PgbenchWorkload {
  kind: 'pgbench';
  name: string;
  scale: number;
  clients: number[];
  /** Optional target transaction rates (--rate) per step; each client count runs each rate. */
  rates?: number[];
  runtimeSeconds: number;
  readOnly: boolean;
}

export interface RsyncWorkload {
  kind: 'rsync';
  name: string;
  files: number;
  sizeBytes: number;
  /** Optional size distribution: file sizes drawn uniformly between min and max with the seed. */
  sizeMinBytes?: number;
  sizeMaxBytes?: number;
  seed: number;
}

export type Workload = FioWorkload | SweepWorkload | PgbenchWorkload | RsyncWorkload;
export type WorkloadKind = Workload['kind'];

export interface HostSpec {
  name: string;
  uri: string;
  disk?: DiskSpec;
}

export interface DiskSpec {
  /** A raw file (created if missing, when kvmio may) or a block device. */
  path: string;
  sizeBytes: number;
  /** How qcow2 variants' images are made (absent: the defaults). */
  qcow2?: Qcow2Options;
  /**
   * Set on a qcow2 image to prepare (studyDiskSpecs): the raw file it is made from and filled with;
   * `path` is then the image (kvmio's own, made again for every run).
   */
  imageOf?: string;
  /** A scratch LV kvmio makes on this volume group for each run (path is then replaced by the LV's). */
  lvm?: LvmSpec;
}

/** disk.lvm: the volume group (and thin pool) a run's scratch LV is made in, and its size. */
export interface LvmSpec {
  vg: string;
  sizeBytes: number;
  /** A thin pool of the VG: the LV is thin (-V in the pool) instead of thick (-L). */
  thinPool?: string;
}

export interface GuestSpec {
  vcpus: number;
  memoryBytes: number;
  /** Guests started per variant (fio client/server mode when > 1). */
  count: number;
  /** A user's own libvirt domain to vary instead of the builtin guest. */
  domain?: DomainSource;
  /** The Debian release the builtin guest is made from (absent: the default, trixie). */
  release?: GuestRelease;
  /** The builtin guest's machine type on both backends (absent: q35). */
  machine?: MachineType;
  /** bios or uefi (OVMF, on q35); absent: bios. */
  firmware?: GuestFirmware;
}

/** A domain XML file, or the name of a domain defined on the study's libvirt host. */
export type DomainSource = { file: string } | { name: string };

export interface AdaptiveSpec {
  /** Repeat until the 95% CI half-width of the main metric is within this share of the mean. */
  ciShare: number;
  maxRepetitions: number;
}

/**
 * Racing: after every round from `minRepetitions` on, a variant's workload whose comparisons in the
 * report are all decided stops repeating; `repetitions` is the maximum.
 */
export interface RaceSpec {
  minRepetitions: number;
}

export interface Study {
  name: string;
  /** Free text from the study file, shown by `plan`. */
  description?: string;
  /** Where the study came from: a file path or `preset:NAME`. Used in every error message. */
  source: string;
  backend: Backend;
  libvirt: { uri: string };
  guest: GuestSpec;
  disk: DiskSpec;
  variants: Variant[];
  pinning?: Pinning;
  baseline: boolean;
  repetitions: number;
  adaptive?: AdaptiveSpec;
  race?: RaceSpec;
  workloads: Workload[];
  hosts: HostSpec[];
  /** What validation decided on the user's behalf (e.g. impossible combinations left out); shown by `plan`. */
  notes?: string[];
}
