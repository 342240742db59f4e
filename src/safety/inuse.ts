import { readdirSync, readFileSync, type Stats, statSync } from 'node:fs';
import type { Finding } from './blockdev.js';

/**
 * Does a running VM have this disk open? Scans the open files of every QEMU process (qemu-system-*,
 * qemu-kvm, qemu-nbd, qemu-storage-daemon), libvirt's included, and compares what each fd points to by
 * identity (device number for block devices, device+inode for files), so symlinks and renames don't hide it.
 * Processes we may not inspect (another user's, when not root) are skipped: a non-root user cannot write
 * to their disks either.
 */

function sameTarget(a: Stats, b: Stats): boolean {
  if (a.isBlockDevice() && b.isBlockDevice()) return a.rdev === b.rdev;
  return a.isFile() && b.isFile() && a.dev === b.dev && a.ino === b.ino;
}

function vmName(pid: string): string | undefined {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    const i = argv.indexOf('-name');
    const value = i >= 0 ? argv[i + 1] : undefined;
    // "-name guest=NAME,debug-threads=on" (libvirt) or "-name NAME".
    return value?.match(/^(?:guest=)?([^,]+)/)?.[1];
  } catch {
    return undefined;
  }
}

export function qemuUsers(target: Stats): Finding[] {
  const found: Finding[] = [];
  for (const pid of readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    if (Number(pid) === process.pid) continue;
    let comm: string;
    try {
      comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
    } catch {
      continue;
    }
    if (!comm.startsWith('qemu')) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    const holds = fds.some((fd) => {
      try {
        return sameTarget(statSync(`/proc/${pid}/fd/${fd}`), target);
      } catch {
        return false; // fd closed meanwhile
      }
    });
    if (!holds) continue;
    const name = vmName(pid);
    found.push({ text: `is open by ${comm} (pid ${pid}${name ? `, VM "${name}"` : ''})`, inUse: true });
  }
  return found;
}
