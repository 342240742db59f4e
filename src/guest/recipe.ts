import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';

/**
 * What goes into the embedded guest: the Debian packages it is made from and the files taken from
 * them. Pure data and hashing, so that it is testable without downloading anything.
 */

/** Bumped whenever the builder itself changes how the guest is assembled. */
export const BUILDER_VERSION = 2;

/** The Debian release the guest is made from (PostgreSQL 15 and the 6.1 cloud kernel are bookworm's). */
export const DEBIAN_SUITE = 'bookworm';

export const GUEST_PACKAGES = [
  'linux-image-cloud-amd64',
  'busybox-static',
  'util-linux', // setpriv, behind the guest's chpst (Debian's busybox has no chpst applet)
  'qemu-guest-agent',
  'fio',
  'postgresql-15',
  'rsync',
  'e2fsprogs',
  'tzdata',
] as const;

/** Programs copied into the guest, with every shared library they need (paths as in the .debs). */
export const GUEST_PROGRAMS = [
  'bin/busybox',
  'usr/bin/setpriv',
  'usr/sbin/qemu-ga',
  'usr/bin/fio',
  'usr/bin/rsync',
  'sbin/mke2fs',
  'sbin/mkfs.ext4',
  'sbin/e2fsck',
  'sbin/fsck.ext4',
  'sbin/tune2fs',
  ...[
    'postgres',
    'initdb',
    'pg_ctl',
    'pgbench',
    'psql',
    'pg_isready',
    'createdb',
    'dropdb',
    'vacuumdb',
    'pg_controldata',
    'pg_test_fsync',
  ].map((p) => `usr/lib/postgresql/15/bin/${p}`),
];

/** Data trees copied whole (initdb needs the share directory; server extensions are loadable .so files). */
export const GUEST_TREES = [
  'usr/share/postgresql/15',
  'usr/lib/postgresql/15/lib',
  'etc/mke2fs.conf',
  'usr/share/zoneinfo/Etc/UTC',
  'usr/share/zoneinfo/UTC',
];

/**
 * Left out: PostgreSQL's JIT (it pulls in libLLVM, ~100 MB; the guest runs postgres with jit=off) and
 * documentation.
 */
export const GUEST_EXCLUDES = [
  /\/llvmjit[^/]*$/,
  /\/bitcode(\/|$)/,
  /^usr\/share\/postgresql\/15\/man(\/|$)/,
];

/**
 * Packages of the dependency closure that are not even unpacked: nothing the guest takes comes from
 * them (maintainer-script interpreters, JIT, locales, udev), and they are ~40% of the unpacking time.
 * Safe: a library missing because of this list fails the build by name.
 */
export const SKIP_UNPACK = [
  /^libllvm\d+$/,
  /^libz3-\d+$/,
  /^perl(-base|-modules-[\d.]+)?$/,
  /^libperl[\d.]+$/,
  /^(lib)?python3/,
  /^locales$/,
  /^libc-l10n$/,
  /^udev$/,
  /^initramfs-tools/,
  /^klibc-utils$/,
];

/** Kernel modules the guest loads at boot (with their dependencies); ext4 is built into the cloud kernel. */
export const GUEST_MODULES = [
  'virtio_pci',
  'virtio_blk',
  'virtio_scsi',
  'sd_mod',
  'virtio_console',
  'virtio_net',
  'virtio_rng',
];

/** Guest files written from src/guest/assets: asset name -> guest path and mode. */
export const GUEST_ASSETS: Record<string, { path: string; mode: number }> = {
  init: { path: 'init', mode: 0o755 },
  agent: { path: 'etc/kvmio/agent', mode: 0o755 },
  env: { path: 'etc/kvmio/env', mode: 0o644 },
  inittab: { path: 'etc/inittab', mode: 0o644 },
  'udhcpc.script': { path: 'etc/kvmio/udhcpc.script', mode: 0o755 },
  shutdown: { path: 'usr/sbin/shutdown', mode: 0o755 },
  chpst: { path: 'usr/bin/chpst', mode: 0o755 },
  passwd: { path: 'etc/passwd', mode: 0o644 },
  group: { path: 'etc/group', mode: 0o644 },
};

export function assetsDir(): string {
  // dist/src/guest/recipe.js and src/guest/recipe.ts both reach the repository's src/guest/assets.
  const here = new URL('.', import.meta.url).pathname;
  return here.includes('/dist/src/')
    ? new URL('../../../src/guest/assets/', import.meta.url).pathname
    : new URL('./assets/', import.meta.url).pathname;
}

export function readAssets(dir = assetsDir()): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const name of readdirSync(dir).sort()) out.set(name, readFileSync(`${dir}/${name}`));
  return out;
}

/**
 * Hash of everything that decides the guest except the package versions: the builder, the lists
 * above and the assets. A built guest is reused while this matches (no network access needed).
 */
export function recipeHash(assets: Map<string, Buffer>): string {
  const h = createHash('sha256');
  h.update(
    JSON.stringify({
      builder: BUILDER_VERSION,
      suite: DEBIAN_SUITE,
      packages: GUEST_PACKAGES,
      programs: GUEST_PROGRAMS,
      trees: GUEST_TREES,
      excludes: GUEST_EXCLUDES.map(String),
      skipUnpack: SKIP_UNPACK.map(String),
      modules: GUEST_MODULES,
      assetPaths: GUEST_ASSETS,
    }),
  );
  for (const [name, data] of [...assets].sort(([a], [b]) => a.localeCompare(b))) {
    h.update(`\0${name}\0`);
    h.update(data);
  }
  return h.digest('hex');
}

export interface ResolvedPackage {
  name: string;
  version: string;
  arch: string;
}

/** The content hash: the recipe plus the exact versions of every package the guest was made from. */
export function contentHash(recipe: string, packages: readonly ResolvedPackage[]): string {
  const list = packages
    .map((p) => `${p.name}=${p.version}:${p.arch}`)
    .sort()
    .join('\n');
  return createHash('sha256').update(`${recipe}\n${list}`).digest('hex');
}

/** Printed on the serial console by the guest's agent wrapper when qemu-ga starts (see assets/agent). */
export const GUEST_READY_MARKER = 'KVMIO-GUEST-READY';

/**
 * Guest RAM below which the guest cannot boot: the ~115 MiB initramfs is unpacked into RAM while its
 * packed copy is still there, and the root filesystem (with /tmp) is RAM too.
 */
export const GUEST_MIN_MEMORY_MIB = 512;

/**
 * Kernel command line for every backend (direct QEMU and libvirt). The console is the first serial
 * port; panic=-1 with -no-reboot makes a crashed guest end QEMU instead of hanging. The rest shortens
 * boots under TCG (measured in QEMU CPU time: about -20% with 2 vCPUs) without changing how the
 * booted guest behaves: no crypto self-tests, no PS/2 mouse or extra UART probing, no TSC
 * re-calibration, and expedited RCU grace periods during boot only.
 */
export const GUEST_KERNEL_CMDLINE = [
  'console=ttyS0',
  'panic=-1',
  'loglevel=4',
  'random.trust_cpu=on',
  'cryptomgr.notests',
  'rcupdate.rcu_expedited=1',
  'rcupdate.rcu_normal_after_boot=1',
  'tsc=reliable',
  'no_timer_check',
  'i8042.noaux',
  '8250.nr_uarts=1',
].join(' ');
