import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { GUEST_KERNEL_CMDLINE, GUEST_MIN_MEMORY_MIB } from '../guest/build.js';
import { type AccelResult, TCG_WARNING } from '../host/accel.js';
import { runtimeDir } from '../util/paths.js';
import { onCleanup, sleep } from '../util/proc.js';
import type { StagedGuest } from './stage.js';
import type { Virsh } from './virsh.js';
import { escapeXml, KVMIO_XMLNS } from './xml.js';

/**
 * The accelerator of a libvirt host, probed on that host as the local probe does on this machine:
 * libvirt offering kvm domains is not enough (on nested or PVM hosts guests hang at boot), so kvm counts
 * only if the staged guest boots in a transient kvm domain there until its agent answers.
 */

export type ProbeVirsh = Pick<Virsh, 'uri' | 'run' | 'tryRun'>;

const DEFAULT_TIMEOUT_MS = 30_000;

function tcg(reason: string): AccelResult {
  return { accel: 'tcg', reason, warning: TCG_WARNING };
}

/** The smallest domain that boots the guest: no disk, no network, the agent channel only. */
export function probeDomainXml(name: string, guest: StagedGuest, emulator?: string): string {
  return [
    `<domain type='kvm'>`,
    `  <name>${escapeXml(name)}</name>`,
    '  <metadata>',
    `    <kvmio:domain xmlns:kvmio='${KVMIO_XMLNS}' study='accelerator-probe' owner-host='${escapeXml(hostname())}' owner-pid='${process.pid}'/>`,
    '  </metadata>',
    `  <memory unit='MiB'>${GUEST_MIN_MEMORY_MIB}</memory>`,
    `  <vcpu>1</vcpu>`,
    '  <os>',
    `    <type arch='x86_64' machine='q35'>hvm</type>`,
    `    <kernel>${escapeXml(guest.kernel)}</kernel>`,
    `    <initrd>${escapeXml(guest.initrd)}</initrd>`,
    `    <cmdline>${escapeXml(GUEST_KERNEL_CMDLINE)}</cmdline>`,
    '  </os>',
    // The CPU model the VMs use under KVM: a probe with another model could boot where they do not.
    `  <cpu mode='host-passthrough'/>`,
    `  <on_reboot>destroy</on_reboot>`,
    '  <devices>',
    ...(emulator ? [`    <emulator>${escapeXml(emulator)}</emulator>`] : []),
    `    <channel type='unix'>`,
    `      <target type='virtio' name='org.qemu.guest_agent.0'/>`,
    '    </channel>',
    `    <controller type='usb' model='none'/>`,
    `    <memballoon model='none'/>`,
    '  </devices>',
    '</domain>',
    '',
  ].join('\n');
}

/** virsh's words without its "virsh domcapabilities:" prefix. */
function said(err: unknown): string {
  const e = err as { virshMessage?: string; message?: string };
  return e.virshMessage ?? e.message ?? String(err);
}

let probeSeq = 0;

/**
 * Probes the host behind `virsh`: libvirt must offer kvm domains (`domcapabilities --virttype kvm`),
 * then the guest staged there must boot in a transient kvm domain within timeoutMs. Anything else is
 * TCG with libvirt's or the boot's reason, naming the host.
 */
export async function probeLibvirtAccelerator(
  virsh: ProbeVirsh,
  guest: StagedGuest,
  opts: { timeoutMs?: number; emulator?: string; log?: (line: string) => void } = {},
): Promise<AccelResult> {
  const where = `libvirt at ${virsh.uri}`;
  try {
    await virsh.run(['domcapabilities', '--virttype', 'kvm'], { timeoutMs: 30_000 });
  } catch (err) {
    return tcg(`${where} offers no kvm domains: ${said(err)}`);
  }
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const name = `kvmio-accel-${process.pid}-${++probeSeq}`;
  const scratch = mkdtempSync(join(runtimeDir(), 'accel-'));
  const xmlFile = join(scratch, 'domain.xml');
  writeFileSync(xmlFile, probeDomainXml(name, guest, opts.emulator));
  opts.log?.(
    `accel: booting the guest in a kvm domain on ${virsh.uri} (up to ${Math.round(timeoutMs / 1000)}s)`,
  );
  const destroy = async () => {
    await virsh.tryRun(['destroy', name], { timeoutMs: 15_000 });
  };
  const offCleanup = onCleanup(destroy);
  const started = Date.now();
  try {
    try {
      await virsh.run(['create', xmlFile], { timeoutMs: 60_000 });
    } catch (err) {
      return tcg(`${where} offers kvm domains but cannot start one: ${said(err)}`);
    }
    for (;;) {
      const ping = ['qemu-agent-command', name, '--timeout', '2', '{"execute":"guest-ping"}'];
      if (await virsh.tryRun(ping)) {
        const s = ((Date.now() - started) / 1000).toFixed(1);
        return { accel: 'kvm', reason: `the guest booted in a kvm domain of ${where} in ${s}s` };
      }
      const state = (await virsh.tryRun(['domstate', name]))?.trim() || 'gone';
      if (state !== 'running') return tcg(`${where} started a kvm domain but it is ${state} while booting`);
      if (Date.now() - started > timeoutMs)
        return tcg(
          `${where} offers kvm domains but the guest did not boot in one within ${Math.round(timeoutMs / 1000)}s`,
        );
      await sleep(1000);
    }
  } finally {
    offCleanup();
    await destroy();
    rmSync(scratch, { recursive: true, force: true });
  }
}
