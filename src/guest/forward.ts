import { createServer } from 'node:net';

/**
 * Host port forwards to a guest port through QEMU's user-mode network (slirp), the way both backends
 * reach a guest's fio server: HMP `hostfwd_add` on the running VM, no extra network or host routing, and
 * traffic stays on the host's loopback (or on the hypervisor's own address for a remote libvirt host).
 */

/** A TCP port that is free on `address` right now (the OS picks it). */
export function freePort(address = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, address, () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Adds `tcp:bind:port-:guestPort` to the netdev through an HMP command runner; retries with another port
 * when the chosen one was taken meanwhile (slirp answers with text, not an error, when it cannot bind).
 */
export async function hmpHostForward(
  hmp: (commandLine: string) => Promise<string>,
  netdev: string,
  guestPort: number,
  opts: { bind: string; pickPort: () => Promise<number> },
): Promise<number> {
  let last = '';
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await opts.pickPort();
    last = (await hmp(`hostfwd_add ${netdev} tcp:${opts.bind}:${port}-:${guestPort}`)).trim();
    if (last === '') return port;
  }
  throw new Error(`hostfwd_add on ${netdev} to guest port ${guestPort} failed: ${last}`);
}
