import { locateQemu } from '../qemu/binary.js';
import { type AioProbe, probeAioModes, qemuCapabilities } from '../qemu/capabilities.js';
import { errorMessage } from '../util/errors.js';

/**
 * Every QEMU `kvmio doctor` was pointed at, each asked what it can do on this host: its version, the
 * aio modes that really work (a read per mode, as live verification judges them) and whether one
 * disk can be spread over several iothreads (virtio-blk, virtio-scsi).
 */

export interface DoctorQemu {
  path: string;
  /** Why doctor looked at it: "KVMIO_QEMU", "default (qemu-system-x86_64 on PATH)", "matrix.qemu q10", … */
  why: string[];
  version?: string;
  package?: string;
  aio?: AioProbe;
  vqMapping?: { 'virtio-blk': boolean; 'virtio-scsi': boolean };
  /** Why it could not be probed. */
  error?: string;
}

/** Where a QEMU came from, before probing. */
export interface QemuSource {
  path: string;
  why: string;
}

/** KVMIO_QEMU (when set), the QEMU found without it, and the given ones (a study's matrix.qemu). */
export function doctorQemuSources(
  extra: QemuSource[] = [],
  env: NodeJS.ProcessEnv = process.env,
): QemuSource[] {
  const out: QemuSource[] = [];
  if (env.KVMIO_QEMU) {
    const chosen = locateQemu({ env });
    out.push({ path: chosen.binary, why: chosen.found ? 'KVMIO_QEMU' : chosen.reason });
  }
  const { KVMIO_QEMU: _, ...withoutChoice } = env;
  const located = locateQemu({ env: withoutChoice });
  out.push({ path: located.binary, why: located.found ? `default (${located.reason})` : located.reason });
  return [...out, ...extra];
}

/** Probes each distinct path once; a QEMU that cannot be probed says why instead. */
export async function probeDoctorQemus(sources: QemuSource[]): Promise<DoctorQemu[]> {
  const byPath = new Map<string, DoctorQemu>();
  for (const s of sources) {
    const seen = byPath.get(s.path);
    if (seen) {
      if (!seen.why.includes(s.why)) seen.why.push(s.why);
      continue;
    }
    byPath.set(s.path, { path: s.path, why: [s.why] });
  }
  for (const q of byPath.values()) {
    if (!q.path.startsWith('/')) {
      q.error = 'not found';
      continue;
    }
    try {
      const caps = await qemuCapabilities(q.path);
      q.version = `${caps.version.major}.${caps.version.minor}.${caps.version.micro}`;
      if (caps.version.package) q.package = caps.version.package;
      q.vqMapping = { 'virtio-blk': caps.iothreadVqMapping, 'virtio-scsi': caps.scsiIothreadVqMapping };
      q.aio = await probeAioModes(q.path);
    } catch (err) {
      q.error = errorMessage(err).split('\n')[0];
    }
  }
  return [...byPath.values()];
}

/** One line per QEMU: path, version, why, the aio modes that work (and why the others do not), vq-mapping. */
export function formatDoctorQemus(qemus: readonly DoctorQemu[]): string[] {
  return qemus.map((q) => {
    const head = `${q.path}${q.version ? ` ${q.version}` : ''} (${q.why.join('; ')})`;
    if (q.error || !q.aio || !q.vqMapping) return `${head}: cannot be probed: ${q.error ?? 'unknown'}`;
    const aio = Object.entries(q.aio).map(([mode, ok]) => (ok === true ? mode : `${mode} NOT (${ok})`));
    const vq = (bus: 'virtio-blk' | 'virtio-scsi') => `${bus} ${q.vqMapping?.[bus] ? 'yes' : 'no'}`;
    return `${head}: aio ${aio.join(', ')}; one disk over several iothreads (iothread-vq-mapping): ${vq('virtio-blk')}, ${vq('virtio-scsi')}`;
  });
}
