import type { GuestRelease } from '../guest/recipe.js';
import type { BootRequest, VmBackend } from '../guest/vm.js';
import type { AccelResult } from '../host/accel.js';
import { hostAccessFor } from '../host/access.js';
import type { Ovmf } from '../qemu/firmware.js';
import type { HostSpec, Study } from '../study/types.js';
import { ConfigError, errorMessage } from '../util/errors.js';
import { isLocalUri, Virsh } from './virsh.js';
import type { LibvirtVm } from './vm.js';

/**
 * Guests as libvirt domains on one URI, local or remote: everything goes through virsh, so a remote
 * host needs nothing but libvirt. The VM modules load on the first stage or boot.
 */

/**
 * Staging the guest image on a libvirt host replaces its volumes: two local URIs may be one daemon, so
 * their stagings run one after the other. Remote hosts stage concurrently.
 */
let localStaging: Promise<unknown> = Promise.resolve();

export function libvirtBackend(
  host: Pick<HostSpec, 'name' | 'uri'>,
  release: GuestRelease | undefined,
): VmBackend<LibvirtVm> {
  const isLocal = isLocalUri(host.uri);
  const access = hostAccessFor(host.uri, isLocal);
  let staged = false;
  let accel: Promise<AccelResult> | undefined;
  let ovmf: Promise<Ovmf | undefined> | undefined;
  // A uefi study's OVMF, found on the libvirt host itself (its files are what its QEMU opens), once.
  const hostOvmf = (study: Study): Promise<Ovmf | undefined> => {
    ovmf ??= import('../qemu/firmware.js').then(({ studyOvmf }) => {
      if ((study.guest.firmware ?? 'bios') === 'bios') return undefined;
      if (!access)
        throw new ConfigError(
          study.source,
          'guest.firmware',
          `uefi on host ${host.name}: kvmio finds OVMF through the host's firmware descriptors and has no way onto it (${host.uri} is not a qemu+ssh:// URI)`,
        );
      return studyOvmf(study, access);
    });
    return ovmf;
  };
  const probeOnHost = async (log: (line: string) => void): Promise<AccelResult> => {
    const [{ ensureGuest }, { stageGuest }, { probeLibvirtAccelerator }] = await Promise.all([
      import('../guest/build.js'),
      import('./stage.js'),
      import('./accel.js'),
    ]);
    const virsh = new Virsh(host.uri);
    const guest = await stageGuest(virsh, await ensureGuest({ log, release }));
    return probeLibvirtAccelerator(virsh, guest, { log });
  };
  return {
    isLocal,
    access,
    reach: async () => {
      await new Virsh(host.uri).ensureReachable(20_000);
      // The remote /proc reader's first start is a login: before any measured window, not inside one.
      if (access && !access.local) await (await import('../metrics/cpu.js')).openProcReader(access);
    },
    facts: async () => {
      // Facts are read on the host itself (this machine directly, another over SSH), plus libvirt's.
      const facts: Record<string, unknown> = isLocal ? {} : { remote: access?.label ?? true };
      if (access) {
        try {
          const { hostFacts } = await import('../host/facts.js');
          Object.assign(facts, await hostFacts(access));
        } catch (err) {
          // Facts are provenance, not a precondition: a run without them still measures.
          facts.error = `host facts unavailable: ${errorMessage(err)}`;
        }
      } else facts.unmeasured = unmeasurable(host.uri);
      try {
        facts.libvirtHost = await libvirtHostFacts(host.uri);
      } catch (err) {
        facts.libvirtHost = { error: errorMessage(err) };
      }
      return facts;
    },
    checkDisk: async (study) => {
      const { checkQemuCanReach } = await import('./dac.js');
      await checkQemuCanReach(new Virsh(host.uri), study.disk.path, study.source);
    },
    checkFirmware: async (study) => {
      await hostOvmf(study);
    },
    accelerator: isLocal ? undefined : (log) => (accel ??= probeOnHost(log)),
    stage: async (log) => {
      if (staged) return;
      const [{ ensureGuest }, { stageGuest }] = await Promise.all([
        import('../guest/build.js'),
        import('./stage.js'),
      ]);
      const image = await ensureGuest({ log, release });
      const virsh = new Virsh(host.uri);
      await virsh.ensureReachable(20_000);
      if (isLocal) {
        const mine = localStaging.then(() => stageGuest(virsh, image));
        localStaging = mine.catch(() => undefined);
        await mine;
      } else await stageGuest(virsh, image);
      staged = true;
    },
    boot: async (req: BootRequest) => {
      const [{ ensureGuest }, { startLibvirtVm }] = await Promise.all([
        import('../guest/build.js'),
        import('./vm.js'),
      ]);
      return startLibvirtVm({
        study: req.study,
        variant: req.variant,
        image: await ensureGuest({ log: req.log, release }),
        // A remote host's guests run with what booted there, not with the controller's accelerator.
        accel: accel ? (await accel).accel : req.accel,
        name: req.name,
        uri: host.uri,
        host: host.name,
        ovmf: await hostOvmf(req.study),
        log: req.log,
      });
    },
    verify: (vm) => vm.verifyAio(),
    artifacts: (vm) => ({
      'libvirt.xml': vm.domainXml,
      ...(vm.qemu ? { qemu: JSON.stringify(vm.qemu) } : {}),
      ...(vm.firmware ? { firmware: vm.firmware } : {}),
      ...vm.daemon?.artifacts(),
    }),
  };
}

/**
 * What kvmio cannot measure on a host it has no way onto (a libvirt URI that is not qemu+ssh): the
 * report shows this for the host instead of leaving its charts silently empty.
 */
export function unmeasurable(uri: string): string[] {
  return ['per-thread QEMU CPU', 'host facts', 'host baseline', 'data guard'].map(
    (what) => `${what}: not measured (${uri} is not a qemu+ssh:// URI, kvmio has no way onto that host)`,
  );
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
