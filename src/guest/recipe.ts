import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { DEFAULT_GUEST_RELEASE, type GuestRelease } from '../study/guest-release.js';
import { packageFile } from '../util/paths.js';

export {
  DEFAULT_GUEST_RELEASE,
  GUEST_MIN_MEMORY_MIB,
  GUEST_RELEASES,
  type GuestRelease,
} from '../study/guest-release.js';

/**
 * What goes into the embedded guest: the Debian packages it is made from and the files taken from
 * them. Pure data and hashing, so that it is testable without downloading anything.
 */

/** Bumped whenever the builder itself changes how the guest is assembled. */
export const BUILDER_VERSION = 3;

/** PostgreSQL's major version in each release (its package name and paths carry it). */
const POSTGRES_MAJOR: Record<GuestRelease, number> = { trixie: 17, bookworm: 15 };

/** Everything that goes into the guest of one release. */
export interface GuestRecipe {
  release: GuestRelease;
  postgresMajor: number;
  packages: string[];
  programs: string[];
  trees: string[];
  excludes: RegExp[];
}

export function guestRecipe(release: GuestRelease = DEFAULT_GUEST_RELEASE): GuestRecipe {
  const pg = POSTGRES_MAJOR[release];
  return {
    release,
    postgresMajor: pg,
    packages: [...GUEST_PACKAGES, `postgresql-${pg}`],
    programs: [...GUEST_PROGRAMS, ...POSTGRES_PROGRAMS.map((p) => `usr/lib/postgresql/${pg}/bin/${p}`)],
    trees: [`usr/share/postgresql/${pg}`, `usr/lib/postgresql/${pg}/lib`, ...GUEST_TREES],
    excludes: [...GUEST_EXCLUDES, new RegExp(`^usr/share/postgresql/${pg}/man(/|$)`)],
  };
}

/** Packages of every release (PostgreSQL is added per release). */
export const GUEST_PACKAGES = [
  'linux-image-cloud-amd64',
  'busybox-static',
  'util-linux', // setpriv, behind the guest's chpst (Debian's busybox has no chpst applet)
  'qemu-guest-agent',
  'fio',
  'rsync',
  'e2fsprogs',
  'tzdata',
] as const;

/**
 * Programs copied into the guest, with every shared library they need, by their merged-/usr path
 * (bookworm's packages still ship some under /bin and /sbin; the builder finds either).
 */
export const GUEST_PROGRAMS = [
  'usr/bin/busybox',
  'usr/bin/setpriv',
  'usr/sbin/qemu-ga',
  'usr/bin/fio',
  'usr/bin/rsync',
  'usr/sbin/mke2fs',
  'usr/sbin/mkfs.ext4',
  'usr/sbin/e2fsck',
  'usr/sbin/fsck.ext4',
  'usr/sbin/tune2fs',
];

const POSTGRES_PROGRAMS = [
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
];

/** Data trees copied whole (initdb needs PostgreSQL's share directory, added per release). */
export const GUEST_TREES = ['etc/mke2fs.conf', 'usr/share/zoneinfo/Etc/UTC', 'usr/share/zoneinfo/UTC'];

/**
 * Left out: PostgreSQL's JIT (it pulls in libLLVM, ~100 MB; the guest runs postgres with jit=off) and
 * documentation.
 */
export const GUEST_EXCLUDES = [/\/llvmjit[^/]*$/, /\/bitcode(\/|$)/];

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

/**
 * Kernel modules the guest loads at boot (with their dependencies), unless the release's kernel has
 * them built in (modules.builtin); ext4 is built into the cloud kernel.
 */
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
  return packageFile('src', 'guest', 'assets');
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
export function recipeHash(
  assets: Map<string, Buffer>,
  release: GuestRelease = DEFAULT_GUEST_RELEASE,
): string {
  const recipe = guestRecipe(release);
  const h = createHash('sha256');
  h.update(
    JSON.stringify({
      builder: BUILDER_VERSION,
      suite: release,
      packages: recipe.packages,
      programs: recipe.programs,
      trees: recipe.trees,
      excludes: recipe.excludes.map(String),
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
