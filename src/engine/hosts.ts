import { isLocalUri, Virsh } from '../libvirt/virsh.js';
import type { DiskSpec, HostSpec, Study } from '../study/types.js';
import { errorMessage, UserError } from '../util/errors.js';
import { collectHostFacts } from './backends.js';

/**
 * The hosts of a run (issue 8): each study host is a libvirt URI with its own test disk; a study without
 * hosts has one, "local". Each host gets a copy of the study whose `disk` is that host's, so everything
 * downstream (boot, workloads, baseline) works from `study.disk` unchanged.
 */

export interface HostRun {
  name: string;
  uri: string;
  /** The backend runs on this machine (direct QEMU, or a libvirt URI without a host part). */
  local: boolean;
  /** The study as this host runs it: `disk` is the host's own. */
  study: Study;
}

export function hostRuns(study: Study): HostRun[] {
  const specs: HostSpec[] =
    study.hosts.length > 0 ? study.hosts : [{ name: 'local', uri: study.libvirt.uri }];
  return specs.map((h) => ({
    name: h.name,
    uri: h.uri,
    local: study.backend === 'qemu' || isLocalUri(h.uri),
    study: { ...study, disk: h.disk ?? study.disk },
  }));
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

/** Facts about a host as far as libvirt tells them, for any URI (remote hosts have nothing else). */
export async function libvirtHostFacts(uri: string): Promise<Record<string, unknown>> {
  const virsh = new Virsh(uri, 20_000);
  const facts: Record<string, unknown> = { uri };
  const field = (text: string | undefined, label: string) =>
    new RegExp(`^${label}:\\s*(.+)$`, 'm').exec(text ?? '')?.[1]?.trim();
  const nodeinfo = await virsh.tryRun(['nodeinfo']);
  if (nodeinfo) {
    facts.cpuArch = field(nodeinfo, 'CPU model');
    facts.cpus = Number(field(nodeinfo, 'CPU\\(s\\)'));
    facts.cpuMHz = Number(field(nodeinfo, 'CPU frequency')?.replace(/\D+$/, ''));
    facts.memoryBytes = Number(field(nodeinfo, 'Memory size')?.replace(/\D+$/, '')) * 1024;
    facts.numaNodes = Number(field(nodeinfo, 'NUMA cell\\(s\\)'));
  }
  const version = await virsh.tryRun(['version']);
  facts.libvirt = field(version, 'Using library')?.replace(/^libvirt\s*/, '');
  facts.qemu = field(version, 'Running hypervisor')?.replace(/^QEMU\s*/, '');
  const caps = await virsh.tryRun(['capabilities']);
  const hostCpu = /<host>[\s\S]*?<cpu>([\s\S]*?)<\/cpu>/.exec(caps ?? '')?.[1] ?? '';
  facts.cpuModel = /<model>([^<]+)<\/model>/.exec(hostCpu)?.[1];
  facts.cpuVendor = /<vendor>([^<]+)<\/vendor>/.exec(hostCpu)?.[1];
  facts.hostname = (await virsh.tryRun(['hostname']))?.trim();
  // SMBIOS is often missing (VMs, containers): provenance, not a precondition.
  const sysinfo = await virsh.tryRun(['sysinfo']);
  if (sysinfo) {
    const entry = (name: string) => new RegExp(`<entry name='${name}'>([^<]*)</entry>`).exec(sysinfo)?.[1];
    facts.system = [entry('manufacturer'), entry('product')].filter(Boolean).join(' ') || undefined;
  }
  return Object.fromEntries(Object.entries(facts).filter(([, v]) => v !== undefined && !Number.isNaN(v)));
}

/** A host's facts: this machine's own (hostFacts) when local, plus what libvirt says for libvirt hosts. */
export async function factsOf(study: Study, host: HostRun): Promise<Record<string, unknown>> {
  const facts: Record<string, unknown> = host.local ? await collectHostFacts() : { remote: true };
  if (study.backend === 'libvirt') {
    try {
      facts.libvirtHost = await libvirtHostFacts(host.uri);
    } catch (err) {
      facts.libvirtHost = { error: errorMessage(err) };
    }
  }
  return facts;
}
