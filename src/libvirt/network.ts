import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../util/errors.js';
import { waitFor } from '../util/proc.js';
import type { Virsh } from './virsh.js';

/**
 * Guest networking for several guests per variant (fio client/server): kvmio's own libvirt network,
 * isolated (no forwarding, no NAT rules on the host), with DHCP. Host and guests reach each other on
 * it; nothing else does. It is transient, like kvmio's domains and pool: nothing is left in the host's
 * libvirt configuration, and it is created again on first use after a libvirtd restart.
 */

export const KVMIO_NETWORK = 'kvmio';
const SUBNET = '192.168.231';

export function kvmioNetworkXml(): string {
  return [
    '<network>',
    `  <name>${KVMIO_NETWORK}</name>`,
    `  <bridge name='kvmio0' stp='off'/>`,
    `  <ip address='${SUBNET}.1' netmask='255.255.255.0'>`,
    '    <dhcp>',
    `      <range start='${SUBNET}.10' end='${SUBNET}.250'/>`,
    '    </dhcp>',
    '  </ip>',
    '</network>',
    '',
  ].join('\n');
}

/** Makes sure the named network is active: kvmio's own is created when missing; others must be running. */
export async function ensureNetwork(virsh: Virsh, name: string, scratchDir: string): Promise<void> {
  const info = await virsh.tryRun(['net-info', name]);
  if (info && /^Active:\s+yes/m.test(info)) return;
  if (name !== KVMIO_NETWORK) {
    throw new UserError(
      info
        ? `libvirt network "${name}" on ${virsh.uri} is not active: start it (virsh net-start ${name}) or use "${KVMIO_NETWORK}"`
        : `libvirt network "${name}" does not exist on ${virsh.uri}; kvmio creates its own as "${KVMIO_NETWORK}"`,
    );
  }
  const file = join(scratchDir, 'network.xml');
  writeFileSync(file, kvmioNetworkXml());
  try {
    await virsh.run(['net-create', file]);
  } catch (e) {
    // Created meanwhile by another kvmio.
    if (!/^Active:\s+yes/m.test((await virsh.tryRun(['net-info', name])) ?? '')) throw e;
  }
}

/** The guest's first IPv4 address outside loopback, as the guest agent reports it. */
export async function guestAddress(virsh: Virsh, domain: string, timeoutMs = 30_000): Promise<string> {
  return waitFor(
    `an IPv4 address of ${domain}`,
    async () => {
      const out = await virsh.run(['domifaddr', domain, '--source', 'agent']);
      for (const line of out.split('\n')) {
        const m = /^\s*(\S+)\s+\S+\s+ipv4\s+([\d.]+)\//.exec(line);
        if (m && m[1] !== 'lo' && !m[2]?.startsWith('127.')) return m[2];
      }
      return undefined;
    },
    timeoutMs,
    500,
  );
}
