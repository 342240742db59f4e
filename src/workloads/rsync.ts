import type { GuestVm } from '../guest/vm.js';
import type { RsyncWorkload } from '../study/types.js';
import type { RunContext } from './fio.js';
import { dropCaches, guestRun, guestTry, mkfsAndMount, parseTimeP, unmount } from './guest-cmd.js';
import type { MetricValue, WorkloadResult } from './types.js';
import { duringWindow, startGuestMeters, windowArtifacts, windowMetrics } from './window.js';

/**
 * The study's rsync test: a tree of files made in guest memory (tmpfs), copied with `rsync -a` onto
 * ext4 on the test disk after the page cache was dropped; the time rsync took. The tree is laid out
 * by fio (create_only): it is fast even under emulation, needs no shell, and with a fixed randseed
 * gives the same file sizes and contents every time. Files go 1000 to a directory (one fio job each).
 */

const SRC = '/run/kvmio-rsync-src';
const DST = '/mnt/kvmio-rsync';
const FILES_PER_DIR = 1000;

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/** fio argv that lays out the tree under `root` (the directories must exist). */
export function treeGeneratorArgv(w: RsyncWorkload, root: string): { argv: string[]; dirs: string[] } {
  const ranged = w.sizeMinBytes !== undefined && w.sizeMaxBytes !== undefined;
  const maxSize = ranged ? (w.sizeMaxBytes as number) : w.sizeBytes;
  // fio rounds file sizes to its block size: with a range, sizes are multiples of bs (at most 4 KiB).
  const bs = ranged ? gcd(w.sizeMinBytes as number, 4096) : gcd(w.sizeBytes, 1024 * 1024);
  const fileSize = ranged ? `${w.sizeMinBytes}-${w.sizeMaxBytes}` : String(w.sizeBytes);
  const argv = [
    'fio',
    '--create_only=1',
    '--ioengine=psync',
    '--rw=write',
    `--bs=${bs}`,
    `--randseed=${w.seed}`,
    '--openfiles=1',
  ];
  const dirs: string[] = [];
  for (let i = 0, left = w.files; left > 0; i++, left -= FILES_PER_DIR) {
    const n = Math.min(FILES_PER_DIR, left);
    const dir = `${root}/d${String(i).padStart(5, '0')}`;
    dirs.push(dir);
    argv.push(
      `--name=d${i}`,
      `--directory=${dir}`,
      `--nrfiles=${n}`,
      `--filesize=${fileSize}`,
      `--size=${n * maxSize}`,
    );
  }
  return { argv, dirs };
}

export interface RsyncStats {
  files?: number;
  transferredFiles?: number;
  totalFileBytes?: number;
  sentBytes?: number;
}

/** The numbers of `rsync --stats` that describe what was copied. */
export function parseRsyncStats(text: string): RsyncStats {
  const num = (re: RegExp) => {
    const m = re.exec(text);
    return m ? Number((m[1] as string).replace(/,/g, '')) : undefined;
  };
  return {
    // "Number of files: 302 (reg: 300, dir: 2)": the regular files, when rsync splits them out
    files: num(/^Number of files: [\d,]+ \(reg: ([\d,]+)/m) ?? num(/^Number of files: ([\d,]+)/m),
    transferredFiles: num(/^Number of (?:regular )?files transferred: ([\d,]+)/m),
    totalFileBytes: num(/^Total file size: ([\d,]+) bytes/m),
    sentBytes: num(/^Total bytes sent: ([\d,]+)/m),
  };
}

export async function runRsync(vm: GuestVm, w: RsyncWorkload, ctx: RunContext): Promise<WorkloadResult> {
  const slow = 3_600_000;
  const maxSize = w.sizeMaxBytes ?? w.sizeBytes;
  // Room for the data plus per-file slack (tmpfs rounds every file up to a page).
  const tmpfsBytes = w.files * (maxSize + 4096) + 16 * 1024 * 1024;
  try {
    await guestRun(vm, ['mkdir', '-p', SRC], 30_000);
    await guestRun(vm, ['mount', '-t', 'tmpfs', '-o', `size=${tmpfsBytes}`, 'kvmio-rsync', SRC], 30_000);
    const gen = treeGeneratorArgv(w, `${SRC}/tree`);
    ctx.log(`rsync: laying out ${w.files} files in guest memory`);
    await guestRun(vm, ['mkdir', '-p', ...gen.dirs], 60_000);
    await guestRun(vm, gen.argv, slow);
    await mkfsAndMount(vm, DST, slow);
    await dropCaches(vm);
    const argv = ['time', '-p', 'rsync', '-a', '--stats', `${SRC}/tree`, `${DST}/`];
    ctx.log(`guest: ${argv.join(' ')}`);
    const timeoutMs = Math.max(1000, Math.min(slow, ctx.deadline - Date.now()));
    const began = performance.now();
    // The whole copy is the window; an rsync shorter than the CPU sampling interval still gets both ends.
    const { result, window } = await duringWindow(guestRun(vm, argv, timeoutMs), 0, timeoutMs, () =>
      startGuestMeters(vm, ctx.series),
    );
    const wallSeconds = (performance.now() - began) / 1000;
    const syncRun = await guestRun(vm, ['time', '-p', 'sync'], slow);
    const seconds = parseTimeP(result.stderr);
    const stats = parseRsyncStats(result.stdout);
    const metrics: MetricValue[] = [];
    // busybox time measures inside the guest; the host-side figure includes agent polling (≤ 0.25 s).
    metrics.push({ metric: 'rsync.seconds', value: seconds ?? wallSeconds, unit: 's' });
    metrics.push({ metric: 'rsync.host_seconds', value: wallSeconds, unit: 's' });
    const syncSeconds = parseTimeP(syncRun.stderr);
    if (syncSeconds !== undefined)
      metrics.push({ metric: 'rsync.sync_seconds', value: syncSeconds, unit: 's' });
    if (stats.files !== undefined) metrics.push({ metric: 'rsync.files', value: stats.files, unit: 'count' });
    if (stats.totalFileBytes !== undefined)
      metrics.push({ metric: 'rsync.bytes', value: stats.totalFileBytes, unit: 'B' });
    metrics.push(...windowMetrics(window));
    return {
      steps: [
        {
          step: null,
          metrics,
          artifacts: {
            argv: JSON.stringify(argv),
            generator_argv: JSON.stringify(gen.argv),
            rsync_output: `${result.stdout}\n${result.stderr}`,
            ...windowArtifacts(window),
          },
        },
      ],
    };
  } finally {
    await unmount(vm, DST);
    await unmount(vm, SRC);
    await guestTry(vm, ['rmdir', SRC]);
  }
}
