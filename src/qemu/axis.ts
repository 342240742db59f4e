import type { Study, Variant, VariantQemu } from '../study/types.js';
import { servedByDaemon, variantDisks } from '../study/variants.js';
import { ConfigError, UserError } from '../util/errors.js';
import { checkVariant } from './argv.js';
import { locateQemu, qemuBinary } from './binary.js';
import { type AioProbe, probeAioModes, type QemuCapabilities, qemuCapabilities } from './capabilities.js';
import { storageDaemonFor } from './storage-daemon.js';

/**
 * The matrix's qemu axis at plan time: every QEMU is asked what it can do (QMP, and a real read with
 * each aio mode), and a variant one of them cannot run refuses the study with the reason, before any
 * VM boots. Variants that spread one disk over several iothreads are asked of what runs them too: the
 * default QEMU (direct backend) or the libvirt hosts with their QEMU.
 */

export interface AxisQemu {
  qemu: VariantQemu;
  capabilities: QemuCapabilities;
  aio: AioProbe;
}

/** The distinct QEMUs of these variants, in matrix order. */
export function axisQemus(variants: readonly Variant[]): VariantQemu[] {
  const out: VariantQemu[] = [];
  for (const v of variants) if (v.qemu && !out.some((q) => q.path === v.qemu?.path)) out.push(v.qemu);
  return out;
}

/** Why `qemu` cannot run variant `v` (undefined: it can). */
export function qemuRefusal(v: Variant, q: AxisQemu): string | undefined {
  try {
    checkVariant(v, q.capabilities);
  } catch (err) {
    if (err instanceof UserError) return err.message;
    throw err;
  }
  const aio = q.aio[v.aio];
  if (aio !== undefined && aio !== true)
    return `variant ${v.id}: aio=${v.aio} does not work on this host: ${aio}`;
  return undefined;
}

/**
 * Probes the QEMUs of `variants` and throws a ConfigError (matrix.qemu) naming every variant one of
 * them cannot run, or (matrix.path) a QEMU without its own storage daemon where a variant's disk is
 * served by one. Resolves with what was probed (the plan prints it).
 */
export async function checkQemuAxis(
  study: Pick<Study, 'source' | 'backend' | 'hosts' | 'libvirt'>,
  variants: readonly Variant[],
): Promise<AxisQemu[]> {
  const probed: AxisQemu[] = [];
  for (const qemu of axisQemus(variants)) {
    const capabilities = await qemuCapabilities(qemu.path);
    const running = `${capabilities.version.major}.${capabilities.version.minor}.${capabilities.version.micro}`;
    if (running !== qemu.version)
      throw new ConfigError(
        study.source,
        'matrix.qemu',
        `${qemu.path} said -version ${qemu.version} but runs as QEMU ${running}: it changed while the study was read; plan again`,
      );
    probed.push({ qemu, capabilities, aio: await probeAioModes(qemu.path) });
  }
  const refusals: string[] = [];
  for (const v of variants) {
    const q = v.qemu && probed.find((p) => p.qemu.path === v.qemu?.path);
    const why = q && qemuRefusal(v, q);
    if (why && q) refusals.push(`${why} [QEMU ${q.qemu.version}, ${q.qemu.path}]`);
  }
  await checkStorageDaemons(study, variants);
  if (refusals.length > 0)
    throw new ConfigError(
      study.source,
      'matrix.qemu',
      `${refusals.length} variant(s) cannot run on their QEMU: ${refusals.join('; ')}. Leave them out with exclude: (e.g. {qemu: [NAME], iothreads: [2]})`,
    );
  await checkOneDiskIothreads(study, variants);
  return probed;
}

/** A variant that spreads one disk over several iothreads: it needs iothread-vq-mapping. */
function spreadsOneDisk(v: Variant): boolean {
  return v.iothreads > 1 && variantDisks(v) === 1;
}

/**
 * Refuses the study (matrix.iothreads) naming every variant that spreads one disk over several
 * iothreads where that cannot run: the default QEMU without iothread-vq-mapping (virtio-blk: 9.0,
 * virtio-scsi: 10.0), or a libvirt host older than 10.0 (virtio-blk) / 11.2 (virtio-scsi). Each
 * reason names the `disks: [N]` alternative.
 */
async function checkOneDiskIothreads(
  study: Pick<Study, 'source' | 'backend' | 'hosts' | 'libvirt'>,
  variants: readonly Variant[],
): Promise<void> {
  const refusals: string[] = [];
  if (study.backend === 'libvirt') {
    const spread = variants.filter(spreadsOneDisk);
    if (spread.length > 0) {
      const { libvirtRefusals } = await import('../libvirt/stack.js');
      refusals.push(...(await libvirtRefusals(study, spread)));
    }
  } else {
    // The axis's own QEMUs were judged above; the others run on the QEMU kvmio finds.
    const spread = variants.filter((v) => !v.qemu && spreadsOneDisk(v));
    const located = locateQemu();
    if (spread.length > 0 && located.found) {
      const capabilities = await qemuCapabilities(located.binary);
      for (const v of spread) {
        try {
          checkVariant(v, capabilities);
        } catch (err) {
          if (!(err instanceof UserError)) throw err;
          refusals.push(`${err.message} [${located.binary}, ${located.reason}]`);
        }
      }
    }
  }
  if (refusals.length > 0)
    throw new ConfigError(
      study.source,
      'matrix.iothreads',
      `${refusals.length} variant(s) cannot run here: ${refusals.join('; ')}`,
    );
}

/** Every QEMU a variant served by the storage daemon runs on has the daemon of its own version. */
async function checkStorageDaemons(
  study: Pick<Study, 'source'>,
  variants: readonly Variant[],
): Promise<void> {
  const binaries = new Set(variants.filter(servedByDaemon).map((v) => v.qemu?.path ?? qemuBinary()));
  for (const binary of binaries) {
    const { major, minor, micro } = (await qemuCapabilities(binary)).version;
    try {
      storageDaemonFor(binary, `${major}.${minor}.${micro}`);
    } catch (err) {
      if (err instanceof UserError) throw new ConfigError(study.source, 'matrix.path', err.message);
      throw err;
    }
  }
}
