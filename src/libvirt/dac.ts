import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { UserError } from '../util/errors.js';
import { run } from '../util/proc.js';
import type { Virsh } from './virsh.js';

/**
 * libvirt starts QEMU as an unprivileged user (qemu.conf `user`/`group`, libvirt-qemu on Debian, qemu
 * on RHEL) and relabels the disk file for it, but not the directories above it: QEMU must be able to
 * search each of them. Checked before the first boot, as that user, so that a study with its disk in
 * /root or in a mkdtemp directory is refused once instead of failing every point with EACCES.
 */

/** The uid:gid libvirt runs QEMU as, from its DAC security model; undefined when it tells none. */
export async function qemuDacIds(virsh: Virsh): Promise<{ uid: number; gid: number } | undefined> {
  const caps = await virsh.tryRun(['capabilities']);
  const dac = /<secmodel>\s*<model>dac<\/model>[\s\S]*?<\/secmodel>/.exec(caps ?? '')?.[0] ?? '';
  const label = /<baselabel type='(?:kvm|qemu)'>\+(\d+):\+(\d+)<\/baselabel>/.exec(dac);
  return label ? { uid: Number(label[1]), gid: Number(label[2]) } : undefined;
}

/** Whether uid:gid (with the user's own supplementary groups, as libvirt sets them) may search `dir`. */
async function canSearch(ids: { uid: number; gid: number }, dir: string): Promise<boolean> {
  const as = (groups: string) => [
    'setpriv',
    `--reuid=${ids.uid}`,
    `--regid=${ids.gid}`,
    groups,
    '--',
    'test',
    '-x',
    dir,
  ];
  let r = await run(as('--init-groups'), { allowFailure: true, timeoutMs: 10_000 });
  // --init-groups needs a passwd entry for the uid; without one QEMU gets no supplementary groups.
  if (r.code !== 0 && /setpriv/.test(r.stderr)) r = await run(as('--clear-groups'), { allowFailure: true });
  if (r.code !== 0 && /setpriv/.test(r.stderr))
    throw new Error(`cannot check directory access as uid ${ids.uid}: ${r.stderr.trim()}`);
  return r.code === 0;
}

/**
 * Refuses (UserError, exit 2) a disk path under a directory the QEMU of this local libvirt cannot
 * enter, naming the first such directory. Directories that do not exist yet are left to the disk
 * guard, which creates or refuses them.
 */
export async function checkQemuCanReach(virsh: Virsh, path: string, source: string): Promise<void> {
  if (!virsh.isLocal) return;
  const ids = await qemuDacIds(virsh);
  if (!ids || ids.uid === 0) return;
  const dirs: string[] = [];
  for (let dir = dirname(path); ; dir = dirname(dir)) {
    dirs.unshift(dir);
    if (dir === dirname(dir)) break;
  }
  for (const dir of dirs) {
    if (!existsSync(dir)) return;
    if (!(await canSearch(ids, dir))) {
      throw new UserError(
        `${source}: disk.path ${path}: libvirt runs QEMU as uid ${ids.uid} (gid ${ids.gid}), which cannot enter ${dir}; put the disk under /var/tmp, /var/lib/kvmio or another directory that user can search (chmod o+x ${dir})`,
      );
    }
  }
}
