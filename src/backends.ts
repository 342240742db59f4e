import type { VmBackend } from './guest/vm.js';
import type { HostSpec, Study } from './study/types.js';
import { UserError } from './util/errors.js';

/**
 * Which VmBackend runs a study's hosts: one entry per `backend:` value. Each module loads on first
 * use, so the CLI stays quick to start and a run that only measures the host loads neither.
 */
const BACKENDS: Record<
  Study['backend'],
  { remoteHosts: boolean; open: (host: HostSpec, study: Study) => Promise<VmBackend> }
> = {
  qemu: { remoteHosts: false, open: async () => (await import('./qemu/backend.js')).qemuBackend() },
  libvirt: {
    remoteHosts: true,
    open: async (host, study) =>
      (await import('./libvirt/backend.js')).libvirtBackend(host, study.guest.release),
  },
};

export async function openBackend(study: Study, host: HostSpec): Promise<VmBackend> {
  const kind = BACKENDS[study.backend];
  if (study.hosts.length > 0 && !kind.remoteHosts)
    throw new UserError(
      `${study.source}: hosts are libvirt URIs and need backend: libvirt (the ${study.backend} backend runs on this machine only)`,
    );
  return kind.open(host, study);
}
