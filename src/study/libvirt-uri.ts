/**
 * Which libvirt connection URIs a study may name. libvirt's `ext` transport runs the program in
 * `?command=`, and parameters such as `socket=`, `keyfile=`, `pkipath=`, `known_hosts=` or `netcat=`
 * make libvirt (or the ssh it starts) open host files or run a command elsewhere: a shared study
 * file must not steer those. What is allowed: the QEMU driver, the transports below, a plain
 * user/host/port, the /system or /session path, and the parameters below.
 */
export const LIBVIRT_TRANSPORTS = ['', 'unix', 'ssh', 'libssh', 'libssh2', 'tls', 'tcp'] as const;
export const LIBVIRT_URI_PARAMS = [
  'no_verify',
  'no_tty',
  'mode',
  'proxy',
  'sshauth',
  'known_hosts_verify',
] as const;

export const LIBVIRT_URI_HELP =
  'qemu[+unix|+ssh|+libssh|+libssh2|+tls|+tcp]://[user@]host[:port]/system (or /session), parameters only ' +
  LIBVIRT_URI_PARAMS.join(', ');

const URI =
  /^qemu(?:\+([a-z0-9]+))?:\/\/(?:([A-Za-z0-9._-]+)@)?([A-Za-z0-9.-]*|\[[0-9A-Fa-f:.]+\])(?::(\d{1,5}))?\/(system|session)(?:\?(.*))?$/;
const HOST = /^(?:|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])$/;
const PARAM_VALUE = /^[A-Za-z0-9._,-]*$/;

/** Why a URI is refused, or undefined when it is allowed. */
export function libvirtUriProblem(uri: string): string | undefined {
  const m = URI.exec(uri);
  if (!m) return `is not an allowed libvirt URI: ${LIBVIRT_URI_HELP}`;
  const [, transport = '', user, host = '', port, , query] = m;
  if (!(LIBVIRT_TRANSPORTS as readonly string[]).includes(transport))
    return `transport "${transport}" is not allowed (it can run a command on this host); allowed: ${LIBVIRT_TRANSPORTS.filter(Boolean).join(', ')} or none`;
  if (!HOST.test(host)) return `host "${host}" is not a host name or address`;
  if ((transport === '' || transport === 'unix') && (host || user || port))
    return `a local URI (qemu:///system) names no host; use qemu+ssh://${user ? `${user}@` : ''}${host}/system for a remote one`;
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) return `port ${port} is out of range`;
  if (query !== undefined) {
    for (const pair of query.split('&')) {
      const [name = '', value = ''] = pair.split('=', 2);
      if (!(LIBVIRT_URI_PARAMS as readonly string[]).includes(name))
        return `parameter "${name}" is not allowed (it names a host file or a command); allowed: ${LIBVIRT_URI_PARAMS.join(', ')}`;
      if (!PARAM_VALUE.test(value)) return `parameter ${name}: value "${value}" is not allowed`;
    }
  }
  return undefined;
}

/** A URI of this machine's own libvirtd (no host part). */
export function isLocalLibvirtUri(uri: string): boolean {
  const m = URI.exec(uri);
  return m !== null && !m[3];
}
