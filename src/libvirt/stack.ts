import { locateQemu } from '../qemu/binary.js';
import { qemuCapabilities } from '../qemu/capabilities.js';
import type { Study, Variant } from '../study/types.js';
import { UserError } from '../util/errors.js';
import { Virsh } from './virsh.js';
import { checkVariant } from './xml.js';

/**
 * What a libvirt host can do with kvmio's disks: libvirt's version and that of the QEMU it runs,
 * and from both, whether one disk (virtio-blk: libvirt 10.0 with QEMU 9.0) or one virtio-scsi
 * controller (libvirt 11.2 with QEMU 10.0) can be spread over several iothreads.
 */
export interface LibvirtStack {
  libvirt: string;
  qemu: string;
  /** The QEMU binary named in the domain's `<emulator>`; undefined: libvirt's default. */
  emulator?: string;
  iothreadVqMapping: boolean;
  scsiIothreadVqMapping: boolean;
}

export type Version = [number, number, number];

function parseVersion(text: string | undefined): Version | undefined {
  const m = /(\d+)\.(\d+)(?:\.(\d+))?/.exec(text ?? '');
  return m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : undefined;
}

function atLeast(v: Version | undefined, major: number, minor: number): boolean {
  return v !== undefined && (v[0] > major || (v[0] === major && v[1] >= minor));
}

/**
 * Reads `virsh version --daemon`: "Running against daemon: 11.3.0", "Running hypervisor: QEMU 7.2.22".
 * Without --daemon virsh prints only its own library's version, which is not the host's libvirt.
 */
export function parseVirshVersion(text: string): { daemon?: Version; hypervisor?: Version } {
  return {
    daemon: parseVersion(/Running against daemon:\s*(\S+)/.exec(text)?.[1]),
    hypervisor: parseVersion(/Running hypervisor:\s*QEMU\s+(\S+)/.exec(text)?.[1]),
  };
}

/**
 * The host's stack. The variant's QEMU (matrix.qemu), else on a local URI the QEMU kvmio was pointed
 * at (KVMIO_QEMU), becomes the domain's `<emulator>`, and its abilities are asked of that binary; elsewhere libvirt's own QEMU is used and
 * judged by the version libvirt reports.
 */
export async function libvirtStack(virsh: Virsh, variantEmulator?: string): Promise<LibvirtStack> {
  const versions = parseVirshVersion(await virsh.run(['version', '--daemon']));
  // A variant on the matrix's qemu axis names its QEMU; it runs on this machine (the study checks).
  const emulator =
    variantEmulator ?? (virsh.isLocal && process.env.KVMIO_QEMU ? locateQemu().binary : undefined);
  const caps = emulator ? await qemuCapabilities(emulator) : undefined;
  const qemu: Version | undefined = caps
    ? [caps.version.major, caps.version.minor, caps.version.micro]
    : versions.hypervisor;
  return {
    libvirt: versions.daemon?.join('.') ?? 'unknown',
    qemu: qemu?.join('.') ?? 'unknown',
    emulator,
    ...vqMappingAbilities(versions.daemon, qemu, caps),
  };
}

/**
 * Whether libvirt can spread one disk over several iothreads: virtio-blk's `<driver><iothreads>`
 * needs libvirt 10.0 and a QEMU with iothread-vq-mapping (9.0), a virtio-scsi controller's needs
 * libvirt 11.2 and QEMU 10.0. A QEMU that was probed answers for itself; otherwise its version does.
 */
export function vqMappingAbilities(
  libvirt: Version | undefined,
  qemu: Version | undefined,
  probed?: Pick<LibvirtStack, 'iothreadVqMapping' | 'scsiIothreadVqMapping'>,
): Pick<LibvirtStack, 'iothreadVqMapping' | 'scsiIothreadVqMapping'> {
  return {
    iothreadVqMapping: atLeast(libvirt, 10, 0) && (probed ? probed.iothreadVqMapping : atLeast(qemu, 9, 0)),
    scsiIothreadVqMapping:
      atLeast(libvirt, 11, 2) && (probed ? probed.scsiIothreadVqMapping : atLeast(qemu, 10, 0)),
  };
}

/**
 * Why the study's libvirt hosts cannot run these variants (several iothreads on one disk), one line
 * each, asked with `virsh version --daemon` (and the variant's QEMU, probed) before anything boots. A
 * host that does not answer is left to the boot, which checks again.
 */
export async function libvirtRefusals(
  study: Pick<Study, 'hosts' | 'libvirt'>,
  variants: readonly Variant[],
): Promise<string[]> {
  const hosts = study.hosts.length > 0 ? study.hosts : [{ name: 'local', uri: study.libvirt.uri }];
  const out: string[] = [];
  for (const host of hosts) {
    const virsh = new Virsh(host.uri, 20_000);
    const stacks = new Map<string | undefined, LibvirtStack | undefined>();
    for (const v of variants) {
      const key = v.qemu?.path;
      if (!stacks.has(key)) stacks.set(key, await libvirtStack(virsh, key).catch(() => undefined));
      const stack = stacks.get(key);
      if (!stack) continue;
      try {
        checkVariant(v, stack.iothreadVqMapping, stack.scsiIothreadVqMapping);
      } catch (err) {
        if (!(err instanceof UserError)) throw err;
        out.push(`${err.message} [libvirt ${stack.libvirt}, QEMU ${stack.qemu} on ${host.name}]`);
      }
    }
  }
  return out;
}
