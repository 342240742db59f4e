import { readdirSync, readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { processAlive, sleep } from '../util/proc.js';

/**
 * What a kvmio killed without its cleanups (SIGKILL, the OOM killer, a CI timeout) may leave on this
 * machine: QEMU processes it started itself (when the parent-death signal was not available) and
 * transient libvirt domains (libvirt's QEMU is libvirt's child, not kvmio's). kvmio names both
 * `kvmio-<its pid>-<n>`; a later run stops those whose kvmio is gone, and nothing else.
 */

/** When a process started, in clock ticks since boot (/proc/PID/stat field 22); undefined if gone. */
export function processStartTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: fields are counted after its last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[19]);
    return Number.isFinite(ticks) ? ticks : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether the kvmio that owned something started at `since` (clock ticks, when known) is gone: no
 * process with its pid, or one that started later (the pid was reused by another program).
 */
export function ownerGone(ownerPid: number, since?: number): boolean {
  if (!processAlive(ownerPid)) return true;
  const ownerStart = processStartTicks(ownerPid);
  return since !== undefined && ownerStart !== undefined && ownerStart > since;
}

export interface LeftoverQemu {
  pid: number;
  name: string;
  ownerPid: number;
}

/** QEMU processes on this machine that kvmio started directly (`-name kvmio-PID-N`) whose kvmio is gone. */
export function leftoverQemus(): LeftoverQemu[] {
  const out: LeftoverQemu[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      continue; // gone meanwhile, or not ours to read
    }
    if (!/qemu/.test(basename(argv[0] ?? ''))) continue;
    const nameAt = argv.indexOf('-name');
    // libvirt's QEMU says `-name guest=…`: those are libvirt's to stop (leftoverDomains).
    const own = /^kvmio-(\d+)-\d+(?=,|$)/.exec(argv[nameAt + 1] ?? '');
    if (nameAt < 0 || !own) continue;
    const ownerPid = Number(own[1]);
    if (ownerGone(ownerPid, processStartTicks(pid))) out.push({ pid, name: own[0], ownerPid });
  }
  return out;
}

/** Stops each leftover QEMU (SIGTERM, then SIGKILL after 5 s) and says so, one line each. */
export async function stopLeftoverQemus(say: (line: string) => void): Promise<LeftoverQemu[]> {
  const found = leftoverQemus();
  for (const q of found) {
    const started = processStartTicks(q.pid);
    const same = () => started !== undefined && processStartTicks(q.pid) === started;
    try {
      process.kill(q.pid, 'SIGTERM');
    } catch {
      continue; // ended meanwhile
    }
    const deadline = Date.now() + 5000;
    while (same() && Date.now() < deadline) await sleep(100);
    if (same()) process.kill(q.pid, 'SIGKILL');
    say(`stopped QEMU pid ${q.pid} (VM ${q.name}), left running by kvmio pid ${q.ownerPid}, which is gone`);
  }
  return found;
}
