import { existsSync } from 'node:fs';
import { ensureGuest, GUEST_KERNEL_CMDLINE } from '../../src/guest/build.js';
import { probeAccelerator } from '../../src/host/accel.js';
import { type QemuVm, startQemuVm } from '../../src/qemu/vm.js';
import { prepareDiskFile } from '../../src/safety/disk.js';
import type { FioWorkload, Study, Variant } from '../../src/study/types.js';
import { makeVariant } from '../../src/study/variants.js';
import { run } from '../../src/util/proc.js';
import { formatBytes } from '../../src/util/units.js';

/** What every figure of the benchmark gets from the command line. */
export interface BenchOptions {
  rounds: number;
  runtimeSeconds: number;
  rampSeconds: number;
  disk: string;
  destroyData: string[];
  /** Smaller samples everywhere (`--quick`): a smoke run of the benchmark, not figures to publish. */
  quick: boolean;
  log: (line: string) => void;
}

export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

export function cv(values: readonly number[]): number {
  const m = values.reduce((a, b) => a + b, 0) / values.length;
  const sd = Math.sqrt(values.reduce((a, b) => a + (b - m) ** 2, 0) / Math.max(1, values.length - 1));
  return sd / m;
}

export const pct = (ratio: number) => `${ratio >= 1 ? '+' : ''}${((ratio - 1) * 100).toFixed(1)}%`;
export const fixed = (v: number, digits = 2) => (Number.isFinite(v) ? v.toFixed(digits) : 'n/a');

/** The disk every VM figure uses: one preallocated file, written once so reads hit real blocks. */
export const BENCH_DISK_BYTES = 512 << 20;

export async function benchDisk(o: BenchOptions): Promise<string> {
  const fresh = !existsSync(o.disk);
  const info = await prepareDiskFile(
    { path: o.disk, sizeBytes: BENCH_DISK_BYTES },
    { destroyData: o.destroyData, preallocate: true },
  );
  if (fresh && info.kind === 'file') {
    o.log(`filling ${info.path} (${formatBytes(info.sizeBytes)}) so that reads measure the device`);
    await run(
      [
        'fio',
        '--name=fill',
        `--filename=${info.path}`,
        '--rw=write',
        '--bs=1M',
        '--direct=1',
        '--ioengine=libaio',
        '--iodepth=8',
      ],
      { timeoutMs: 30 * 60_000 },
    );
  }
  return info.path;
}

export const BENCH_VARIANT: Variant = makeVariant({ aio: 'native', iothreads: 1 });

export type BenchStudy = Pick<Study, 'guest' | 'disk' | 'source'>;

export function benchStudy(disk: string): BenchStudy {
  return {
    guest: { vcpus: 2, memoryBytes: 1 << 30, count: 1 },
    disk: { path: disk, sizeBytes: BENCH_DISK_BYTES },
    source: 'bench',
  };
}

/** Boots the embedded guest with the accelerator the product would pick (probed, cached per boot). */
export async function bootBenchVm(
  o: BenchOptions,
  disk: string,
  variant: Variant = BENCH_VARIANT,
): Promise<{ vm: QemuVm; accel: string; reason: string }> {
  const { accel, reason } = await probeAccelerator({ log: o.log });
  const image = await ensureGuest({ log: o.log });
  const vm = await startQemuVm({
    study: benchStudy(disk),
    variant,
    image: { kernel: image.kernel, initrd: image.initrd, cmdline: GUEST_KERNEL_CMDLINE },
    accel,
    log: o.log,
  });
  return { vm, accel, reason: reason.split(':')[0] ?? reason };
}

/** The QD1 4k random read of the study's latency question, with the benchmark's durations. */
export function qd1Workload(runtimeSeconds: number, rampSeconds: number): FioWorkload {
  return {
    kind: 'fio',
    name: 'lat-randread',
    rw: 'randread',
    bs: 4096,
    iodepth: 1,
    numjobs: 1,
    runtimeSeconds,
    rampSeconds,
    ioengine: 'libaio',
    extra: {},
  };
}

/** Peak resident memory of this process while `work` runs (sampled every 20 ms), bytes. */
export async function withPeakRss<T>(
  work: () => Promise<T> | T,
): Promise<{ result: T; peakRss: number; ms: number }> {
  let peak = process.memoryUsage().rss;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 20);
  const t0 = performance.now();
  try {
    const result = await work();
    const ms = performance.now() - t0;
    peak = Math.max(peak, process.memoryUsage().rss);
    return { result, peakRss: peak, ms };
  } finally {
    clearInterval(timer);
  }
}
