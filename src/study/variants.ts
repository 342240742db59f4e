import {
  type AioMode,
  type Bus,
  type CacheMode,
  DEFAULT_DISCARD,
  type DetectZeroesMode,
  type DiscardMode,
  type ImageFormat,
  type MemoryBacking,
  type ServePath,
  type Variant,
  type VariantQemu,
} from './types.js';

export type VariantKnobs = Omit<Variant, 'id'>;

const BUS_IDS: Record<Bus, string> = { 'virtio-blk': 'blk', 'virtio-scsi': 'scsi' };
const AIO_IDS: Record<AioMode, string> = { threads: 'threads', native: 'native', io_uring: 'uring' };
const MEMORY_IDS: Record<MemoryBacking, string> = { '4k': '4k', hugepages: 'huge' };
const PATH_IDS: Record<ServePath, string> = { qemu: '', 'vhost-user-blk': 'vhost', nbd: 'nbd' };

/** A variant from the knobs given, the others at the study's defaults (threads, main loop, blk, 4k, one queue, no cache), with its id. */
export function makeVariant(knobs: Partial<VariantKnobs> = {}): Variant {
  const v: VariantKnobs = {
    aio: 'threads',
    iothreads: 0,
    bus: 'virtio-blk',
    memory: '4k',
    queues: 1,
    cache: 'none',
    ...knobs,
  };
  return { id: variantId(v), ...v };
}

/**
 * Which queues each iothread serves when one disk is spread over several (iothread-vq-mapping):
 * queue q goes to iothread q mod N, written out so that QEMU and libvirt are told, and verified
 * on, the same explicit mapping. Empty when the variant does not spread one disk.
 */
export function iothreadQueues(v: Pick<Variant, 'iothreads' | 'queues' | 'disks'>): number[][] {
  if (v.iothreads <= 1 || variantDisks(v) > 1) return [];
  return Array.from({ length: v.iothreads }, (_, k) =>
    Array.from({ length: v.queues }, (_, q) => q).filter((q) => q % v.iothreads === k),
  );
}

/** The image format of a variant's test disks (absent = raw). */
export function variantFormat(v: Pick<Variant, 'format'>): ImageFormat {
  return v.format ?? 'raw';
}

/** What a variant does with guest discards (absent = DEFAULT_DISCARD). */
export function variantDiscard(v: Pick<Variant, 'discard'>): DiscardMode {
  return v.discard ?? DEFAULT_DISCARD;
}

/** A variant's zero-write detection (absent = off). */
export function variantDetectZeroes(v: Pick<Variant, 'detectZeroes'>): DetectZeroesMode {
  return v.detectZeroes ?? 'off';
}

/** Where a variant's test disk I/O is served (absent = qemu, QEMU's own block layer). */
export function variantPath(v: Pick<Variant, 'path'>): ServePath {
  return v.path ?? 'qemu';
}

/** Whether a variant's disks are served by a qemu-storage-daemon kvmio starts beside QEMU. */
export function servedByDaemon(v: Pick<Variant, 'path'>): boolean {
  return variantPath(v) !== 'qemu';
}

/** How many test disks a variant has (absent = 1). */
export function variantDisks(v: Pick<Variant, 'disks'>): number {
  return v.disks ?? 1;
}

/**
 * `blk-native-io1-4k`, plus `-d4` after the iothreads for 4 test disks, `-q4` when queues != 1,
 * `-writeback` when cache != none, `-qcow2` for a qcow2 image, `-nodiscard` when guest discards are
 * ignored, `-dz` / `-dzunmap` with zero detection on / unmap, `-vhost` or `-nbd` for a disk served by
 * the storage daemon and `-qemu-NAME` on the matrix's qemu axis. Stable: part of stored results.
 */
export function variantId(v: VariantKnobs): string {
  const disks = variantDisks(v) > 1 ? `-d${variantDisks(v)}` : '';
  let id = `${BUS_IDS[v.bus]}-${AIO_IDS[v.aio]}-io${v.iothreads}${disks}-${MEMORY_IDS[v.memory]}`;
  if (v.queues !== 1) id += `-q${v.queues}`;
  if (v.cache !== 'none') id += `-${v.cache}`;
  if (variantFormat(v) !== 'raw') id += `-${variantFormat(v)}`;
  if (variantDiscard(v) === 'ignore') id += '-nodiscard';
  if (variantDetectZeroes(v) !== 'off') id += variantDetectZeroes(v) === 'on' ? '-dz' : '-dzunmap';
  if (servedByDaemon(v)) id += `-${PATH_IDS[variantPath(v)]}`;
  if (v.qemu) id += `-qemu-${v.qemu.name}`;
  return id;
}

