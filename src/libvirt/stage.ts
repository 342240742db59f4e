import { createHash } from 'node:crypto';
import { createReadStream, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runtimeDir } from '../util/paths.js';
import { type Virsh, VirshError } from './virsh.js';

/**
 * Puts the builtin guest's kernel and initrd where libvirt's QEMU can read them, on whichever host the
 * URI names. libvirt's QEMU runs as an unprivileged user (libvirt-qemu) that cannot enter /root, where
 * the guest is built (~/.cache/kvmio). Rather than weaken security labels, kvmio keeps its own libvirt
 * storage pool, a directory at /var/lib/kvmio, and uploads the two files into it with `vol-upload`:
 * this is libvirt's own way of moving files to a host, so it works the same for qemu:///system and for
 * qemu+ssh://otherhost/system. The pool is transient (nothing is added to the host's libvirt config);
 * volumes are named by a hash of the two files' content and uploaded once per host.
 */

export const KVMIO_POOL = 'kvmio';
export const KVMIO_POOL_DIR = '/var/lib/kvmio';

export interface StagedGuest {
  kernel: string;
  initrd: string;
}

async function ensurePool(virsh: Virsh): Promise<void> {
  if (await virsh.tryRun(['pool-info', KVMIO_POOL])) {
    await virsh.tryRun(['pool-refresh', KVMIO_POOL]);
    return;
  }
  try {
    await virsh.run(['pool-create-as', KVMIO_POOL, 'dir', '--target', KVMIO_POOL_DIR, '--build']);
  } catch (e) {
    // Another kvmio may have created it at the same moment.
    if (!(await virsh.tryRun(['pool-info', KVMIO_POOL]))) throw e;
  }
}

async function volumePath(virsh: Virsh, name: string): Promise<string | undefined> {
  return (await virsh.tryRun(['vol-path', '--pool', KVMIO_POOL, name]))?.trim() || undefined;
}

async function uploadVolume(virsh: Virsh, name: string, file: string, scratch: string): Promise<void> {
  await virsh.tryRun(['vol-delete', '--pool', KVMIO_POOL, name]);
  // World-readable: QEMU reads the kernel and initrd at start-up only, and they hold no secret.
  const volXml = join(scratch, `${name}.xml`);
  writeFileSync(
    volXml,
    `<volume><name>${name}</name><capacity unit='bytes'>${statSync(file).size}</capacity>` +
      `<target><format type='raw'/><permissions><mode>0644</mode></permissions></target></volume>\n`,
  );
  await virsh.run(['vol-create', KVMIO_POOL, volXml]);
  await virsh.run(['vol-upload', '--pool', KVMIO_POOL, name, file], { timeoutMs: 300_000 });
}

/**
 * Removes volumes of earlier guest builds (130 MB each). QEMU reads kernel and initrd only at start-up,
 * so running VMs do not mind.
 */
async function pruneOtherGuests(virsh: Virsh, keepTag: string): Promise<void> {
  const keep = new Set(Object.values(volumeNames(keepTag)));
  const list = (await virsh.tryRun(['vol-list', KVMIO_POOL])) ?? '';
  for (const name of list.split('\n').map((l) => l.trim().split(/\s+/)[0] ?? '')) {
    if (/^guest-[0-9a-f]+-(kernel|initrd|ready)$/.test(name) && !keep.has(name)) {
      await virsh.tryRun(['vol-delete', '--pool', KVMIO_POOL, name]);
    }
  }
}

function volumeNames(hash: string): { kernel: string; initrd: string; ready: string } {
  const tag = hash.slice(0, 16);
  return { kernel: `guest-${tag}-kernel`, initrd: `guest-${tag}-initrd`, ready: `guest-${tag}-ready` };
}

/** Where stageGuest puts a guest's kernel and initrd on a libvirt host, by content tag (for printed XML). */
export function stagedGuestPaths(tag: string): StagedGuest {
  const names = volumeNames(tag);
  return { kernel: join(KVMIO_POOL_DIR, names.kernel), initrd: join(KVMIO_POOL_DIR, names.initrd) };
}

async function fileSha256(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

const contentTags = new Map<string, Promise<string>>();

/** A tag of the kernel's and initrd's content (a rebuilt guest gets new volumes), memoized per file state. */
export function guestContentTag(guest: { kernel: string; initrd: string }): Promise<string> {
  const key = [guest.kernel, guest.initrd]
    .map((f) => `${f}:${statSync(f).size}:${statSync(f).mtimeMs}`)
    .join('|');
  let tag = contentTags.get(key);
  if (!tag) {
    tag = Promise.all([fileSha256(guest.kernel), fileSha256(guest.initrd)]).then(([k, i]) =>
      createHash('sha256').update(`${k}\n${i}`).digest('hex'),
    );
    contentTags.set(key, tag);
  }
  return tag;
}

/** In-process: VMs started together upload once, not over each other. */
const staging = new Map<string, Promise<StagedGuest>>();

/** Makes the guest's kernel and initrd available to libvirt's QEMU; returns their paths on the libvirt host. */
export async function stageGuest(
  virsh: Virsh,
  guest: { kernel: string; initrd: string },
): Promise<StagedGuest> {
  const tag = await guestContentTag(guest);
  const key = `${virsh.uri}|${tag}`;
  let staged = staging.get(key);
  if (!staged) {
    staged = upload(virsh, guest, tag);
    staging.set(key, staged);
    staged.catch(() => staging.delete(key));
  }
  return staged;
}

async function upload(
  virsh: Virsh,
  guest: { kernel: string; initrd: string },
  tag: string,
): Promise<StagedGuest> {
  await ensurePool(virsh);
  const names = volumeNames(tag);
  // The marker is created last, so a volume from an interrupted upload is never used.
  if (!(await volumePath(virsh, names.ready))) {
    const scratch = mkdtempSync(join(runtimeDir(), 'stage-'));
    try {
      await uploadVolume(virsh, names.kernel, guest.kernel, scratch);
      await uploadVolume(virsh, names.initrd, guest.initrd, scratch);
      await virsh.run(['vol-create-as', KVMIO_POOL, names.ready, '0']);
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
    await pruneOtherGuests(virsh, tag);
  }
  const kernel = await volumePath(virsh, names.kernel);
  const initrd = await volumePath(virsh, names.initrd);
  if (!kernel || !initrd) throw new VirshError(['vol-path'], `guest volumes missing in pool ${KVMIO_POOL}`);
  return { kernel, initrd };
}

/** File name of a uefi domain's own variable store in kvmio's pool (libvirt makes it from the template). */
function nvramVolume(domain: string): string {
  return `${domain}_VARS.fd`;
}

/** Where a uefi domain's variable store goes on its libvirt host: kvmio's pool, removed with the domain. */
export function nvramPath(domain: string): string {
  return join(KVMIO_POOL_DIR, nvramVolume(domain));
}

/**
 * Removes a domain's variable store from kvmio's pool, if there is one: libvirt leaves a transient
 * domain's NVRAM behind. Through the pool, so it works on a remote host as on this one.
 */
export async function removeNvram(virsh: Virsh, domain: string): Promise<void> {
  // virsh runs quiet: success prints nothing, failure is undefined.
  if ((await virsh.tryRun(['pool-refresh', KVMIO_POOL])) === undefined) return;
  await virsh.tryRun(['vol-delete', '--pool', KVMIO_POOL, nvramVolume(domain)]);
}
