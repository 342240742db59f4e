import { accessSync, constants, readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * What kvmio needs from the host's own package manager, and how to ask for it there: the same need
 * has a different package name on Debian, Fedora/RHEL, SUSE and Arch.
 */

export type PackageManager = 'apt' | 'dnf' | 'zypper' | 'pacman';

/** A host capability kvmio uses, and the programs that show it is there. */
export type HostNeed = 'qemu' | 'fio' | 'libvirt' | 'e2fsprogs' | 'util-linux' | 'lvm2' | 'ovmf';

/** Needs only some studies have (asked for with `missingNeeds(…, [need])`): disk.lvm needs lvm2. */
const ON_REQUEST: readonly HostNeed[] = ['lvm2'];

/** Needs found by their programs; QEMU is found by its locator, OVMF by its descriptors (qemu/firmware.ts). */
const NEED_PROGRAMS: Record<Exclude<HostNeed, 'qemu' | 'ovmf'>, { programs: string[]; why: string }> = {
  fio: { programs: ['fio'], why: 'host baseline and "import fio"' },
  libvirt: { programs: ['virsh', 'libvirtd'], why: 'the libvirt backend' },
  e2fsprogs: { programs: ['mkfs.ext4'], why: 'file systems on test disks' },
  'util-linux': { programs: ['taskset', 'blkid', 'wipefs', 'fallocate'], why: 'pinning and the data guard' },
  lvm2: { programs: ['lvcreate', 'lvremove', 'lvs', 'vgs'], why: 'scratch LVs of disk.lvm' },
};

const PACKAGE_NAMES: Record<PackageManager, Record<HostNeed, string[]>> = {
  apt: {
    qemu: ['qemu-system-x86', 'qemu-utils'],
    fio: ['fio'],
    libvirt: ['libvirt-daemon-system', 'libvirt-clients'],
    e2fsprogs: ['e2fsprogs'],
    'util-linux': ['util-linux'],
    lvm2: ['lvm2'],
    ovmf: ['ovmf'],
  },
  dnf: {
    qemu: ['qemu-kvm'],
    fio: ['fio'],
    libvirt: ['libvirt-daemon-kvm', 'libvirt-client'],
    e2fsprogs: ['e2fsprogs'],
    'util-linux': ['util-linux'],
    lvm2: ['lvm2'],
    ovmf: ['edk2-ovmf'],
  },
  zypper: {
    qemu: ['qemu-x86', 'qemu-tools'],
    fio: ['fio'],
    libvirt: ['libvirt-daemon-qemu', 'libvirt-client'],
    e2fsprogs: ['e2fsprogs'],
    'util-linux': ['util-linux'],
    lvm2: ['lvm2'],
    ovmf: ['qemu-ovmf-x86_64'],
  },
  pacman: {
    qemu: ['qemu-base'],
    fio: ['fio'],
    libvirt: ['libvirt', 'dnsmasq'],
    e2fsprogs: ['e2fsprogs'],
    'util-linux': ['util-linux'],
    lvm2: ['lvm2'],
    ovmf: ['edk2-ovmf'],
  },
};

const INSTALL: Record<PackageManager, string[]> = {
  apt: ['apt-get', 'install', '-y'],
  dnf: ['dnf', 'install', '-y'],
  zypper: ['zypper', 'install', '-y'],
  pacman: ['pacman', '-S', '--needed'],
};

/** The package manager of a distribution, from /etc/os-release's ID and ID_LIKE. */
export function packageManagerOf(osRelease: string): PackageManager | undefined {
  const field = (name: string) =>
    new RegExp(`^${name}=["']?([^"'\\n]*)`, 'm').exec(osRelease)?.[1]?.toLowerCase().split(/\s+/) ?? [];
  const ids = [...field('ID'), ...field('ID_LIKE')];
  if (ids.some((id) => ['debian', 'ubuntu'].includes(id))) return 'apt';
  if (ids.some((id) => ['fedora', 'rhel', 'centos', 'rocky', 'almalinux', 'ol', 'amzn'].includes(id)))
    return 'dnf';
  if (ids.some((id) => id === 'suse' || id.startsWith('opensuse') || id === 'sles')) return 'zypper';
  if (ids.some((id) => ['arch', 'manjaro', 'endeavouros'].includes(id))) return 'pacman';
  return undefined;
}

export function hostPackageManager(osReleaseFile = '/etc/os-release'): PackageManager | undefined {
  try {
    return packageManagerOf(readFileSync(osReleaseFile, 'utf8'));
  } catch {
    return undefined;
  }
}

/** The command that installs what `needs` names on a host with `pm` (sudo when not root). */
export function installCommand(pm: PackageManager, needs: readonly HostNeed[], root: boolean): string {
  const packages = [...new Set(needs.flatMap((n) => PACKAGE_NAMES[pm][n]))];
  return [...(root ? [] : ['sudo']), ...INSTALL[pm], ...packages].join(' ');
}

function onPath(program: string, env: NodeJS.ProcessEnv): boolean {
  // sbin directories too: an unprivileged user's PATH often lacks them, but the tools are there.
  const dirs = [...(env.PATH ?? '').split(':'), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  return dirs.some((dir) => {
    if (!dir.startsWith('/')) return false;
    try {
      accessSync(join(dir, program), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

export interface MissingNeed {
  need: HostNeed;
  why: string;
}

/**
 * The needs this host lacks; `qemuFound` comes from the QEMU locator (it knows distribution paths).
 * `requested`: needs of a study's own (lvm2 for disk.lvm), checked only when asked for.
 */
export function missingNeeds(
  qemuFound: boolean,
  env: NodeJS.ProcessEnv = process.env,
  requested: readonly HostNeed[] = [],
): MissingNeed[] {
  const out: MissingNeed[] = [];
  if (!qemuFound) out.push({ need: 'qemu', why: 'every measurement runs in QEMU' });
  for (const [need, { programs, why }] of Object.entries(NEED_PROGRAMS)) {
    if (ON_REQUEST.includes(need as HostNeed) && !requested.includes(need as HostNeed)) continue;
    const absent = programs.filter((p) => !onPath(p, env));
    if (absent.length) out.push({ need: need as HostNeed, why: `${why} (no ${absent.join(', ')})` });
  }
  return out;
}

/** One line per missing need and the install command for this host's package manager. */
export function missingAdvice(missing: readonly MissingNeed[], pm: PackageManager | undefined): string[] {
  if (!missing.length) return [];
  const what = missing.map((m) => `${m.need}: ${m.why}`);
  const how = pm
    ? `install with: ${installCommand(
        pm,
        missing.map((m) => m.need),
        process.getuid?.() === 0,
      )}`
    : "install them with this host's package manager";
  return [`this host lacks ${what.join('; ')}`, how];
}