/** Cache modes that open the image without O_DIRECT; QEMU refuses aio=native on them. */
export const BUFFERED_CACHE_MODES: readonly CacheMode[] = ['writethrough', 'writeback', 'unsafe'];

/** Why QEMU (or the storage daemon) cannot run this combination, or undefined when it can. */
export function impossibleReason(v: VariantKnobs): string | undefined {
  return impossibility(v)?.reason;
}

/** Why a combination cannot run, and what would. */
function impossibility(v: VariantKnobs): { reason: string; wayOut: string } | undefined {
  if (v.aio === 'native' && BUFFERED_CACHE_MODES.includes(v.cache)) {
    return {
      reason: `aio=native needs O_DIRECT, which cache=${v.cache} does not use`,
      wayOut: 'use cache none or directsync',
    };
  }
  if (variantPath(v) === 'vhost-user-blk' && v.bus !== 'virtio-blk') {
    return {
      reason: `path vhost-user-blk is a virtio-blk device (vhost-user-blk-pci): it has no ${v.bus} form`,
      wayOut: 'use bus virtio-blk with path vhost-user-blk',
    };
  }
  if (variantPath(v) === 'vhost-user-blk' && variantDisks(v) > 1) {
    return {
      reason: `the storage daemon's vhost-user-blk export gives every disk the same serial (vhost_user_blk), so the guest cannot tell ${variantDisks(v)} test disks apart`,
      wayOut: 'use disks 1 with path vhost-user-blk',
    };
  }
  if (servedByDaemon(v) && v.iothreads > 1 && variantDisks(v) === 1) {
    return {
      reason: `path ${variantPath(v)} serves each disk's export in one iothread of the storage daemon, so ${v.iothreads} iothreads cannot share one disk`,
      wayOut: `use iothreads 0 or 1 with path ${variantPath(v)}, or disks: [${v.iothreads}] for one iothread per disk`,
    };
  }
  if (variantDetectZeroes(v) === 'unmap' && variantDiscard(v) !== 'unmap')
    return {
      reason: 'detect_zeroes=unmap needs discard=unmap',
      wayOut: 'use discard unmap or detect_zeroes on',
    };
  return undefined;
}

/** Why a variant's iothreads and disks do not fit together (some iothreads would serve nothing). */
export function idleIothreadsReason(v: VariantKnobs): string | undefined {
  const disks = variantDisks(v);
  if (disks > 1 && v.iothreads > disks) {
    return `${v.iothreads} iothreads for ${disks} disks: disk i is served by iothread i mod ${v.iothreads}, so ${v.iothreads - disks} would idle`;
  }
  return undefined;
}

/** Why no backend can run this variant, with the way out; undefined when one can. */
export function variantProblem(v: VariantKnobs): string | undefined {
  const impossible = impossibility(v);
  if (impossible) return `${impossible.reason}; ${impossible.wayOut}`;
  const idle = idleIothreadsReason(v);
  if (idle) return `${idle}; use at most ${variantDisks(v)} iothreads`;
  return undefined;
}

/**
 * Variants with the same key can share one running VM: the guest's memory backing, the image format
 * (a VM never carries one format's disk into another's measurements) and the QEMU it runs on need a
 * reboot; disk knobs (aio, cache, iothreads, bus, queues) switch live by hot-plugging the test disk.
 * A disk served by the storage daemon is set up with the VM (the daemon, its exports, shared guest
 * memory for vhost-user-blk), so every such variant boots its own.
 */
export function bootGroupKey(v: VariantKnobs): string {
  let key = variantFormat(v) === 'raw' ? v.memory : `${v.memory}-${variantFormat(v)}`;
  if (servedByDaemon(v)) key += ` served as ${variantId(v)}`;
  return v.qemu ? `${key} on QEMU ${v.qemu.name}` : key;
}

/** Whether two variants run on the same QEMU binary (a live switch never changes it). */
export function sameQemu(a: Pick<Variant, 'qemu'>, b: Pick<Variant, 'qemu'>): boolean {
  return a.qemu?.path === b.qemu?.path;
}

export interface MatrixAxes {
  aio: AioMode[];
  iothreads: number[];
  bus: Bus[];
  memory: MemoryBacking[];
  queues: number[];
  cache: CacheMode[];
  disks: number[];
  format: ImageFormat[];
  discard: DiscardMode[];
  detect_zeroes: DetectZeroesMode[];
  path: ServePath[];
  /** Absent: every variant runs on the located default QEMU. */
  qemu?: VariantQemu[];
}

/**
 * The cross product in the matrix's key order (format and path outermost, so one format's variants
 * share VMs, then aio, … disks innermost) and the file's value order.
 */
