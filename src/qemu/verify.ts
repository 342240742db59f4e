import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import type { Qcow2Options, Variant } from '../study/types.js';
import { servedByDaemon, variantDetectZeroes, variantFormat, variantPath } from '../study/variants.js';
import { cacheFlags } from './argv.js';

/**
 * Live verification at the QEMU level, for every backend: given a way to send QMP commands to the
 * running QEMU (its own socket, or libvirt's monitor connection) and, when QEMU runs on this host,
 * its pid and stderr, it checks that QEMU runs each test disk as the variant asks — block nodes and
 * their cache flags, device model, queues, iothread, write cache, iothread objects, no nodes of
 * disks the variant does not have, and the aio mode.
 *
 * QMP does not report a file node's aio mode, so it is read off the QEMU process: aio=native keeps
 * a Linux AIO ring mapped ("[aio]" in /proc/PID/maps), io_uring holds an io_uring file descriptor.
 * QEMU 7.2 sets these up when it opens the node; recent QEMU sets them up on the first request in
 * each thread, and when that fails (seccomp, sysctl, old kernel) it prints "Unable to use …,
 * falling back to thread pool" and carries on with threads. So the check reads 4 KiB through every
 * test disk's node from the monitor first (qemu-io), then requires the context, and a fallback
 * warning on stderr fails the point with QEMU's own words. The contexts live as long as their
 * event loop, so only a fresh VM can show that aio=threads has none.
 *
 * A disk served by qemu-storage-daemon (paths vhost-user-blk and nbd) is checked in two places:
 * QEMU has the device (vhost-user-blk-pci, or the usual device over an NBD client node on the
 * daemon's socket) and no node on the image; the daemon has the image's nodes as QEMU would have
 * them, the export, its iothreads and the aio mode (verifyStorageDaemon, with the same checks).
 */

/** Sends one QMP command to the VM's QEMU and resolves with its `return` value. */
export type Monitor = <T = unknown>(command: string, args?: Record<string, unknown>) => Promise<T>;

/** What the verifier can see of a running QEMU. */
export interface LiveQemu {
  monitor: Monitor;
  /** QEMU's pid when it runs on this host (the aio contexts are read from /proc), else undefined. */
  pid?: number;
  /** What QEMU wrote to stderr since it started or since the live switch began, when readable. */
  stderr?: () => string | undefined;
  /** A VM booted for this variant (no live switch yet): aio=threads must then have no aio context. */
  fresh: boolean;
}

/** One test disk as QEMU should run it. */
export interface LiveTestDisk {
  /** How failure reports name it, e.g. "test disk" or "test disk 1 (kvmio-test-1)". */
  label: string;
  /** The host file or block device behind it. */
  path: string;
  /** QOM path of its virtio PCI device (the virtio-scsi-pci controller for SCSI); undefined if unknown. */
  device?: string;
  /** QOM path of the device that holds the drive (the virtio-blk device, or the scsi-hd LUN). */
  drive?: string;
  /** The iothread object serving the device ('' = main loop); null when several serve it (vq mapping). */
  iothread: string | null;
  /** With `iothread: null`: the iothread object ids and the virtqueues each must serve. */
  vqMapping?: Array<{ iothread: string; vqs: number[] }>;
  /** A disk served by the storage daemon: the socket QEMU reaches it on (path nbd's NBD server). */
  socket?: string;
}

/** What the variant expects beyond its disks. */
export interface LiveExpectation {
  variant: Variant;
  disks: LiveTestDisk[];
  /** Ids of the iothread objects QEMU must have. */
  iothreadIds: string[];
  /** Paths of test disks the variant does not have: QEMU must hold no node for them. */
  absentPaths: string[];
  /** How a qcow2 variant's images were made (cluster size and lazy refcounts are read back). */
  qcow2?: Qcow2Options;
}

interface BlockNode {
  'node-name': string;
  drv: string;
  file: string;
  cache: { direct: boolean; 'no-flush': boolean; writeback: boolean };
  detect_zeroes?: string;
  image?: {
    format?: string;
    'cluster-size'?: number;
    'format-specific'?: { type?: string; data?: { 'lazy-refcounts'?: boolean } };
  };
}

interface BlockInfo {
  device: string;
  qdev?: string;
  inserted?: { 'node-name': string; file: string; drv?: string };
}

