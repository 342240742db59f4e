import { freePort, hmpHostForward } from '../guest/forward.js';
import { isLocalUri, type Virsh } from './virsh.js';

/**
 * A guest port reachable from the controller for a libvirt guest on user-mode networking (xml.ts's
 * default `<interface type='user'>`): HMP `hostfwd_add` through libvirt's monitor connection, so no
 * libvirt network, bridge or qemu:commandline is needed and it works on any URI.
 * - Local URI: bound to 127.0.0.1 on a free port; traffic never leaves loopback.
 * - Remote URI: bound on all of the hypervisor's addresses, reached at the URI's host name; the port is
 *   drawn at random (it cannot be probed from here) and retried when slirp cannot bind it.
 * libvirt marks the domain "tainted: custom-monitor" for the raw monitor command; the domain is transient.
 */
export async function libvirtForwardPort(
  virsh: Virsh,
  domain: string,
  guestPort: number,
): Promise<{ host: string; port: number }> {
  const xml = await virsh.run(['dumpxml', domain]);
  // QEMU's netdev id is libvirt's device alias with a "host" prefix (net0 -> hostnet0).
  const iface = /<interface type='user'>[\s\S]*?<\/interface>/.exec(xml)?.[0];
  if (!iface)
    throw new Error(`${domain} has no user-mode network interface to forward guest port ${guestPort}`);
  const alias = /<alias name='([^']+)'\/>/.exec(iface)?.[1] ?? 'net0';
  const hmp = (line: string) =>
    virsh
      .monitor<string>(domain, 'human-monitor-command', { 'command-line': line })
      .then((r) => String(r ?? ''));
  const local = isLocalUri(virsh.uri);
  const host = local ? '127.0.0.1' : new URL(virsh.uri).hostname;
  const port = await hmpHostForward(hmp, `host${alias}`, guestPort, {
    bind: local ? '127.0.0.1' : '0.0.0.0',
    pickPort: local ? () => freePort() : async () => 20_000 + Math.floor(Math.random() * 40_000),
  });
  return { host, port };
}