export function crossProduct(m: MatrixAxes): VariantKnobs[] {
  const out: VariantKnobs[] = [];
  // disks, format, path (and qemu) stay absent at their defaults, so a variant at the defaults has the
  // same knobs and id whether or not the study names those axes.
  for (const format of m.format)
    for (const path of m.path)
      for (const aio of m.aio)
        for (const iothreads of m.iothreads)
          for (const bus of m.bus)
            for (const memory of m.memory)
              for (const queues of m.queues)
                for (const cache of m.cache)
                  for (const disks of m.disks)
                    for (const discard of m.discard)
                      for (const detectZeroes of m.detect_zeroes)
                        for (const qemu of m.qemu ?? [undefined])
                          out.push({
                            aio,
                            iothreads,
                            bus,
                            memory,
                            queues,
                            cache,
                            ...(disks > 1 ? { disks } : {}),
                            ...(format !== 'raw' ? { format } : {}),
                            ...(path !== 'qemu' ? { path } : {}),
                            ...(discard !== DEFAULT_DISCARD ? { discard } : {}),
                            ...(detectZeroes !== 'off' ? { detectZeroes } : {}),
                            ...(qemu ? { qemu } : {}),
                          });
  return out;
}

/**
 * A partial variant from `exclude:`, keyed like the matrix; a list value matches any of its items
 * (QEMUs by name).
 */
export type ExcludeRule = {
  [K in Exclude<keyof VariantKnobs, 'qemu' | 'detectZeroes'>]?: VariantKnobs[K][];
} & {
  detect_zeroes?: DetectZeroesMode[];
  qemu?: string[];
};

/** A variant's value on one matrix axis, defaults filled in (what `exclude:` rules compare). */
function axisValue(v: VariantKnobs, key: keyof ExcludeRule): unknown {
  switch (key) {
    case 'disks':
      return variantDisks(v);
    case 'format':
      return variantFormat(v);
    case 'path':
      return variantPath(v);
    case 'discard':
      return variantDiscard(v);
    case 'detect_zeroes':
      return variantDetectZeroes(v);
    case 'qemu':
      return v.qemu?.name;
    default:
      return v[key];
  }
}

export function matchesRule(v: VariantKnobs, rule: ExcludeRule): boolean {
  return (Object.keys(rule) as (keyof ExcludeRule)[]).every((k) =>
    (rule[k] as unknown[] | undefined)?.includes(axisValue(v, k)),
  );
}

/**
 * The variant a report compares the others with: native with one iothread on the base settings (the
 * study's recommendation), else native with an iothread, else the first.
 */
export function referenceVariant<V extends Variant>(variants: readonly V[]): V | undefined {
  const base = (v: Variant) =>
    v.bus === 'virtio-blk' &&
    v.memory === '4k' &&
    v.queues <= 1 &&
    v.cache === 'none' &&
    variantFormat(v) === 'raw' &&
    variantDiscard(v) === DEFAULT_DISCARD &&
    variantDetectZeroes(v) === 'off' &&
    variantPath(v) === 'qemu';
  return (
    variants.find((v) => base(v) && v.aio === 'native' && v.iothreads === 1) ??
    variants.find((v) => v.aio === 'native' && v.iothreads >= 1) ??
    variants[0]
  );
}

/** How many knobs two variants differ in: the report compares variants that differ in few. */
export function knobDistance(a: Variant, b: Variant): number {
  const knobs = ['aio', 'iothreads', 'bus', 'memory', 'queues', 'cache', 'disks'] as const;
  const formats = variantFormat(a) !== variantFormat(b) ? 1 : 0;
  const discards = variantDiscard(a) !== variantDiscard(b) ? 1 : 0;
  const zeroes = variantDetectZeroes(a) !== variantDetectZeroes(b) ? 1 : 0;
  const paths = variantPath(a) !== variantPath(b) ? 1 : 0;
  return (
    knobs.filter((k) => (a[k] ?? 1) !== (b[k] ?? 1)).length +
    formats +
    discards +
    zeroes +
    paths +
    (a.qemu?.name !== b.qemu?.name ? 1 : 0)
  );
}

/**
 * The id a variant has without its QEMU (`blk-native-io1-4k-qemu-10.0.2` → `blk-native-io1-4k`):
 * the same disk configuration on another QEMU has the same one. Read from a stored spec, so only
 * a well-formed `qemu.name` suffix is taken off.
 */
export function idWithoutQemu(v: { id: string; qemu?: { name?: unknown } }): string {
  const name = v.qemu?.name;
  const suffix = typeof name === 'string' ? `-qemu-${name}` : undefined;
  return suffix && v.id.endsWith(suffix) ? v.id.slice(0, -suffix.length) : v.id;
}