/** Everything a per-disk check may look at; `expect` records a mismatch. */
export interface DiskCheckContext {
  qemu: LiveQemu;
  variant: Variant;
  qcow2?: Qcow2Options;
  disk: LiveTestDisk;
  /** This process opens the image (QEMU on path qemu, the storage daemon on the others). */
  opensImage: boolean;
  nodes: BlockNode[];
  blocks: BlockInfo[];
  expect: (what: string, got: unknown, want: unknown) => void;
  problem: (text: string) => void;
  /** A QOM property of a device, or the error text when QEMU refuses the query. */
  qomGet: (path: string, property: string) => Promise<unknown>;
}

export type DiskCheck = (c: DiskCheckContext) => Promise<void>;

/** Block nodes of the disk: a protocol node and a raw format node on its path, with the cache flags asked. */
const checkBlockNodes: DiskCheck = async ({ variant, disk, opensImage, nodes, blocks, expect, problem }) => {
  if (!opensImage) return;
  const flags = cacheFlags(variant.cache);
  const ours = nodes.filter((n) => n.file === disk.path);
  if (ours.length === 0) problem(`QEMU has no block node for ${disk.path}`);
  if (ours.length > 0 && !ours.some((n) => n.drv === 'file' || n.drv === 'host_device'))
    problem(`the block nodes of ${disk.path} have drivers ${ours.map((n) => n.drv).join(', ')}`);
  for (const n of ours) {
    expect(`${n['node-name']} cache.direct`, n.cache.direct, flags.direct);
    expect(`${n['node-name']} cache.no-flush`, n.cache['no-flush'], flags.noFlush);
  }
  if (disk.drive === undefined) return;
  const drive = disk.drive;
  // qdev is the device id for some models and its QOM path (…/virtio-backend) for others.
  const id = drive.replace(/^\/machine\/peripheral\//, '');
  const attached = blocks.find((b) => b.qdev === id || b.qdev === drive || b.qdev?.startsWith(`${drive}/`));
  expect(`file of the node attached to the ${disk.label} device`, attached?.inserted?.file, disk.path);
};

/**
 * The format node: a qcow2 variant's disk is a qcow2 node over a protocol node on the image, with the
 * image's cluster size and lazy refcounts as made; a raw variant's has no qcow2 node.
 */
const checkFormat: DiskCheck = async ({ variant, qcow2, disk, opensImage, nodes, expect, problem }) => {
  if (!opensImage) return;
  const ours = nodes.filter((n) => n.file === disk.path);
  const formatNodes = ours.filter((n) => n.drv !== 'file' && n.drv !== 'host_device');
  if (variantFormat(variant) === 'raw') {
    for (const n of formatNodes.filter((x) => x.drv !== 'raw'))
      problem(`${disk.label} has a ${n.drv} node ${n['node-name']}, expected raw`);
    return;
  }
  const node = formatNodes.find((n) => n.drv === 'qcow2');
  if (!node) {
    problem(
      `${disk.label} has no qcow2 node on ${disk.path} (nodes: ${ours.map((n) => `${n['node-name']}=${n.drv}`).join(', ') || 'none'})`,
    );
    return;
  }
  if (!ours.some((n) => n.drv === 'file'))
    problem(`${disk.label}'s qcow2 node ${node['node-name']} is not over a file node on ${disk.path}`);
  if (!qcow2) return;
  expect(`${node['node-name']} cluster size`, node.image?.['cluster-size'], qcow2.clusterSizeBytes);
  expect(
    `${node['node-name']} lazy refcounts`,
    node.image?.['format-specific']?.data?.['lazy-refcounts'],
    qcow2.lazyRefcounts,
  );
};

/**
 * Zero-write detection of the node the device writes into (the format node): QMP reports it as
 * `detect_zeroes`. A node's discard mode is in no QMP reply (query-named-block-nodes on QEMU 7.2
 * and 10.0 has no such field): libvirt's live XML shows it, the direct backend sets it in argv.
 */
const checkDetectZeroes: DiskCheck = async ({ variant, disk, opensImage, nodes, expect }) => {
  if (!opensImage) return;
  const ours = nodes.filter((n) => n.file === disk.path);
  // libvirt may leave out a raw format layer: the protocol node is then the one the device writes into.
  const top = ours.find((n) => n.drv !== 'file' && n.drv !== 'host_device') ?? ours[0];
  if (!top) return; // checkBlockNodes says what is missing
  expect(`${top['node-name']} detect_zeroes`, top.detect_zeroes, variantDetectZeroes(variant));
};

/**
 * A disk the storage daemon serves, as QEMU sees it: no node of QEMU's own on the image (the daemon
 * opens it, and two openers would corrupt a qcow2), and for path nbd the device's drive an NBD client
 * node on the daemon's socket.
 */
const checkServedDisk: DiskCheck = async ({ variant, disk, opensImage, nodes, blocks, problem }) => {
  if (opensImage || !servedByDaemon(variant)) return;
  for (const n of nodes.filter((node) => node.file === disk.path))
    problem(
      `QEMU has its own ${n.drv} node ${n['node-name']} on ${disk.path}, which the storage daemon serves`,
    );
  if (variantPath(variant) !== 'nbd' || disk.drive === undefined) return;
  const drive = disk.drive;
  const id = drive.replace(/^\/machine\/peripheral\//, '');
  const attached = blocks.find((b) => b.qdev === id || b.qdev === drive || b.qdev?.startsWith(`${drive}/`));
  const node = nodes.find((n) => n['node-name'] === attached?.inserted?.['node-name']);
  if (!attached?.inserted || !node) {
    problem(`the ${disk.label} device has no block node attached`);
    return;
  }
  // Direct QEMU attaches the NBD node itself; libvirt puts a raw format node over it (same filename).
  const nbd = node.drv === 'nbd' ? node : nodes.find((n) => n.drv === 'nbd' && n.file === node.file);
  if (!nbd) {
    problem(`the ${disk.label} device's node ${node['node-name']} (${node.drv}) is not over an NBD node`);
    return;
  }
  if (disk.socket && !nbd.file.includes(disk.socket))
    problem(
      `the ${disk.label} device's NBD node reaches ${nbd.file}, not the storage daemon's ${disk.socket}`,
    );
};

/** The virtio device: model, queue count, iothread, and the drive's write cache. */
const checkDevice: DiskCheck = async ({ variant, disk, expect, problem, qomGet }) => {
  const blk = variant.bus === 'virtio-blk';
  if (disk.device === undefined) {
    problem(`QEMU has no device for the ${disk.label}`);
    return;
  }
  if (variantPath(variant) === 'vhost-user-blk') {
    // A variant that asked for vhost-user-blk and got a plain virtio-blk is not the variant.
    expect(`${disk.label} device model`, await qomGet(disk.device, 'type'), 'vhost-user-blk-pci');
    expect(`${disk.label} queues`, await qomGet(disk.device, 'num-queues'), variant.queues);
    return;
  }
  expect(
    `${disk.label} device model`,
    await qomGet(disk.device, 'type'),
    blk ? 'virtio-blk-pci' : 'virtio-scsi-pci',
  );
  expect(
    `${disk.label} queues`,
    await qomGet(disk.device, blk ? 'num-queues' : 'num_queues'),
    variant.queues,
  );
  if (disk.iothread !== null)
    expect(
      `${disk.label} iothread`,
      await qomGet(disk.device, 'iothread'),
      disk.iothread ? `/objects/${disk.iothread}` : '',
    );
  if (disk.drive !== undefined) {
    expect(
      `${disk.label} write cache`,
      await qomGet(disk.drive, 'write-cache'),
      cacheFlags(variant.cache).writeCache ? 'on' : 'off',
    );
  }
};

/**
 * One disk over several iothreads: QEMU's own iothread-vq-mapping of the device (which iothread
 * serves which virtqueue) must be the one asked, every queue served by exactly one iothread, and
 * every iothread of the mapping a live iothread object with a thread of its own.
 */
async function checkVqMapping({ disk, expect, problem, qomGet, qemu }: DiskCheckContext): Promise<void> {
  if (disk.iothread !== null || !disk.vqMapping || disk.device === undefined) return;
  const got = await qomGet(disk.device, 'iothread-vq-mapping');
  if (!Array.isArray(got)) {
    problem(`${disk.label} has no iothread-vq-mapping: ${JSON.stringify(got)}`);
    return;
  }
  const mapping = (got as Array<{ iothread: string; vqs?: number[] }>).map((m) => ({
    iothread: m.iothread,
    vqs: m.vqs ?? [],
  }));
  expect(`${disk.label} iothread-vq-mapping`, mapping, disk.vqMapping);
  const served = mapping.flatMap((m) => m.vqs).sort((a, b) => a - b);
  const queues = disk.vqMapping.flatMap((m) => m.vqs).sort((a, b) => a - b);
  expect(`${disk.label} virtqueues served`, served, queues);
  const threads = await qemu.monitor<Array<{ id: string; 'thread-id': number }>>('query-iothreads');
  for (const m of mapping) {
    const t = threads.find((x) => x.id === m.iothread);
    if (!t || !(t['thread-id'] > 0))
      problem(`${disk.label}: iothread ${m.iothread} of its vq mapping has no running thread`);
  }
}

/**
 * The checks run on every test disk, in order. Further QEMU-level checks of a disk (such as which
 * iothread serves which virtqueue of a disk with `iothread: null`) are DiskChecks added here.
 */
export const diskChecks: DiskCheck[] = [
  checkBlockNodes,
  checkFormat,
  checkDetectZeroes,
  checkServedDisk,
  checkDevice,
  checkVqMapping,
];

/** The checks of the image's nodes, run on whichever process opens it. */
const imageChecks: DiskCheck[] = [checkBlockNodes, checkFormat, checkDetectZeroes];

/** A list of problems (each line prefixed) with the ways checks add to it, over one monitor. */
function problemList(monitor: Monitor, prefix = '') {
  const problems: string[] = [];
  const problem = (text: string) => problems.push(`${prefix}${text}`);
  const expect = (what: string, got: unknown, wanted: unknown) => {
    if (JSON.stringify(got) !== JSON.stringify(wanted))
      problem(`${what} is ${JSON.stringify(got)}, expected ${JSON.stringify(wanted)}`);
  };
  const qomGet = (path: string, property: string) =>
    monitor<unknown>('qom-get', { path, property }).catch((e: Error) => e.message);
  return { problems, problem, expect, qomGet };
}

/**
 * Every way the running QEMU differs from `want`, as one line each (empty: it matches). The caller
 * words the failure (which VM, which variant) and adds its own checks (libvirt's live XML).
 */
export async function verifyQemu(qemu: LiveQemu, want: LiveExpectation): Promise<string[]> {
  const { problems, problem, expect, qomGet } = problemList(qemu.monitor);

  const nodes = await qemu.monitor<BlockNode[]>('query-named-block-nodes', { flat: true });
  const blocks = await qemu.monitor<BlockInfo[]>('query-block');
  for (const disk of want.disks) {
    for (const check of diskChecks)
      await check({
        qemu,
        variant: want.variant,
        qcow2: want.qcow2,
        disk,
        opensImage: !servedByDaemon(want.variant),
        nodes,
        blocks,
        expect,
        problem,
        qomGet,
      });
  }
  for (const path of want.absentPaths) {
    for (const n of nodes.filter((node) => node.file === path))
      problem(`block node ${n['node-name']} of a disk this variant does not have (${path}) is still there`);
  }
  const iothreads = await qemu.monitor<Array<{ id: string }>>('query-iothreads');
  expect('iothread objects', iothreads.map((t) => t.id).sort(), [...want.iothreadIds].sort());

  if (want.variant.qemu) {
    const running = await runningQemuVersion(qemu.monitor);
    if (running !== want.variant.qemu.version)
      problem(
        `QEMU runs version ${running}, but the variant asks for QEMU ${want.variant.qemu.version} (${want.variant.qemu.path})`,
      );
  }
  if (servedByDaemon(want.variant)) {
    // The NBD client node answers a read over the daemon's socket.
    for (const b of blocks.filter((x) => x.inserted?.drv === 'nbd'))
      await readThrough(qemu.monitor, b.inserted!['node-name'], problem);
  } else await checkAioMode(qemu, want, nodes, problem);
  return problems;
}

/** What the storage daemon must have beyond the disks' nodes: its iothreads and one export per disk. */
export interface DaemonExpectation extends LiveExpectation {
  exports: Array<{ id: string; 'node-name': string }>;
  /** The guest has done I/O on the disks since the daemon started, so each aio context must exist. */
  afterIo: boolean;
}

/**
 * Every way the storage daemon differs from what the variant asks (empty: it matches): the image's
 * nodes with the variant's cache flags and format, each disk's export of the right type on its format
 * node, the iothread objects, and the aio mode on the daemon's own process.
 */
export async function verifyStorageDaemon(daemon: LiveQemu, want: DaemonExpectation): Promise<string[]> {
  const { problems, problem, expect, qomGet } = problemList(daemon.monitor, 'storage daemon: ');
  const nodes = await daemon.monitor<BlockNode[]>('query-named-block-nodes', { flat: true });
  for (const disk of want.disks)
    for (const check of imageChecks)
      await check({
        qemu: daemon,
        variant: want.variant,
        qcow2: want.qcow2,
        disk: { ...disk, drive: undefined },
        opensImage: true,
        nodes,
        blocks: [],
        expect,
        problem,
        qomGet,
      });
  const exports =
    await daemon.monitor<Array<{ id: string; type: string; 'node-name': string }>>('query-block-exports');
  for (const e of want.exports) {
    const got = exports.find((x) => x.id === e.id);
    if (!got) problem(`has no export ${e.id} (exports: ${exports.map((x) => x.id).join(', ') || 'none'})`);
    else {
      expect(`export ${e.id} type`, got.type, variantPath(want.variant));
      expect(`export ${e.id} node`, got['node-name'], e['node-name']);
    }
  }
  // The daemon has no query-iothreads: its iothreads are the iothread objects under /objects.
  const objects = await daemon.monitor<Array<{ name: string; type: string }>>('qom-list', {
    path: '/objects',
  });
  expect(
    'iothread objects',
    objects
      .filter((o) => o.type === 'child<iothread>')
      .map((o) => o.name)
      .sort(),
    [...want.iothreadIds].sort(),
  );
  for (const p of await aioModeProblems(daemon, want.variant, want.afterIo)) problem(p);
  return problems;
}

/** The running QEMU's version as "10.0.2", from its monitor. */
export async function runningQemuVersion(monitor: Monitor): Promise<string> {
  const v = await monitor<{ qemu: { major: number; minor: number; micro: number } }>('query-version');
  return `${v.qemu.major}.${v.qemu.minor}.${v.qemu.micro}`;
}

const FALLBACK_WARNING = /Unable to use (?:Linux AIO|linux io_uring), falling back to thread pool[^\n]*/g;

/** QEMU's own lines saying an aio setup failed and it runs on the thread pool instead. */
export function aioFallbackWarnings(stderr: string | undefined): string[] {
  return [...new Set(stderr?.match(FALLBACK_WARNING) ?? [])].map((l) => l.trim());
}

async function checkAioMode(
  qemu: LiveQemu,
  want: LiveExpectation,
  nodes: BlockNode[],
  problem: (text: string) => void,
): Promise<void> {
  // A request through each disk makes recent QEMU set up (or fail to set up) the aio context the
  // node really uses, whichever was asked: a node on native or io_uring then shows on a fresh VM.
  for (const disk of want.disks) {
    const ours = nodes.filter((n) => n.file === disk.path);
    const node = ours.find((n) => n.drv !== 'file' && n.drv !== 'host_device') ?? ours[0];
    if (node) await readThrough(qemu.monitor, node['node-name'], problem);
  }
  for (const p of await aioModeProblems(qemu, want.variant)) problem(p);
}

/**
 * The aio mode as the QEMU process shows it, with no monitor call: a fallback warning on stderr, the
 * context the mode needs, and on a fresh VM none for aio=threads. After a workload this is the whole
 * check (the guest's own requests have set the contexts up).
 */
export async function aioModeProblems(
  qemu: Pick<LiveQemu, 'pid' | 'stderr' | 'fresh'>,
  variant: Pick<Variant, 'aio'>,
  /** The disks have seen I/O, so recent QEMU has set up the context asked (or fallen back). */
  afterIo = true,
): Promise<string[]> {
  const problems: string[] = [];
  const aio = variant.aio;
  // The warning is written before the monitor answers; give the stderr pipe a moment to be read.
  const warnings = aioFallbackWarnings(qemu.stderr && (await settled(qemu.stderr)));
  const evidence = qemu.pid === undefined ? undefined : aioEvidence(qemu.pid);
  const context = aio === 'native' ? 'Linux AIO context' : 'io_uring instance';
  if (warnings.length > 0)
    problems.push(`aio=${aio} asked, but QEMU fell back to the thread pool: ${warnings.join('; ')}`);
  else if (aio !== 'threads' && evidence && afterIo) {
    const count = aio === 'native' ? evidence.nativeRings : evidence.uringFds;
    if (count === 0) problems.push(`aio=${aio} asked, but QEMU has no ${context} after I/O on the test disk`);
  }
  if (aio === 'threads' && qemu.fresh && evidence && evidence.nativeRings + evidence.uringFds > 0) {
    problems.push(
      `aio=threads asked, but QEMU has ${evidence.nativeRings} Linux AIO and ${evidence.uringFds} io_uring contexts`,
    );
  }
  return problems;
}

async function settled(stderr: () => string | undefined): Promise<string | undefined> {
  await new Promise((resolve) => setTimeout(resolve, 50));
  return stderr();
}

/** Reads the first 4 KiB of a block node through a temporary block backend (HMP qemu-io). */
async function readThrough(monitor: Monitor, node: string, problem: (text: string) => void): Promise<void> {
  const out = await monitor<string>('human-monitor-command', {
    'command-line': `qemu-io ${node} "read 0 4096"`,
  }).catch((e: Error) => `Error: ${e.message}`);
  const text = String(out ?? '').trim();
  if (/error|failed/i.test(text)) problem(`reading 4 KiB through block node ${node} failed: ${text}`);
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
