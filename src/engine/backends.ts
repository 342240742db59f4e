import type { GuestVm } from '../guest/vm.js';
import type { Study, Variant } from '../study/types.js';

/**
 * The modules the run loop drives, loaded on first use: the CLI stays quick to start, and a run that
 * only measures the host never loads the VM backends.
 */

export type Accel = 'kvm' | 'tcg';

export interface AccelChoice {
  accel: Accel;
  reason: string;
  warning?: string;
}

export async function chooseAccelerator(): Promise<AccelChoice> {
  const { probeAccelerator } = await import('../host/accel.js');
  const r = await probeAccelerator();
  return { accel: r.accel, reason: r.reason, warning: r.warning };
}

export async function collectHostFacts(): Promise<Record<string, unknown>> {
  try {
    const { hostFacts } = await import('../host/facts.js');
    return { ...((await hostFacts()) as unknown as Record<string, unknown>) };
  } catch (err) {
    // Facts are provenance, not a precondition: a run without them still measures.
    return { error: `host facts unavailable: ${(err as Error).message}` };
  }
}

export interface BootRequest {
  study: Study;
  variant: Variant;
  accel: Accel;
  name: string;
  /** libvirt connection URI and study name of the host the point runs on. */
  uri: string;
  host: string;
  log: (line: string) => void;
}

/** Boots the guest for `req.variant` with the study's backend; resolves once the guest answers. */
export async function bootGuest(req: BootRequest): Promise<GuestVm> {
  const { ensureGuest, GUEST_KERNEL_CMDLINE } = await import('../guest/build.js');
  const image = await ensureGuest({ log: req.log, release: req.study.guest.release });
  if (req.study.backend === 'libvirt') {
    const { startLibvirtVm } = await import('../libvirt/vm.js');
    return startLibvirtVm({
      study: req.study,
      variant: req.variant,
      image,
      accel: req.accel,
      name: req.name,
      uri: req.uri,
      host: req.host,
      log: req.log,
    });
  }
  const { startQemuVm } = await import('../qemu/vm.js');
  return startQemuVm({
    study: req.study,
    variant: req.variant,
    image: { kernel: image.kernel, initrd: image.initrd, cmdline: GUEST_KERNEL_CMDLINE },
    accel: req.accel,
    name: req.name,
    log: req.log,
  });
}

export async function loadWorkloads(): Promise<typeof import('../workloads/index.js')> {
  return import('../workloads/index.js');
}

/** QEMU's stderr and argv when the backend exposes them (direct QEMU does), for a point's artifacts. */
export function backendArtifacts(vm: GuestVm): Record<string, string> {
  const out: Record<string, string> = {};
  const anyVm = vm as unknown as { argv?: unknown; stderrTail?: unknown; domainXml?: unknown };
  if (Array.isArray(anyVm.argv)) out['qemu.argv'] = JSON.stringify(anyVm.argv);
  if (typeof anyVm.stderrTail === 'function') {
    const text = String((anyVm.stderrTail as () => string).call(vm) ?? '');
    if (text) out['qemu.stderr'] = text;
  } else if (typeof anyVm.stderrTail === 'string' && anyVm.stderrTail) out['qemu.stderr'] = anyVm.stderrTail;
  if (typeof anyVm.domainXml === 'string') out['libvirt.xml'] = anyVm.domainXml;
  return out;
}
