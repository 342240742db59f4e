import type { VmBackend } from '../guest/vm.js';
import type { DiskSpec, HostSpec, Study } from '../study/types.js';
import { UserError } from '../util/errors.js';

/**
 * The hosts of a run: each study host is a libvirt URI with its own test disk; a study without
 * hosts has one, "local". Each host gets a copy of the study whose `disk` is that host's, so everything
 * downstream (boot, workloads, baseline) works from `study.disk` unchanged.
 */

export interface HostRun {
  name: string;
  uri: string;
  /** The host's VMs run on this machine (direct QEMU, or a libvirt URI without a host part). */
  local: boolean;
  backend: VmBackend;
  /** The study as this host runs it: `disk` is the host's own. */
  study: Study;
}

/** Makes the backend of one host of the study. */
export type BackendFactory = (study: Study, host: HostSpec) => Promise<VmBackend>;

export async function hostRuns(study: Study, backendFor: BackendFactory): Promise<HostRun[]> {
  const specs: HostSpec[] =
    study.hosts.length > 0 ? study.hosts : [{ name: 'local', uri: study.libvirt.uri }];
  return Promise.all(
    specs.map(async (h) => {
      const backend = await backendFor(study, h);
      return {
        name: h.name,
        uri: h.uri,
        local: backend.isLocal,
        backend,
        study: { ...study, disk: h.disk ?? study.disk },
      };
    }),
  );
}

/**
 * Guest i's test disk: guest 0 uses the host's disk, the others a file of the same size beside it
 * (`<path>.guest<i>`): two QEMUs cannot both open one image read-write (QEMU's image locks), and each
 * guest stands for a VM with a disk of its own.
 */
export function guestDisk(disk: DiskSpec, guest: number): DiskSpec {
  return guest === 0 ? disk : { path: `${disk.path}.guest${guest}`, sizeBytes: disk.sizeBytes };
}

/**
 * Every disk file this machine prepares and locks: the local hosts' disks and their guests' copies.
 * Remote hosts' disks live on those hosts (see README: they must exist there). Two local hosts on one
 * disk would measure each other, so that is refused.
 */
export function localDisks(study: Study, hosts: HostRun[]): DiskSpec[] {
  const seen = new Map<string, string>();
  const out: DiskSpec[] = [];
  for (const h of hosts.filter((x) => x.local)) {
    const other = seen.get(h.study.disk.path);
    if (other !== undefined)
      throw new UserError(
        `${study.source}: hosts ${other} and ${h.name} both use the disk ${h.study.disk.path} on this machine; give each host its own disk (hosts[].disk.path)`,
      );
    seen.set(h.study.disk.path, h.name);
    for (let g = 0; g < study.guest.count; g++) out.push(guestDisk(h.study.disk, g));
  }
  return out;
}
