import { closeSync, constants, openSync, readdirSync, readFileSync, readSync } from 'node:fs';

/**
 * The kernel's own account of a process that died: the kernel log records (/dev/kmsg, what `dmesg`
 * and `journalctl -k` show) that name the process or one of its threads, such as
 * `IO iothread1[37282]: segfault at 7ff05adffffe0 ip … error 6 in liburing.so.2.9[…]` and the
 * `Code: …` record after it, or the OOM killer's `Killed process 1234 (qemu-system-x86)`. A fault
 * names the thread that faulted (its thread id, not the process id), so the ids a process had are
 * collected while it runs (taskIds).
 */

export interface KernelRecord {
  /** Microseconds since boot (the kernel's timestamp of the record). */
  usec: number;
  text: string;
}

/** /dev/kmsg records ("PRI,SEQ,USEC,FLAGS;message", continuation lines indented) as timestamped text. */
export function parseKmsgRecord(raw: string): KernelRecord | undefined {
  const m = /^\d+,\d+,(\d+),[^;]*;([^\n]*)/.exec(raw);
  if (!m) return undefined;
  return { usec: Number(m[1]), text: m[2] ?? '' };
}

/** The thread ids of a running process (its pid among them); empty when it is gone. */
export function taskIds(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).map(Number).filter(Number.isInteger);
  } catch {
    return [];
  }
}

/** Microseconds since boot now, on the clock the kernel log stamps records with. */
export function kernelNowUsec(): number {
  try {
    return Math.floor(Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 1e6);
  } catch {
    return 0;
  }
}

/** Every record in the kernel log buffer, or why it cannot be read. */
export function readKernelLog(device = '/dev/kmsg'): KernelRecord[] | { unreadable: string } {
  let fd: number;
  try {
    fd = openSync(device, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    return { unreadable: (e as Error).message };
  }
  const records: KernelRecord[] = [];
  // One read returns one record; a record is at most a few KiB.
  const buf = Buffer.alloc(16 * 1024);
  try {
    for (;;) {
      let n: number;
      try {
        n = readSync(fd, buf, 0, buf.length, null);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EPIPE') continue; // records overwritten while reading: go on with the next
        if (code === 'EAGAIN') break; // the end of the buffer
        return { unreadable: (e as Error).message };
      }
      if (n <= 0) break;
      const r = parseKmsgRecord(buf.subarray(0, n).toString('utf8'));
      if (r) records.push(r);
    }
  } finally {
    closeSync(fd);
  }
  return records;
}

/**
 * The records naming one of `ids` (as `comm[ID]`, `pid ID` or `process ID`) since `sinceUsec`, each
 * with a `Code:` record that follows it, formatted as dmesg prints them.
 */
export function recordsForTasks(
  records: readonly KernelRecord[],
  ids: Iterable<number>,
  sinceUsec = 0,
): string[] {
  const wanted = new Set([...ids].map(String));
  const names = (text: string) =>
    [...text.matchAll(/\[(\d+)\]|\bpid[ =:]+(\d+)|\bprocess (\d+)\b/gi)].some((m) =>
      wanted.has(m[1] ?? m[2] ?? m[3] ?? ''),
    );
  const out: string[] = [];
  let previousMatched = false;
  for (const r of records) {
    if (r.usec < sinceUsec) continue;
    const matched: boolean = names(r.text) || (previousMatched && /^\s*Code: /.test(r.text));
    if (matched) out.push(`[${(r.usec / 1e6).toFixed(6).padStart(12)}] ${r.text}`);
    previousMatched = matched && !/^\s*Code: /.test(r.text);
  }
  return out;
}

/** What the kernel logged about a process (its ids) since it started: the lines, or why there are none. */
export function kernelAccount(
  pid: number | undefined,
  ids: Iterable<number>,
  sinceUsec = 0,
): { lines: string[]; summary: string } {
  if (pid === undefined) return { lines: [], summary: 'kernel log: no pid known' };
  const log = readKernelLog();
  if (!Array.isArray(log)) return { lines: [], summary: `kernel log unreadable: ${log.unreadable}` };
  const lines = recordsForTasks(log, new Set([pid, ...ids]), sinceUsec);
  return {
    lines,
    summary:
      lines.length === 0
        ? `kernel log: nothing about pid ${pid} or its threads`
        : `kernel log for pid ${pid}:\n${lines.join('\n')}`,
  };
}
