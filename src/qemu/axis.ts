import type { Study, Variant, VariantQemu } from '../study/types.js';
import { ConfigError, UserError } from '../util/errors.js';
import { checkVariant } from './argv.js';
import { type AioProbe, probeAioModes, type QemuCapabilities, qemuCapabilities } from './capabilities.js';

/**
 * The matrix's qemu axis at plan time: every QEMU is asked what it can do (QMP, and a real read with
 * each aio mode), and a variant one of them cannot run refuses the study with the reason, before any
 * VM boots.
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
 * them cannot run. Resolves with what was probed (the plan prints it).
 */
export async function checkQemuAxis(
  study: Pick<Study, 'source'>,
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
  if (refusals.length > 0)
    throw new ConfigError(
      study.source,
      'matrix.qemu',
      `${refusals.length} variant(s) cannot run on their QEMU: ${refusals.join('; ')}. Leave them out with exclude: (e.g. {qemu: [NAME], iothreads: [2]})`,
    );
  return probed;
}
